"""BERT4Rec: sequences by first interaction, Cloze masking, windows of at most max_len, frozen content, losses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import ModelConfigError
from tunespace.recommenders import Bert4Rec, RandomBert4Rec, Recommender
from tunespace.recommenders.bert4rec import MASK, PAD, SPECIAL, ClozeLoss, cloze_mask, latest
from tests.recommenders.contract import cluster_embeddings, two_clusters

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = dict(hidden=8, ff_dim=16, layers=1, heads=2, dropout=0.0, lr=0.01, device="cpu", standardize=False)
DAY = pd.Timedelta(days=1)


def listening(rows: list[tuple[str, str, int]], n_items: int) -> InteractionMatrix:
    """(user, item, day) events over items i0..i{n_items - 1}."""
    frame = pd.DataFrame(rows, columns=["user_id", "track_id", "day"])
    frame["timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + frame.pop("day") * DAY
    users = IdMap.from_values(frame["user_id"], name="user_id")
    return InteractionMatrix.from_frame(frame, users, IdMap([f"i{i}" for i in range(n_items)], name="track_id"))


def long_history(length: int = 310, n_items: int = 320) -> InteractionMatrix:
    """User a heard items i0, i1, ... one a day; user b heard two items."""
    rows = [("a", f"i{i}", i) for i in range(length)] + [("b", "i0", 0), ("b", "i1", 1)]
    return listening(rows, n_items)


def embeddings(n_items: int, dim: int = 4) -> ItemEmbeddings:
    rng = np.random.default_rng(0)
    return ItemEmbeddings([f"i{i}" for i in range(n_items)], rng.standard_normal((n_items, dim)).astype(np.float32))


def test_sequences_hold_distinct_items_in_order_of_first_interaction():
    train = listening([("a", "i2", 5), ("a", "i0", 1), ("a", "i2", 0), ("a", "i1", 3), ("a", "i0", 9),
                       ("b", "i1", 2)], n_items=3)
    indptr, items = train.sequences()
    assert indptr.tolist() == [0, 3, 4]
    assert items.tolist() == [2, 0, 1, 1]


def test_latest_keeps_the_end_of_each_row():
    indptr, items = latest(np.array([0, 5, 6, 6]), np.arange(6), keep=3)
    assert indptr.tolist() == [0, 3, 4, 4] and items.tolist() == [2, 3, 4, 5]


def test_masking_rate_is_the_probability_and_padding_is_never_masked():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(SPECIAL, 100, (400, 300), generator=generator)
    tokens[:, :100] = PAD
    inputs, masked = cloze_mask(tokens, 0.2, generator)
    assert not masked[:, :100].any()
    assert masked[:, 100:].float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert (inputs[masked] == MASK).all() and torch.equal(inputs[~masked], tokens[~masked])
    maskable = tokens % 2 == 0
    _, masked = cloze_mask(tokens, 0.5, generator, maskable)
    assert not masked[~maskable].any()


def test_training_windows_keep_the_latest_max_len_items_and_inference_appends_the_mask():
    model = Bert4Rec(embeddings=embeddings(320), epochs=0, **SMALL).fit(long_history())
    users = torch.tensor([0, 1])  # a, b
    train_windows = model._windows(users, append_mask=False)
    assert train_windows.shape == (2, 300)
    assert (train_windows[0] - SPECIAL).tolist() == list(range(10, 310))
    assert train_windows[1, :298].eq(PAD).all() and (train_windows[1, 298:] - SPECIAL).tolist() == [0, 1]
    inference = model._windows(users, append_mask=True)
    assert inference.shape == (2, 300) and inference[:, -1].eq(MASK).all()
    assert (inference[0, :-1] - SPECIAL).tolist() == list(range(11, 310))
    assert model._items.numel() == 300 + 2  # only the window is kept with the model


def test_items_older_than_the_window_change_nothing():
    """Two histories that differ only before the last max_len items give the same scores (bar exclusion)."""
    base = [("a", f"i{i}", i) for i in range(3, 12)] + [("b", "i3", 0), ("b", "i5", 1), ("b", "i4", 2)]
    first = listening([("a", "i0", 0)] + base, n_items=12)
    other = listening([("a", "i1", 0)] + base, n_items=12)
    options = dict(embeddings=embeddings(12), epochs=3, max_len=6, **SMALL)
    scores = [Bert4Rec(**options).fit(train).score(np.arange(2)) for train in (first, other)]
    np.testing.assert_array_equal(scores[0], scores[1])
    changed = listening([("a", "i0", 0)] + base + [("a", "i2", 20)], n_items=12)  # a new latest item
    assert not np.array_equal(Bert4Rec(**options).fit(changed).score(np.arange(2)), scores[0])


def test_frozen_content_is_bit_identical_after_training_and_the_projection_learns():
    train = two_clusters()
    model = Bert4Rec(embeddings=cluster_embeddings(), epochs=5, **SMALL)
    untrained = Bert4Rec(embeddings=cluster_embeddings(), epochs=0, **SMALL).fit(train)
    model.fit(train)
    assert np.array_equal(model.net.content.numpy(), cluster_embeddings().aligned(train.items))
    assert all(param is not model.net.content for param in model.net.parameters())
    assert model.net.projection.weight.shape == (8, 4)
    assert not torch.equal(model.net.projection.weight, untrained.net.projection.weight)


def test_random_init_learns_an_item_table_of_the_hidden_size():
    train = two_clusters()
    losses = []
    model = RandomBert4Rec(epochs=60, on_epoch=lambda r: losses.append(r.losses.get("loss", np.nan)), **SMALL)
    model.fit(train)
    untrained = RandomBert4Rec(epochs=0, **SMALL).fit(train)
    assert model.net.projection is None and model.net.item_table.shape == (train.n_items, 8)
    assert not torch.equal(model.net.item_table, untrained.net.item_table)
    assert np.nanmean(losses[-10:]) < 0.8 * np.nanmean(losses[:10])
    with pytest.raises(ModelConfigError):
        RandomBert4Rec(embeddings=cluster_embeddings(), **SMALL).fit(train)


def test_full_cloze_loss_is_cross_entropy_over_the_catalogue():
    torch.manual_seed(0)
    model = Bert4Rec(embeddings=cluster_embeddings(), epochs=0, **SMALL).fit(two_clusters())
    states, targets = torch.randn(5, 8), torch.tensor([0, 3, 8, 1, 1])
    with torch.no_grad():
        logits = states @ model.net.item_vectors().T + model.net.item_bias
        loss = ClozeLoss()(states, targets, model.net, torch.Generator())["loss"]
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)


def test_sampled_cloze_loss_drops_sampled_targets_and_trains():
    model = Bert4Rec(embeddings=cluster_embeddings(), epochs=0, **SMALL).fit(two_clusters())
    states, targets = torch.randn(4, 8), torch.tensor([2, 2, 5, 7])
    generator = torch.Generator().manual_seed(0)
    sampled = torch.randint(9, (50,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = ClozeLoss(negatives=50)(states, targets, model.net, generator)["loss"]
        positive = (states * model.net.item_vectors(targets)).sum(-1) + model.net.item_bias[targets]
        negative = states @ model.net.item_vectors(sampled).T + model.net.item_bias[sampled]
        negative[sampled[None, :] == targets[:, None]] = float("-inf")
    expected = F.cross_entropy(torch.cat([positive[:, None], negative], 1), torch.zeros(4, dtype=torch.long))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    reports = []
    Bert4Rec(embeddings=cluster_embeddings(), epochs=3, sampled_negatives=4, on_epoch=reports.append,
             **SMALL).fit(two_clusters())
    assert all(np.isfinite(r.losses["loss"]) for r in reports)


def test_early_stopping_restores_the_best_epoch(monkeypatch):
    metric = iter([0.2, 0.1, 0.1])
    snapshots = {}
    model = Bert4Rec(embeddings=cluster_embeddings(), epochs=10, patience=2, **SMALL,
                     on_epoch=lambda r: snapshots.setdefault(r.epoch, model.net.item_bias.detach().clone()))
    monkeypatch.setattr(model, "_validation_ndcg", lambda validation: next(metric))
    model.fit(two_clusters(), validation=pd.DataFrame({"user_id": ["u0"], "track_id": ["i0"]}))
    assert sorted(snapshots) == [1, 2, 3]
    assert torch.equal(model.net.item_bias, snapshots[1]) and not torch.equal(snapshots[1], snapshots[3])


def test_save_load_round_trip_keeps_windows_and_content(tmp_path):
    model = Bert4Rec(embeddings=embeddings(320), epochs=1, max_len=20, **SMALL).fit(long_history())
    model.save(tmp_path / "bert")
    loaded = Recommender.load(tmp_path / "bert", device="cpu")
    assert loaded.params == model.params and loaded._items.tolist() == model._items.tolist()
    np.testing.assert_array_equal(loaded.score(np.arange(2)), model.score(np.arange(2)))


def test_options_are_checked():
    for options in (dict(max_len=1), dict(hidden=10, heads=3), dict(mask_prob=0.0), dict(batch_size=0),
                    dict(sampled_negatives=-1)):
        with pytest.raises(ModelConfigError):
            Bert4Rec(embeddings=cluster_embeddings(), **{**SMALL, **options})

"""Shallow Net: frozen content table, user initialisation, hinge loss, negative users, early stopping."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.errors import ModelConfigError
from tunespace.evaluation.evaluate import evaluate
from tunespace.recommenders import RandomShallowNet, ShallowNet
from tunespace.recommenders.neural import EarlyStopping
from tunespace.recommenders.shallow import MaxMarginHingeLoss, NegativeUserSampler
from tests.recommenders.contract import cluster_embeddings, two_clusters

pytestmark = pytest.mark.usefixtures("single_thread")


def small(**options) -> ShallowNet:
    return ShallowNet(**{"embeddings": cluster_embeddings(), "epochs": 5, "lr": 0.01, "batch_size": 8,
                         "device": "cpu", "standardize": False, **options})


def held_out_pairs() -> pd.DataFrame:
    """Each toy user's missing cluster item: the validation pairs of the two-cluster problem."""
    return pd.DataFrame({"user_id": [f"u{u}" for u in range(8)], "track_id": [f"i{u}" for u in range(8)]})


def test_frozen_item_table_is_bit_identical_after_training():
    train = two_clusters()
    model = small(epochs=20)
    model.fit(train)
    expected = cluster_embeddings().aligned(train.items)
    assert np.array_equal(model.net.items.cpu().numpy(), expected)
    assert all(param is not model.net.items for param in model.net.parameters())
    assert not np.array_equal(model.net.users.detach().numpy(), small(epochs=0).fit(train).net.users.detach().numpy())


def test_random_init_learns_its_item_table():
    train = two_clusters()
    untrained = RandomShallowNet(dim=8, epochs=0, device="cpu").fit(train).net.items.detach().clone()
    trained = RandomShallowNet(dim=8, epochs=5, lr=0.01, device="cpu").fit(train).net.items.detach()
    assert untrained.shape == (train.n_items, 8)
    heard = np.asarray(train.binary().sum(axis=0)).ravel() > 0
    assert not torch.equal(untrained[heard], trained[heard])


def test_random_init_fits_its_objective():
    """For each heard item, its listeners come to outscore the users who never heard it."""
    train = two_clusters()
    model = RandomShallowNet(dim=8, epochs=100, lr=0.01, batch_size=64, negatives=4, device="cpu").fit(train)
    scores = model.score(np.arange(train.n_users))
    heard = train.binary().toarray() > 0
    ordered = [(scores[heard[:, i], i][:, None] > scores[~heard[:, i], i][None, :]).mean() for i in range(8)]
    assert np.mean(ordered) > 0.9


def test_random_init_takes_no_embeddings():
    with pytest.raises(ModelConfigError):
        RandomShallowNet(embeddings=cluster_embeddings(), device="cpu").fit(two_clusters())
    with pytest.raises(ModelConfigError):
        ShallowNet(device="cpu").fit(two_clusters())


def test_users_start_at_the_mean_of_their_training_items():
    train = two_clusters()
    vectors = cluster_embeddings().aligned(train.items)
    model = small(epochs=0).fit(train)
    profiles = train.binary().toarray() > 0
    expected = np.stack([vectors[row].mean(axis=0) for row in profiles])
    np.testing.assert_allclose(model.net.users.detach().numpy(), expected, rtol=1e-6)


def test_items_without_embedding_are_left_out_of_means_and_never_recommended():
    full = cluster_embeddings()
    keep = full.ids != "i2"
    partial = ItemEmbeddings(full.ids[keep], full.vectors[keep])
    initial = ShallowNet(embeddings=partial, epochs=0, device="cpu", standardize=False).fit(two_clusters())
    np.testing.assert_allclose(initial.net.users[0].detach().numpy(), full.vectors[[1, 3]].mean(axis=0), rtol=1e-6)
    model = ShallowNet(embeddings=partial, epochs=3, device="cpu").fit(two_clusters())
    assert (model._pairs[1] != 2).all()
    assert np.isneginf(model.score(np.arange(8))[:, 2]).all()
    assert 2 not in model.recommend(np.arange(8), k=9, exclude_seen=False).items


def test_hinge_loss_by_hand():
    loss = MaxMarginHingeLoss(margin=0.2)
    positive = torch.tensor([0.9, 0.1])
    negative = torch.tensor([[0.5, 0.8], [0.0, -0.5]])
    # pair 0: max(0, 0.2 - 0.9 + 0.5) = 0, max(0, 0.2 - 0.9 + 0.8) = 0.1
    # pair 1: max(0, 0.2 - 0.1 + 0.0) = 0.1, max(0, 0.2 - 0.1 - 0.5) = 0
    terms = loss(positive, negative)
    assert terms["loss"].item() == pytest.approx((0.1 + 0.1) / 4)
    assert terms["active"].item() == pytest.approx(0.5)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(1, 6), st.data())
def test_negative_users_never_interacted_with_the_item(n_users, n_items, data):
    dense = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=n_items, max_size=n_items),
                                        min_size=n_users, max_size=n_users)))
    dense[0] = False  # user 0 heard nothing, so every item has a negative user
    sampler = NegativeUserSampler(sp.csr_matrix(dense.astype(np.float32)))
    items = torch.from_numpy(np.array(data.draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=20))))
    seed = data.draw(st.integers(0, 2**31 - 1))
    users = sampler.sample(items, 7, torch.Generator().manual_seed(seed)).numpy()
    assert users.shape == (len(items), 7)
    assert (users >= 0).all() and (users < n_users).all()
    assert not dense[users, items.numpy()[:, None]].any()


def test_sampler_refuses_an_item_everybody_heard():
    sampler = NegativeUserSampler(sp.csr_matrix(np.array([[1, 0], [1, 1]], dtype=np.float32)))
    assert sampler.has_negatives.tolist() == [False, True]
    with pytest.raises(ModelConfigError):
        sampler.sample(torch.tensor([0]), 3, torch.Generator().manual_seed(0))


def test_early_stopping_keeps_the_best_epoch():
    module = torch.nn.Linear(1, 1)
    stopper = EarlyStopping(patience=2)
    decisions = []
    for epoch, value in enumerate([0.1, 0.3, 0.3, 0.2], start=1):
        with torch.no_grad():
            module.weight.fill_(epoch)
        decisions.append(stopper.update(epoch, value, module))
    assert decisions == [False, False, False, True]
    assert stopper.best_epoch == 2 and stopper.best_state["weight"].item() == 2.0


def test_fit_restores_the_weights_of_the_best_validation_epoch(monkeypatch):
    """A scripted metric peaks at epoch 2: training stops `patience` epochs later and keeps epoch 2's weights."""
    metric = iter([0.1, 0.5, 0.2, 0.4, 0.3, 0.9])
    snapshots, reports = {}, []

    def record(report):
        reports.append(report)
        snapshots[report.epoch] = model.net.users.detach().clone()

    model = small(epochs=10, patience=3, on_epoch=record)
    monkeypatch.setattr(model, "_validation_ndcg", lambda validation: next(metric))
    model.fit(two_clusters(), validation=held_out_pairs())
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5]
    assert [r.best_epoch for r in reports] == [1, 2, 2, 2, 2]
    assert torch.equal(model.net.users, snapshots[2]) and not torch.equal(snapshots[2], snapshots[5])
    assert (model.epochs_run, model.best_epoch) == (5, 2)  # what reports list beside the row


def test_epochs_run_and_kept_without_validation_are_the_cap():
    model = small(epochs=3)
    assert (model.epochs_run, model.best_epoch) == (None, None)  # not fitted yet
    model.fit(two_clusters())
    assert (model.epochs_run, model.best_epoch) == (3, 3)


def test_validation_ndcg_is_the_evaluation_metric_of_the_kept_weights(caplog):
    reports = []
    model = small(epochs=6, patience=6, on_epoch=reports.append)
    with caplog.at_level(logging.INFO, logger="tunespace.recommenders.neural"):
        model.fit(two_clusters(), validation=held_out_pairs())
    best = max(reports, key=lambda r: r.validation_ndcg)
    assert best.epoch == reports[-1].best_epoch
    final = evaluate(model, held_out_pairs(), ks=(50,)).per_user["ndcg@50"].mean()
    assert final == pytest.approx(best.validation_ndcg)
    assert "shallow epoch 1/6: loss" in caplog.text and "validation NDCG@50" in caplog.text


def test_without_validation_trains_every_epoch_at_a_constant_rate():
    reports = []
    small(epochs=4, on_epoch=reports.append).fit(two_clusters())
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert all(r.validation_ndcg is None and r.learning_rate == 0.01 for r in reports)


def test_training_does_not_disturb_the_global_generator():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small().fit(two_clusters())
    assert torch.equal(torch.rand(3), expected)


def test_empty_validation_trains_every_epoch(caplog):
    reports = []
    small(epochs=3, patience=1, on_epoch=reports.append).fit(two_clusters(), validation=held_out_pairs().iloc[:0])
    assert len(reports) == 3 and "no validation pairs" in caplog.text


def test_the_same_seed_gives_the_same_weights_on_several_threads():
    """Repeated rows in a batch (users among the negatives, items of a learned table) must be summed in a fixed
    order: with atomic adds across threads two fits of one seed drifted apart."""
    from tunespace.data.catalog import IdMap
    from tunespace.data.interactions import InteractionMatrix

    rng = np.random.default_rng(0)
    n_users, n_items, dim = 3000, 400, 16
    users, items = IdMap([f"u{i}" for i in range(n_users)]), IdMap([f"i{i}" for i in range(n_items)])
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in rng.integers(0, n_users, 30000)],
                          "track_id": [f"i{i}" for i in rng.integers(0, n_items, 30000)],
                          "timestamp": pd.Timestamp("2024-01-01", tz="UTC")})
    train = InteractionMatrix.from_frame(frame, users, items)
    embeddings = ItemEmbeddings(ids=list(items.ids), vectors=rng.normal(size=(n_items, dim)))
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        options = dict(epochs=2, batch_size=2048, device="cpu", seed=3)
        for make in (lambda: ShallowNet(embeddings=embeddings, **options),
                     lambda: RandomShallowNet(dim=dim, **options)):
            fits = [make().fit(train) for _ in range(2)]
            for name, value in fits[0].net.state_dict().items():
                assert torch.equal(value, fits[1].net.state_dict()[name]), name
    finally:
        torch.set_num_threads(threads)

"""The listener source and its softmax: profiles and held-out tracks per listener, the whole-catalogue ranking
with seen items excluded and a learned popularity weight, checked by hand and against a plain loop."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tunespace.contrastive.htcl import StageConfig
from tunespace.contrastive.losses import ListenerSoftmax
from tunespace.contrastive.pairs import PairContext, PairSourceError, make_pair_source, sample_mixed

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def context(rows, allowed=None) -> PairContext:
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(6)]})
    log = pd.DataFrame(rows, columns=["user_id", "track_id", "minutes"]).assign(
        timestamp=lambda f: T0 + pd.to_timedelta(f["minutes"], unit="min")).drop(columns="minutes")
    return PairContext(tracks=tracks, interactions=log, allowed_tracks=allowed)


LOG = [("u1", "t0", 0), ("u1", "t1", 5), ("u1", "t0", 7), ("u1", "t2", 9), ("u1", "t3", 20), ("u1", "t4", 30),
       ("u2", "t5", 0), ("u2", "t1", 3), ("u3", "t2", 1)]  # u3 has one track: never drawn


def test_latest_share_is_held_out_and_the_rest_is_the_profile():
    source = make_pair_source("listener", context(LOG), holdout_share=0.4, order="latest")
    assert len(source) == 2  # u3 has a single distinct track
    batch = source.sample(np.random.default_rng(0), 5)
    assert batch.listeners == 2
    by_user = {}
    for row in range(2):
        profile = batch.profile_tracks[batch.profile_owner == row].tolist()
        held = batch.positive_tracks[batch.positive_owner == row].tolist()
        by_user[len(profile) + len(held)] = (profile, held)
    # u1's distinct tracks in first-play order: t0 t1 t2 t3 t4; round(0.4 * 5) = 2 latest held out
    assert by_user[5] == ([0, 1, 2], [3, 4])
    # u2: t5 then t1; round(0.8) = 1 held out, and a profile always keeps at least one track
    assert by_user[2] == ([5], [1])
    np.testing.assert_array_equal(batch.weights, np.ones(2, dtype=np.float32))


def test_random_order_holds_out_a_random_share_and_held_out_tracks_never_count():
    allowed = np.array([True, True, True, False, True, True])  # t3 is a held-out track of the corpus
    source = make_pair_source("listener", context(LOG, allowed), holdout_share=0.5, order="random")
    held_sets = set()
    for seed in range(20):
        batch = source.sample(np.random.default_rng(seed), 2)
        assert 3 not in batch.profile_tracks and 3 not in batch.positive_tracks
        for row in range(batch.listeners):
            profile = set(batch.profile_tracks[batch.profile_owner == row].tolist())
            held = set(batch.positive_tracks[batch.positive_owner == row].tolist())
            assert profile and held and not profile & held
            if len(profile | held) == 4:
                assert profile | held == {0, 1, 2, 4} and len(held) == 2
                held_sets.add(frozenset(held))
    assert len(held_sets) > 2  # not always the same ones


def test_bad_options_and_mixing_are_refused():
    with pytest.raises(PairSourceError, match="holdout_share"):
        make_pair_source("listener", context(LOG), holdout_share=1.0)
    with pytest.raises(PairSourceError, match="order"):
        make_pair_source("listener", context(LOG), order="oldest")
    with pytest.raises(PairSourceError, match="no user with two"):
        make_pair_source("listener", context([("u3", "t2", 1)]))
    with pytest.raises(PairSourceError, match="on its own"):
        sample_mixed([make_pair_source("listener", context(LOG))], np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="trains alone"):
        StageConfig(preference_sources={"listener": {}, "session": {}}, tune="head")
    with pytest.raises(ValueError, match="tune: head"):
        StageConfig(preference_sources={"listener": {}}, tune="all")
    with pytest.raises(ValueError, match="learn_popularity"):
        StageConfig(preference_sources={"history": {}}, learn_popularity=True)
    assert StageConfig(preference_sources={"listener": {}}, tune="head").listener_objective


def test_rows_split_a_batch_by_listener():
    source = make_pair_source("listener", context(LOG), holdout_share=0.4)
    batch = source.sample(np.random.default_rng(0), 2)
    first, second = batch.rows(slice(0, 1)), batch.rows(slice(1, 2))
    assert first.listeners == second.listeners == 1
    assert (first.profile_owner == 0).all() and (second.positive_owner == 0).all()
    assert len(first.profile_tracks) + len(second.profile_tracks) == len(batch.profile_tracks)


def reference_listener_loss(items, profiles, positives, log_popularity, weight, temperature):
    """Plain loop: per listener, mean over held-out tracks of -log softmax over the non-profile candidates."""
    units = [np.asarray(v, float) / np.linalg.norm(v) for v in items]
    per_listener = []
    for profile, held in zip(profiles, positives):
        mean = sum(units[i] for i in profile)
        mean = mean / np.linalg.norm(mean)
        logits = {j: float(mean @ units[j]) / temperature + weight * log_popularity[j]
                  for j in range(len(units)) if j not in profile}
        norm = math.log(sum(math.exp(v) for v in logits.values()))
        per_listener.append(np.mean([norm - logits[j] for j in held]))
    return float(np.mean(per_listener))


def test_listener_softmax_by_hand():
    # unit axes e0, e1 and a third item between them; listener 0's profile is item 0 and it holds out item 1:
    # candidates are items 1 and 2 (item 0 is seen): logits 0/t and cos45/t, plus popularity
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    popularity = torch.tensor([0.0, math.log(3.0), 0.0])
    module = ListenerSoftmax(popularity_weight=1.0, learn_popularity=False, temperature=0.5)
    terms = module(items, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), 1, popularity)
    a, b = 0.0 / 0.5 + math.log(3.0), math.cos(math.pi / 4) / 0.5
    assert terms["loss"].item() == pytest.approx(-a + math.log(math.exp(a) + math.exp(b)), rel=1e-6)
    assert terms["recall@50"].item() == 1.0


def test_listener_softmax_matches_a_plain_loop_and_learns_its_popularity_weight():
    rng = np.random.default_rng(3)
    items = rng.normal(size=(7, 4))
    popularity = np.log1p(rng.integers(0, 50, size=7)).astype(float)
    profiles, positives = [[0, 1, 2], [3], [4, 5]], [[6, 3 + 1], [0], [1]]
    flat = lambda groups: (torch.tensor([i for g in groups for i in g]),  # noqa: E731
                           torch.tensor([r for r, g in enumerate(groups) for _ in g]))
    profile_rows, profile_owner = flat(profiles)
    positive_rows, positive_owner = flat(positives)
    module = ListenerSoftmax(popularity_weight=0.3, learn_popularity=True, temperature=0.2)
    catalogue = torch.tensor(items, requires_grad=True)
    terms = module(catalogue, profile_rows, profile_owner, positive_rows, positive_owner, 3,
                   torch.tensor(popularity))
    assert terms["loss"].item() == pytest.approx(
        reference_listener_loss(items, profiles, positives, popularity, 0.3, 0.2), rel=1e-6)
    terms["loss"].backward()
    assert module.popularity_weight.grad is not None and module.popularity_weight.grad.abs() > 0
    assert catalogue.grad is not None
    frozen = ListenerSoftmax(popularity_weight=0.3, learn_popularity=False)
    assert not frozen.popularity_weight.requires_grad
    # weights scale listeners: a zero weight drops listener 2
    weighted = module(torch.tensor(items), profile_rows, profile_owner, positive_rows, positive_owner, 3,
                      torch.tensor(popularity), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    assert weighted["loss"].item() == pytest.approx(
        reference_listener_loss(items, profiles[:2], positives[:2], popularity, 0.3, 0.2), rel=1e-6)

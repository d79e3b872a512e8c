"""Pair sources: the right pairs, nothing from after the cutoff, no track twice in a batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.contrastive.pairs import PairContext, PairSourceError, make_pair_source, sample_mixed

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def context(**tables) -> PairContext:
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(6)],
                           "metadata_text": ["A", "B", "", "D", "E", "F"]})
    return PairContext(tracks=tracks, **tables)


def log(rows):
    return pd.DataFrame(rows, columns=["user_id", "track_id", "minutes"]).assign(
        timestamp=lambda f: T0 + pd.to_timedelta(f["minutes"], unit="min")).drop(columns="minutes")


def test_session_pairs_are_close_plays_of_one_user():
    interactions = log([("u1", "t0", 0), ("u1", "t1", 5), ("u1", "t2", 100), ("u2", "t3", 0), ("u1", "t3", 101),
                        ("u2", "t4", 10), ("u2", "t4", 12)])
    source = make_pair_source("session", context(interactions=interactions), window_minutes=30, neighbours=2)
    pairs = set(zip(source.anchors.tolist(), source.positives.tolist()))
    # u1: t0-t1 (5 min), t2-t3 (1 min); u2: t3-t4 (10 min), t3-t4 again two plays apart; t4-t4 is no pair
    assert pairs == {(0, 1), (2, 3), (3, 4)}


def test_playlist_pairs_only_from_playlists_made_before_the_cutoff():
    playlists = pd.DataFrame({"playlist_id": ["p1"] * 3 + ["p2"] * 2, "position": [0, 1, 2, 0, 1],
                              "track_id": ["t0", "t1", "t2", "t3", "t4"]})
    sessions = pd.DataFrame({"playlist_id": ["p1", "p2"], "user_id": ["u", "v"],
                             "timestamp": [T0, T0 + pd.Timedelta(days=400)]})
    source = make_pair_source("playlist", context(playlists=playlists, playlist_sessions=sessions,
                                                  cutoff=T0 + pd.Timedelta(days=30)))
    assert set(zip(source.anchors.tolist(), source.positives.tolist())) == {(0, 1), (1, 2)}
    with pytest.raises(PairSourceError, match="leakage"):
        make_pair_source("playlist", context(playlists=playlists, cutoff=T0))


def test_text_sources_and_held_out_tracks():
    captions = pd.DataFrame({"track_id": ["t0", "t0", "t1", "t5"], "language": ["en", "de", "en", "en"],
                             "variant": [0, 0, 0, 0], "text": ["zero", "null", "one", "five"]})
    allowed = np.array([True, True, True, True, True, False])
    source = make_pair_source("captions", context(captions=captions, allowed_tracks=allowed))
    assert sorted(source.texts[i] for i in source.positives) == ["one", "zero"]
    both = make_pair_source("captions", context(captions=captions), languages=("en", "de"))
    assert len(both) == 4
    metadata = make_pair_source("metadata", context())
    assert 2 not in metadata.anchors.tolist()  # empty metadata text is no pair


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 40))
def test_a_batch_never_holds_a_track_twice(seed, size):
    rng = np.random.default_rng(seed)
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(30)]})
    interactions = pd.DataFrame({"user_id": rng.integers(0, 5, 300).astype(str),
                                 "track_id": [f"t{i}" for i in rng.integers(0, 30, 300)],
                                 "timestamp": T0 + pd.to_timedelta(rng.integers(0, 600, 300), unit="min")})
    ctx = PairContext(tracks=tracks, interactions=interactions)
    sources = [make_pair_source("session", ctx), make_pair_source("session", ctx, neighbours=1, weight=0.5)]
    batch = sample_mixed(sources, np.random.default_rng(seed), size)
    seen = np.concatenate([batch.anchors, batch.positives])
    assert len(np.unique(seen)) == len(seen) and 0 < len(batch.anchors) <= size
    assert set(batch.weights.tolist()) <= {1.0, 0.5}


def test_history_pairs_are_a_profile_of_the_same_listener_and_one_more_of_their_tracks():
    interactions = log([("u1", "t0", 0), ("u1", "t1", 500), ("u1", "t2", 9000), ("u1", "t0", 9001),
                        ("u2", "t3", 0), ("u2", "t4", 10), ("u3", "t5", 0), ("u3", "t5", 20)])
    source = make_pair_source("history", context(interactions=interactions), profile_size=2)
    assert len(source) == 5  # distinct (user, track): u1 x3, u2 x2; u3 has one distinct track and gives nothing
    owner = {0: "u1", 1: "u1", 2: "u1", 3: "u2", 4: "u2"}
    for seed in range(20):
        batch = source.sample(np.random.default_rng(seed), 2)
        assert batch.anchors.shape == (2, 2) and len(batch.positives) == 2
        assert {owner[int(p)] for p in batch.positives} == {"u1", "u2"}  # one row per listener
        for profile, positive in zip(batch.anchors.tolist(), batch.positives.tolist()):
            assert positive not in profile and {owner[t] for t in profile} == {owner[positive]}
            if owner[positive] == "u1":
                assert len(set(profile)) == 2  # u1 has two other tracks: no repeat needed
    with pytest.raises(PairSourceError, match="no user with two distinct"):
        make_pair_source("history", context(interactions=log([("u", "t0", 0), ("u", "t0", 5)])))
    with pytest.raises(PairSourceError, match="mixes"):
        sample_mixed([source, make_pair_source("session", context(interactions=interactions))],
                     np.random.default_rng(0), 2)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 5))
def test_history_batches_hold_each_positive_once_and_only_the_listeners_tracks(seed, size, profile_size):
    rng = np.random.default_rng(seed)
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(30)]})
    interactions = pd.DataFrame({"user_id": rng.integers(0, 15, 200).astype(str),
                                 "track_id": [f"t{i}" for i in rng.integers(0, 30, 200)],
                                 "timestamp": T0 + pd.to_timedelta(rng.integers(0, 600, 200), unit="min")})
    source = make_pair_source("history", PairContext(tracks=tracks, interactions=interactions),
                              profile_size=profile_size)
    batch = sample_mixed([source], np.random.default_rng(seed), size)
    assert batch.anchors.shape == (len(batch.positives), profile_size) and 0 < len(batch.positives) <= size
    assert len(set(batch.positives.tolist())) == len(batch.positives)
    heard = interactions.assign(index=interactions["track_id"].str.slice(1).astype(int)).groupby("user_id")["index"]
    per_user = {user: set(values) for user, values in heard}
    for profile, positive in zip(batch.anchors.tolist(), batch.positives.tolist()):
        assert any(positive in own and set(profile) <= own - {positive} for own in per_user.values())

"""Editorial and playlist pair sources: the pairs each defines (worked out by hand on tiny tables), never a track with
itself, never a held-out track, never a playlist made after the cutoff, the same batch for the same (seed, step)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.contrastive.pair_sources import Candidates, nearest
from tunespace.contrastive.pairs import PairContext, PairSourceError, make_pair_source, sample_mixed

T0 = pd.Timestamp("2024-01-01", tz="UTC")
CUTOFF = T0 + pd.Timedelta(days=30)
TRAIN = {"p1": ["t0", "t1", "t2"], "p2": ["t1", "t2", "t3"], "p3": ["t2", "t1", "t4"]}
TEST = {"p4": ["t0", "t5", "t6"]}  # made after the cutoff: t5 and t6 appear in no training playlist


def playlist_tables(train: dict[str, list[str]], test: dict[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [(name, position, track) for name, tracks in {**train, **test}.items()
            for position, track in enumerate(tracks)]
    playlists = pd.DataFrame(rows, columns=["playlist_id", "position", "track_id"])
    sessions = pd.DataFrame({"playlist_id": list(train) + list(test), "user_id": "u",
                             "timestamp": [T0] * len(train) + [CUTOFF + pd.Timedelta(days=1)] * len(test)})
    return playlists, sessions


def context(held_out: tuple[int, ...] = (), tracks: int = 8, train: dict[str, list[str]] | None = None,
            test: dict[str, list[str]] | None = None) -> PairContext:
    frame = pd.DataFrame({"track_id": [f"t{i}" for i in range(tracks)],
                          "artist_id": (["a", "a", "a", "b", "b", "c", None, " "] * tracks)[:tracks],
                          "album_id": (["x", "x", "y", "y", "y", None, "z", "w"] * tracks)[:tracks]})
    playlists, sessions = playlist_tables(TRAIN if train is None else train, TEST if test is None else test)
    allowed = np.ones(tracks, dtype=bool)
    allowed[list(held_out)] = False
    return PairContext(tracks=frame, playlists=playlists, playlist_sessions=sessions, cutoff=CUTOFF,
                       allowed_tracks=allowed)


def pair_set(source) -> set[tuple[int, int]]:
    anchors, positives = source.candidates.expand()
    return set(zip(anchors.tolist(), positives.tolist()))


def both_ways(*pairs: tuple[int, int]) -> set[tuple[int, int]]:
    return set(pairs) | {(b, a) for a, b in pairs}


def test_artist_and_album_pair_tracks_of_one_group():
    artist = make_pair_source("artist", context())
    assert pair_set(artist) == both_ways((0, 1), (0, 2), (1, 2), (3, 4))
    assert artist.unpaired == 3  # t5 alone in its artist, t6 none, t7 blank
    album = make_pair_source("album", context(held_out=(1,)))
    assert pair_set(album) == both_ways((2, 3), (2, 4), (3, 4))  # x loses t1 to the held-out set: t0 is alone
    assert album.unpaired == 4  # t0, t5 (no album), t6 and t7 (albums of one); held-out t1 is not counted
    assert set(zip(*album.build(context(held_out=(1,))))) == pair_set(album)


def test_playlist_random_pairs_share_a_training_playlist_and_draw_playlist_then_track():
    source = make_pair_source("playlist-random", context())
    assert pair_set(source) == both_ways((0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (1, 4), (2, 4))
    assert source.unpaired == 3  # t5, t6 (only in p4, made after the cutoff) and t7 (in no playlist)
    # t1 is in p1, p2, p3 (1/3 each), then one of two others: t2 is in all three, t0, t3, t4 in one each
    draws = source.candidates.draw(np.random.default_rng(0), np.full(60_000, 1))
    shares = np.bincount(draws, minlength=5) / len(draws)
    assert shares[1] == 0 and np.allclose(shares[[0, 2, 3, 4]], [1 / 6, 1 / 2, 1 / 6, 1 / 6], atol=0.01)


def test_playlist_top_follows_hand_counted_co_occurrence():
    # shared training playlists: t1-t2 3; t0-t1, t0-t2, t1-t3, t2-t3, t1-t4, t2-t4 1 each
    top1 = make_pair_source("playlist-top", context(), top=1, min_count=1)
    assert pair_set(top1) == {(0, 1), (1, 2), (2, 1), (3, 1), (4, 1)}  # ties go to the lower track index
    top2 = make_pair_source("playlist-top", context(), top=2, min_count=1)
    assert pair_set(top2) == {(0, 1), (0, 2), (1, 2), (1, 0), (2, 1), (2, 0), (3, 1), (3, 2), (4, 1), (4, 2)}
    strict = make_pair_source("playlist-top", context(), top=5, min_count=2)
    assert pair_set(strict) == {(1, 2), (2, 1)} and strict.unpaired == 6
    without_t2 = make_pair_source("playlist-top", context(held_out=(2,)), top=1, min_count=1)
    assert pair_set(without_t2) == {(0, 1), (1, 0), (3, 1), (4, 1)}  # t1's ties t0, t3, t4 -> t0
    with pytest.raises(PairSourceError, match="found no pairs"):
        make_pair_source("playlist-top", context(), min_count=4)
    with pytest.raises(PairSourceError, match="at least 1"):
        make_pair_source("playlist-top", context(), top=0)


def test_playlists_after_the_cutoff_and_held_out_tracks_never_appear():
    for name in ("playlist-random", "playlist-top", "playlist-emb"):
        options = {"min_count": 1} if name == "playlist-top" else {}
        source = make_pair_source(name, context(held_out=(2,)), **options)
        pairs = pair_set(source)
        assert pairs and not {track for pair in pairs for track in pair} & {2, 5, 6, 7}
        for step in range(20):
            batch = sample_mixed([source], np.random.default_rng([0, step]), 3)
            assert not set(batch.anchors.tolist() + batch.positives.tolist()) & {2, 5, 6}
    playlists, _ = playlist_tables(TRAIN, TEST)
    no_times = PairContext(tracks=context().tracks, playlists=playlists, cutoff=CUTOFF)
    with pytest.raises(PairSourceError, match="leakage"):
        make_pair_source("playlist-random", no_times)
    with pytest.raises(PairSourceError, match="needs the playlists"):
        make_pair_source("playlist-top", PairContext(tracks=context().tracks))
    with pytest.raises(PairSourceError, match="needs a artist_id column"):
        make_pair_source("artist", PairContext(tracks=pd.DataFrame({"track_id": ["t0", "t1"]})))


def test_unpaired_tracks_are_logged_once(caplog):
    with caplog.at_level(logging.INFO, logger="tunespace.contrastive.pair_sources"):
        make_pair_source("artist", context())
    assert [record.getMessage() for record in caplog.records] == [
        "ArtistPairs: 3 of 8 drawable tracks have no positive and are skipped as anchors"]


def clusters(playlists: int = 40) -> dict[str, list[str]]:
    """Two groups of tracks that never share a playlist: t0..t3 and t4..t7, each playlist a shuffle of one group."""
    rng = np.random.default_rng(0)
    return {f"p{i:02d}": [f"t{j}" for j in rng.permutation(4) + 4 * (i % 2)] for i in range(playlists)}


def test_playlist_embedding_neighbours_stay_in_their_cluster_and_are_deterministic():
    ctx = context(train=clusters())
    source = make_pair_source("playlist-emb", ctx, k=3, dim=8, epochs=30, sample=0, seed=3)
    assert pair_set(source) == {(a, b) for group in ({0, 1, 2, 3}, {4, 5, 6, 7}) for a in group for b in group
                                if a != b}
    again = make_pair_source("playlist-emb", ctx, k=3, dim=8, epochs=30, sample=0, seed=3)
    assert np.array_equal(source.vocabulary, again.vocabulary) and np.array_equal(source.vectors, again.vectors)
    # the positives are the anchor's k nearest vectors
    anchors, positives = source.candidates.expand()
    row = {int(track): i for i, track in enumerate(source.vocabulary)}
    for anchor in range(8):
        mine = np.sort(positives[anchors == anchor])
        expected = np.sort(source.vocabulary[nearest(source.vectors, 3)[row[anchor]]])
        assert np.array_equal(mine, expected)
    with pytest.raises(PairSourceError, match="at least 1"):
        make_pair_source("playlist-emb", ctx, k=0)


def test_nearest_on_hand_made_vectors():
    angles = np.radians([0.0, 10.0, 90.0, 180.0])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    assert nearest(vectors, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert nearest(vectors, 2, chunk=1).tolist() == nearest(vectors, 2).tolist()


def test_candidates_from_groups_and_neighbours_by_hand():
    groups = Candidates.from_groups(np.array([5, 5, 9, 9, 9, 7]), np.array([0, 2, 1, 2, 3, 4]), 5)
    pairs = set(zip(*(part.tolist() for part in groups.expand())))
    assert pairs == both_ways((0, 2), (1, 2), (1, 3), (2, 3)) and groups.anchors().tolist() == [0, 1, 2, 3]
    lists = Candidates.from_neighbours(np.array([1, 1, 3]), np.array([0, 4, 1]), 5)
    assert set(zip(*(part.tolist() for part in lists.expand()))) == {(1, 0), (1, 4), (3, 1)}
    assert set(lists.draw(np.random.default_rng(1), np.full(200, 1)).tolist()) == {0, 4}


NAMES = ("artist", "album", "playlist-random", "playlist-top", "playlist-emb")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.sampled_from(NAMES))
def test_batches_never_pair_a_track_with_itself_nor_repeat_one_and_depend_only_on_seed_and_step(seed, size, name):
    rng = np.random.default_rng(seed)
    tracks = 40
    train = {f"p{i}": [f"t{j}" for j in rng.choice(tracks, rng.integers(2, 8), replace=False)] for i in range(30)}
    ctx = context(held_out=(0, 1), tracks=tracks, train=train, test={"late": ["t0", "t2", "t3"]})
    options = {"min_count": 1} if name == "playlist-top" else {"dim": 8, "epochs": 2} if name == "playlist-emb" else {}
    source = make_pair_source(name, ctx, **options)
    partner = make_pair_source("playlist-random", ctx, weight=0.5)
    batch = sample_mixed([source, partner], np.random.default_rng([seed, 7]), size)
    seen = np.concatenate([batch.anchors, batch.positives])
    assert len(np.unique(seen)) == len(seen) and 0 < len(batch.anchors) <= size
    assert not np.isin(seen, [0, 1]).any()
    pairs = pair_set(source) | pair_set(partner)
    assert set(zip(batch.anchors.tolist(), batch.positives.tolist())) <= pairs
    same = sample_mixed([source, partner], np.random.default_rng([seed, 7]), size)
    assert np.array_equal(same.anchors, batch.anchors) and np.array_equal(same.positives, batch.positives)
    assert np.array_equal(same.weights, batch.weights)


def test_a_batch_fills_up_when_the_catalogue_allows_and_respects_used_tracks():
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(600)], "artist_id": [f"a{i % 3}" for i in range(600)]})
    source = make_pair_source("artist", PairContext(tracks=tracks))
    used = set(range(100))
    batch = source.sample(np.random.default_rng(0), 150, used)
    assert len(batch.anchors) == 150 and len(used) == 400
    assert not np.isin(np.concatenate([batch.anchors, batch.positives]), np.arange(100)).any()
    assert (np.asarray(tracks["artist_id"])[batch.anchors] == np.asarray(tracks["artist_id"])[batch.positives]).all()

"""The temporal protocol: a hand-made log with every case listed by hand, then properties over random logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tunespace.data.schema import INTERACTIONS, TIMESTAMP_DTYPE, validate_table
from tunespace.data.splits import PARTS, Split, SplitConfig, temporal_split
from tunespace.errors import SplitError

WARM_PARTS = ("validation", "test")
COLD_PARTS = ("cold_validation", "cold_test")
TEST_PARTS = WARM_PARTS + COLD_PARTS


def log(rows: list[tuple[str, str, str]] | list[tuple[str, str, str, float]]) -> pd.DataFrame:
    columns = ["user_id", "track_id", "timestamp", "weight"][: len(rows[0])]
    return validate_table(pd.DataFrame(rows, columns=columns), INTERACTIONS)


def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["track_id"]))


def users_of(split: Split, parts) -> set[str]:
    return set().union(*(set(split.part(p)["user_id"]) for p in parts))


# ---------------------------------------------------------------- a hand-made log

CUTOFF = "2020-03-01"
TRAIN_START = "2020-01-01"
TEST_START = "2020-03-10"
TEST_END = "2020-04-01"

HAND_LOG = [
    # train window [2020-01-01, 2020-03-01)
    ("u1", "a", "2020-01-05"),
    ("u2", "b", "2020-02-01"),
    ("u2", "c", "2020-02-10"),
    ("u3", "a", "2020-01-01T00:00:00"),  # exactly train_start: in train
    # before train_start: not in train
    ("u1", "b", "2019-12-15"),
    ("u4", "a", "2019-11-01"),  # u4 only ever appears outside train: not a train user
    # pair first seen in train, seen again in the test window: not a test pair
    ("u1", "a", "2020-03-15"),
    # pair first seen before train_start, again in the test window: not a test pair
    ("u1", "b", "2020-03-15"),
    # pair first seen in the gap [cutoff, test_start), again in the test window: not a test pair
    ("u1", "c", "2020-03-05"),
    ("u1", "c", "2020-03-20"),
    ("u3", "c", "2020-03-01T00:00:00"),  # exactly the cutoff: not in train, in the gap
    ("u3", "c", "2020-03-20"),
    # warm test pairs: first seen in [test_start, test_end), train user and train item
    ("u2", "a", "2020-03-12"),
    ("u3", "b", "2020-03-25"),
    ("u3", "b", "2020-03-28"),  # a repeat: the pair keeps its first timestamp
    # cold-item pairs: item d first appears after the cutoff
    ("u2", "d", "2020-03-10T00:00:00"),  # exactly test_start: in the window
    ("u1", "d", "2020-03-15"),
    ("u3", "d", "2020-03-26"),
    # users unseen in train: dropped and counted (3 pairs)
    ("u5", "a", "2020-03-15"),
    ("u5", "d", "2020-03-16"),
    ("u4", "c", "2020-03-15"),
    # at or after test_end: outside the window (e is not a cold item)
    ("u1", "e", "2020-04-01T00:00:00"),
    ("u2", "e", "2020-04-05"),
]

EXPECTED_TRAIN = {("u1", "a", "2020-01-05"), ("u2", "b", "2020-02-01"), ("u2", "c", "2020-02-10"),
                  ("u3", "a", "2020-01-01")}
EXPECTED_WARM = {("u2", "a", "2020-03-12"), ("u3", "b", "2020-03-25")}
EXPECTED_COLD = {("u2", "d", "2020-03-10"), ("u1", "d", "2020-03-15"), ("u3", "d", "2020-03-26")}


def triples(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    return {(u, t, s.strftime("%Y-%m-%d")) for u, t, s in zip(frame["user_id"], frame["track_id"],
                                                                 frame["timestamp"])}


def hand_split(**overrides) -> Split:
    config = dict(cutoff=CUTOFF, train_start=TRAIN_START, test_start=TEST_START, test_end=TEST_END,
                  validation_ratio=0.0, seed=0)
    config.update(overrides)
    return temporal_split(log(HAND_LOG), SplitConfig(**config))


def test_hand_made_log_all_test():
    split = hand_split()
    assert triples(split.train) == EXPECTED_TRAIN
    assert len(split.train) == len(EXPECTED_TRAIN)
    assert triples(split.test) == EXPECTED_WARM
    assert triples(split.cold_test) == EXPECTED_COLD
    assert split.validation.empty and split.cold_validation.empty
    assert list(split.users.ids) == ["u1", "u2", "u3"]
    assert list(split.items.ids) == ["a", "b", "c", "d"]
    assert split.n_warm_items == 3
    assert split.stats["dropped_cold_user_pairs"] == 3
    assert split.stats["test_window_pairs"] == 2 + 3 + 3
    assert split.stats["cold_items"] == 1
    assert split.stats["train_interactions"] == 4
    assert split.stats["test_pairs"] == 2 and split.stats["cold_test_pairs"] == 3
    assert split.stats["validation_pairs"] == 0 and split.stats["cold_validation_pairs"] == 0
    # test sets are sorted by user, then time
    assert list(split.cold_test["user_id"]) == ["u1", "u2", "u3"]


def test_hand_made_log_all_validation():
    split = hand_split(validation_ratio=1.0)
    assert triples(split.validation) == EXPECTED_WARM
    assert triples(split.cold_validation) == EXPECTED_COLD
    assert split.test.empty and split.cold_test.empty
    assert split.stats["validation_users"] == 2 and split.stats["test_users"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_hand_made_log_half_split_partitions_users(seed):
    split = hand_split(validation_ratio=0.5, seed=seed)
    validation_users = users_of(split, ("validation", "cold_validation"))
    test_users = users_of(split, ("test", "cold_test"))
    assert len(validation_users) == round(0.5 * 3) == 2
    assert validation_users | test_users == {"u1", "u2", "u3"}
    assert not validation_users & test_users
    assert triples(pd.concat([split.validation, split.test])) == EXPECTED_WARM
    assert triples(pd.concat([split.cold_validation, split.cold_test])) == EXPECTED_COLD


def test_test_end_bounds_the_window():
    split = hand_split(test_end=None)
    # e, first met by u1 exactly at the old test_end and by u2 after it, is now a cold item
    assert triples(split.cold_test) == EXPECTED_COLD | {("u1", "e", "2020-04-01"), ("u2", "e", "2020-04-05")}
    assert list(split.items.ids) == ["a", "b", "c", "d", "e"]
    assert triples(split.test) == EXPECTED_WARM
    # a test_end just after d's first interaction keeps only (u2, d)
    split = hand_split(test_end="2020-03-11")
    assert split.test.empty
    assert triples(split.cold_test) == {("u2", "d", "2020-03-10")}
    assert split.stats["dropped_cold_user_pairs"] == 0


def test_test_start_defaults_to_the_cutoff():
    split = hand_split(test_start=None)
    # with no gap, the pairs first met in [cutoff, 2020-03-10) become test pairs
    assert triples(split.test) == EXPECTED_WARM | {("u1", "c", "2020-03-05"), ("u3", "c", "2020-03-01")}
    assert triples(split.cold_test) == EXPECTED_COLD


def test_no_train_start_takes_all_history():
    split = hand_split(train_start=None)
    assert triples(split.train) == EXPECTED_TRAIN | {("u1", "b", "2019-12-15"), ("u4", "a", "2019-11-01")}
    assert "u4" in split.users
    # u4 now has a profile, so its pair is a warm test pair instead of being dropped
    assert triples(split.test) == EXPECTED_WARM | {("u4", "c", "2020-03-15")}
    assert split.stats["dropped_cold_user_pairs"] == 2


def test_split_keeps_the_train_weights_and_part_names():
    rows = [("u1", "a", "2020-01-05", 3.0), ("u1", "b", "2020-01-06", 0.5), ("u1", "c", "2020-03-05", 1.0)]
    split = temporal_split(log(rows), SplitConfig(cutoff=CUTOFF))
    assert split.train["weight"].tolist() == [3.0, 0.5]
    for name in PARTS:
        assert split.part(name) is getattr(split, name)
    with pytest.raises(SplitError):
        split.part("everything")


# ---------------------------------------------------------------- SplitConfig errors


@pytest.mark.parametrize("ratio", [-0.01, 1.01, 2, float("nan")])
def test_ratio_outside_unit_interval(ratio):
    with pytest.raises(SplitError):
        SplitConfig(cutoff=CUTOFF, validation_ratio=ratio)


@pytest.mark.parametrize("ratio", [0, 0.0, 0.3, 1, 1.0])
def test_ratio_inside_unit_interval(ratio):
    SplitConfig(cutoff=CUTOFF, validation_ratio=ratio)


def test_test_start_before_cutoff():
    with pytest.raises(SplitError, match="before the cutoff"):
        SplitConfig(cutoff=CUTOFF, test_start="2020-02-28")
    # equal is fine; a zone that makes it earlier is not
    SplitConfig(cutoff=CUTOFF, test_start=CUTOFF)
    with pytest.raises(SplitError):
        SplitConfig(cutoff=CUTOFF, test_start="2020-03-01T00:30:00+01:00")


@pytest.mark.parametrize("train_start", ["2020-03-02", CUTOFF])
def test_train_start_not_before_cutoff(train_start):
    with pytest.raises(SplitError):
        SplitConfig(cutoff=CUTOFF, train_start=train_start)


@pytest.mark.parametrize("test_end", ["2020-03-10", "2020-03-09"])
def test_test_end_not_after_test_start(test_end):
    with pytest.raises(SplitError):
        SplitConfig(cutoff=CUTOFF, test_start="2020-03-10", test_end=test_end)


@pytest.mark.parametrize("field", ["cutoff", "train_start", "test_start", "test_end"])
@pytest.mark.parametrize("value", ["2020-13-01", "not a date", "2020-02-30"])
def test_unparseable_date(field, value):
    config = dict(cutoff="2020-03-01")
    config[field] = value
    with pytest.raises(SplitError, match="not a date"):
        SplitConfig(**config)


@pytest.mark.parametrize("field", ["cutoff", "train_start", "test_start", "test_end"])
def test_empty_date_is_rejected(field):
    config = dict(cutoff="2020-03-01")
    config[field] = ""
    with pytest.raises(SplitError):
        SplitConfig(**config)


def test_empty_train_window():
    interactions = log(HAND_LOG)
    with pytest.raises(SplitError, match="train window"):
        temporal_split(interactions, SplitConfig(cutoff="2019-01-01"))
    # interactions exist before the cutoff, but none inside [train_start, cutoff)
    with pytest.raises(SplitError, match="train window"):
        temporal_split(interactions, SplitConfig(cutoff="2019-12-31", train_start="2019-12-16"))
    with pytest.raises(SplitError):
        temporal_split(interactions.iloc[:0], SplitConfig(cutoff=CUTOFF))


def test_cutoff_after_the_last_event_leaves_no_test_users():
    # the last event of the hand log is on 2020-04-05: nothing can be first met after it
    with pytest.raises(SplitError, match="no test users.*last event is on 2020-04-05"):
        temporal_split(log(HAND_LOG), SplitConfig(cutoff="2020-05-01"))
    # a window holding only a pair of a user unseen in train (u5, d on 2020-03-16) has no test user either
    with pytest.raises(SplitError, match="no test users"):
        hand_split(test_start="2020-03-16", test_end="2020-03-17")


def test_validation_ratio_that_takes_every_test_user_is_refused():
    # 3 test-window users (u1, u2, u3): round(0.9 * 3) = 3 leaves none for test; round(0.6 * 3) = 2 leaves one
    with pytest.raises(SplitError, match="validation_ratio 0.9 sends all 3 test-window users to validation"):
        hand_split(validation_ratio=0.9)
    assert users_of(hand_split(validation_ratio=0.6), ("test", "cold_test")) != set()
    assert hand_split(validation_ratio=1.0).test.empty  # all validation, asked for on purpose


# ---------------------------------------------------------------- save / load and the train matrix


def assert_splits_equal(a: Split, b: Split) -> None:
    assert a.config == b.config
    assert a.users == b.users and a.items == b.items
    assert a.n_warm_items == b.n_warm_items
    assert a.stats == b.stats
    for name in PARTS:
        pdt.assert_frame_equal(a.part(name), b.part(name), obj=name)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_save_load_round_trip(tmp_path, ratio):
    split = hand_split(validation_ratio=ratio, seed=3)
    split.save(tmp_path / "split")
    assert {p.name for p in (tmp_path / "split").iterdir()} == (
        {f"{name}.parquet" for name in PARTS} | {"users.parquet", "items.parquet", "split.json"})
    back = Split.load(tmp_path / "split")
    assert_splits_equal(back, split)


def test_load_of_a_non_split_folder(tmp_path):
    with pytest.raises(SplitError):
        Split.load(tmp_path)


def test_train_matrix():
    rows = [("u1", "a", "2020-01-05", 2.0), ("u1", "a", "2020-01-07", 1.5), ("u1", "b", "2020-01-06", 1.0),
            ("u2", "b", "2020-02-01", 4.0), ("u3", "c", "2020-02-03", 0.5),
            ("u1", "z", "2020-03-05", 1.0),  # cold item: in items, not in the train matrix
            ("u9", "a", "2020-03-05", 1.0)]
    split = temporal_split(log(rows), SplitConfig(cutoff=CUTOFF))
    assert list(split.items.ids) == ["a", "b", "c", "z"]
    m = split.train_matrix()
    assert m.matrix.shape == (3, 3) == (len(split.users), split.n_warm_items)
    assert m.users == split.users
    assert list(m.items.ids) == ["a", "b", "c"]
    dense = m.matrix.toarray()
    np.testing.assert_allclose(dense, [[3.5, 1.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.5]])
    assert dense.sum() == pytest.approx(split.train["weight"].sum())
    np.testing.assert_array_equal(m.binary().toarray(), (dense > 0).astype(np.float32))
    assert len(m.events) == len(split.train)


def test_train_matrix_of_the_hand_log():
    split = hand_split()
    m = split.train_matrix()
    assert m.matrix.shape == (len(split.users), split.n_warm_items) == (3, 3)
    np.testing.assert_array_equal(np.asarray(m.matrix.sum(axis=1)).ravel(), [1, 2, 1])
    np.testing.assert_array_equal(np.asarray(m.matrix.sum(axis=0)).ravel(), [2, 1, 1])


# ---------------------------------------------------------------- properties over random logs
#
# Users, tracks and times come from small ranges so that pairs recur, users and items straddle the cutoff, and
# interactions land exactly on the window edges. Times are in steps of 12 hours from BASE; every window edge is
# one of those steps too.

BASE = pd.Timestamp("2021-01-01", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return BASE + pd.Timedelta(hours=12 * n)


@st.composite
def logs_and_configs(draw):
    size = draw(st.integers(1, 60))  # hypothesis keeps plain lists short; ask for a length up front
    events = draw(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 7), st.integers(0, 20)),
                           min_size=size, max_size=size))
    events = np.unique(np.asarray(events, dtype=np.int64), axis=0)  # one event per (user, track, time)
    events = events[np.random.default_rng(draw(st.integers(0, 2**16))).permutation(len(events))]
    users, tracks, times = events.T
    # already in the normalised form validate_table returns (checked once in test_random_logs_are_valid)
    interactions = pd.DataFrame({
        "user_id": pd.array(np.char.add("u", users.astype(str)), dtype="string"),
        "track_id": pd.array(np.char.add("t", tracks.astype(str)), dtype="string"),
        "timestamp": (BASE + pd.to_timedelta(12 * times, unit="h")).astype(TIMESTAMP_DTYPE),
        "weight": (1 + (users + tracks + times) % 3).astype(np.float32),
    })
    cutoff = draw(st.one_of(st.integers(5, 15), st.integers(1, 21)))  # mostly mid-log: both sides populated
    train_start = draw(st.one_of(st.none(), st.integers(-1, cutoff - 1)))
    test_start = draw(st.one_of(st.none(), st.integers(cutoff, 22)))
    first_test = cutoff if test_start is None else test_start
    test_end = draw(st.one_of(st.none(), st.integers(first_test + 1, 23)))
    ratio = draw(st.one_of(st.sampled_from([0.0, 0.3, 0.5, 1.0]), st.floats(0.0, 1.0)))
    seed = draw(st.integers(0, 2**32 - 1))

    def iso(n):
        return None if n is None else day(n).isoformat()

    config = SplitConfig(cutoff=iso(cutoff), train_start=iso(train_start), test_start=iso(test_start),
                         test_end=iso(test_end), validation_ratio=ratio, seed=seed)
    window = dict(cutoff=day(cutoff), train_start=None if train_start is None else day(train_start),
                  test_start=day(first_test), test_end=None if test_end is None else day(test_end))
    return interactions, config, window


def expected_train(interactions: pd.DataFrame, window) -> pd.DataFrame:
    mask = interactions["timestamp"] < window["cutoff"]
    if window["train_start"] is not None:
        mask &= interactions["timestamp"] >= window["train_start"]
    return interactions.loc[mask]


def expected_test_users(interactions: pd.DataFrame, window) -> set[str]:
    """Train users whose first interaction with some track falls in the test window."""
    train_users = set(expected_train(interactions, window)["user_id"])
    firsts = interactions.groupby(["user_id", "track_id"], as_index=False)["timestamp"].min()
    in_window = firsts["timestamp"] >= window["test_start"]
    if window["test_end"] is not None:
        in_window &= firsts["timestamp"] < window["test_end"]
    return set(firsts.loc[in_window, "user_id"]) & train_users


def split_or_none(interactions, config, window) -> Split | None:
    """The split, or None after checking that an empty train window, or no user left on the test side, raises."""
    n = len(expected_test_users(interactions, window))
    if (expected_train(interactions, window).empty or n == 0
            or (config.validation_ratio < 1 and round(config.validation_ratio * n) == n)):
        with pytest.raises(SplitError):
            temporal_split(interactions, config)
        return None
    return temporal_split(interactions, config)


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["user_id", "track_id", "timestamp"]).reset_index(drop=True)


def check_no_test_pair_seen_before_test_start(split, interactions, window):
    """(a) no test pair is in train; more strongly, no test pair has any interaction before test_start."""
    train_pairs = pairs(split.train)
    before = pairs(interactions.loc[interactions["timestamp"] < window["test_start"]])
    firsts = interactions.groupby(["user_id", "track_id"])["timestamp"].min()
    for name in TEST_PARTS:
        part = split.part(name)
        assert not pairs(part) & train_pairs, name
        assert not pairs(part) & before, name
        assert (part["timestamp"] >= window["test_start"]).all(), name
        if window["test_end"] is not None:
            assert (part["timestamp"] < window["test_end"]).all(), name
        # one row per pair, at the time of its first interaction ever
        assert not part.duplicated(["user_id", "track_id"]).any(), name
        for user, track, stamp in zip(part["user_id"], part["track_id"], part["timestamp"]):
            assert firsts[(user, track)] == stamp, name


def check_no_user_on_both_sides(split):
    """(b) validation and test users are disjoint, warm and cold sets combined."""
    assert not users_of(split, ("validation", "cold_validation")) & users_of(split, ("test", "cold_test"))


def check_cold_and_warm_sets(split, interactions, window):
    """(d) cold sets: train users, non-train items; warm sets: train users, train items; and nothing is lost."""
    train_users, train_items = set(split.train["user_id"]), set(split.train["track_id"])
    assert set(split.users.ids) == train_users
    assert list(split.items.ids[: split.n_warm_items]) == sorted(train_items)
    for name in WARM_PARTS:
        assert set(split.part(name)["user_id"]) <= train_users, name
        assert set(split.part(name)["track_id"]) <= train_items, name
    cold_items = set()
    for name in COLD_PARTS:
        assert set(split.part(name)["user_id"]) <= train_users, name
        assert not set(split.part(name)["track_id"]) & train_items, name
        cold_items |= set(split.part(name)["track_id"])
    assert list(split.items.ids[split.n_warm_items:]) == sorted(cold_items)
    assert split.stats["cold_items"] == len(cold_items)
    # every pair first met in the test window is in exactly one set, or dropped because its user has no profile
    firsts = interactions.groupby(["user_id", "track_id"], as_index=False)["timestamp"].min()
    in_window = firsts["timestamp"] >= window["test_start"]
    if window["test_end"] is not None:
        in_window &= firsts["timestamp"] < window["test_end"]
    window_pairs = pairs(firsts.loc[in_window])
    kept = [pairs(split.part(name)) for name in TEST_PARTS]
    assert sum(map(len, kept)) == len(set().union(*kept))
    kept = set().union(*kept)
    assert kept <= window_pairs
    dropped = window_pairs - kept
    assert all(user not in train_users for user, _ in dropped)
    assert split.stats["dropped_cold_user_pairs"] == len(dropped)
    assert split.stats["test_window_pairs"] == len(window_pairs)


def check_validation_share(split, config):
    """(e) round(ratio * n) of the n test users are validation users."""
    validation_users = users_of(split, ("validation", "cold_validation"))
    all_test_users = validation_users | users_of(split, ("test", "cold_test"))
    assert len(validation_users) == round(config.validation_ratio * len(all_test_users))
    if config.validation_ratio == 0:
        assert not validation_users
    if config.validation_ratio == 1:
        assert validation_users == all_test_users


def check_train_window(split, interactions, window):
    """(f) train is exactly the interactions in [train_start, cutoff)."""
    pdt.assert_frame_equal(canonical(split.train), canonical(expected_train(interactions, window)))
    assert split.stats["train_interactions"] == len(split.train)
    m = split.train_matrix()
    assert m.matrix.shape == (len(split.users), split.n_warm_items)
    assert m.matrix.sum() == pytest.approx(float(split.train["weight"].sum()))


@settings(max_examples=10, deadline=None)
@given(case=logs_and_configs())
def test_random_logs_are_valid(case):
    interactions, _, _ = case
    pdt.assert_frame_equal(validate_table(interactions, INTERACTIONS), interactions)


@settings(max_examples=100, deadline=None)
@given(case=logs_and_configs())
def test_property_split_invariants(case):
    interactions, config, window = case
    split = split_or_none(interactions, config, window)
    if split is None:
        return
    check_no_test_pair_seen_before_test_start(split, interactions, window)
    check_no_user_on_both_sides(split)
    check_cold_and_warm_sets(split, interactions, window)
    check_validation_share(split, config)
    check_train_window(split, interactions, window)


@settings(max_examples=75, deadline=None)  # three splits an example
@given(case=logs_and_configs(), shuffle_seed=st.integers(0, 2**32 - 1))
def test_property_deterministic_and_independent_of_row_order(case, shuffle_seed):
    """(c) one seed, one split: equal frames on a rerun, and on shuffled rows (train compared as a set)."""
    interactions, config, window = case
    split = split_or_none(interactions, config, window)
    if split is None:
        return
    assert_splits_equal(temporal_split(interactions, config), split)
    order = np.random.default_rng(shuffle_seed).permutation(len(interactions))
    shuffled = temporal_split(interactions.iloc[order].reset_index(drop=True), config)
    assert shuffled.users == split.users and shuffled.items == split.items
    assert shuffled.n_warm_items == split.n_warm_items
    assert shuffled.stats == split.stats
    pdt.assert_frame_equal(canonical(shuffled.train), canonical(split.train))
    for name in TEST_PARTS:
        pdt.assert_frame_equal(shuffled.part(name), split.part(name), obj=name)


@settings(max_examples=30, deadline=None)
@given(case=logs_and_configs(), other=st.integers(0, 2**32 - 1))
def test_property_seed_changes_only_the_partition(case, other):
    interactions, config, window = case
    assume(other != config.seed)
    split = split_or_none(interactions, config, window)
    if split is None:
        return
    again = temporal_split(interactions, SplitConfig(**{**config.__dict__, "seed": other}))
    for warm_or_cold in (WARM_PARTS, COLD_PARTS):
        a = canonical(pd.concat([split.part(p) for p in warm_or_cold]))
        b = canonical(pd.concat([again.part(p) for p in warm_or_cold]))
        pdt.assert_frame_equal(a, b)
    assert again.users == split.users and again.items == split.items
    check_no_user_on_both_sides(again)


@settings(max_examples=20, deadline=None)
@given(case=logs_and_configs())
def test_property_save_load_round_trip(tmp_path_factory, case):
    interactions, config, window = case
    split = split_or_none(interactions, config, window)
    if split is None:
        return
    folder = tmp_path_factory.mktemp("split")
    split.save(folder)
    assert_splits_equal(Split.load(folder), split)

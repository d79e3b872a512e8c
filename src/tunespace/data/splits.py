"""The temporal protocol of Tamm and Aljanaki (RecSys 2024), plus the cold-item set they lacked.

- train: every interaction in [train_start, cutoff).
- test pairs: (user, item) pairs whose FIRST interaction ever falls in [test_start, test_end), so every test item
  is new to its user (a pair first met before the cutoff, even outside the train window, is never a test pair).
- warm test: test pairs whose user and item both occur in train. Pairs with a known user and an item unseen in
  train form the cold-item set; pairs of users unseen in train are dropped (no profile to recommend from) and
  counted in the stats.
- test users are split into validation and test by a seeded random partition over the sorted user ids, applied
  to the warm and the cold sets alike, so no user is ever on both sides.
- a split that leaves no test user (cutoff after the last event, or a validation ratio below 1 that still takes
  every user) is refused with a SplitError rather than evaluated on nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.data.catalog import IdMap
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import SplitError
from tunespace.io import write_parquet, write_text

PARTS = ("train", "validation", "test", "cold_validation", "cold_test")


def _timestamp(value: str | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise SplitError(f"not a date: {value!r}") from error
    if pd.isna(stamp):
        raise SplitError(f"not a date: {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@dataclass(frozen=True)
class SplitConfig:
    """Dates are ISO strings (UTC when no zone is given). test_start defaults to the cutoff."""

    cutoff: str
    train_start: str | None = None
    test_start: str | None = None
    test_end: str | None = None
    validation_ratio: float = 0.5
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_ratio <= 1.0:
            raise SplitError(f"validation_ratio must lie in [0, 1], got {self.validation_ratio}")
        cutoff = _timestamp(self.cutoff)
        start = _timestamp(self.train_start)
        test_start = _timestamp(self.test_start) or cutoff
        test_end = _timestamp(self.test_end)
        if start is not None and start >= cutoff:
            raise SplitError(f"train_start {self.train_start} is not before the cutoff {self.cutoff}")
        if test_start < cutoff:
            raise SplitError(f"test_start {self.test_start} is before the cutoff {self.cutoff}: test would leak "
                             "into train")
        if test_end is not None and test_end <= test_start:
            raise SplitError(f"test_end {self.test_end} is not after test_start {test_start.date()}")

    def window(self) -> tuple[pd.Timestamp, pd.Timestamp | None, pd.Timestamp, pd.Timestamp | None]:
        """(cutoff, train_start, test_start, test_end) as UTC timestamps (None where open), for splitters that
        filter the log themselves (the partitioned one in `tunespace.data.scale`)."""
        cutoff = _timestamp(self.cutoff)
        return cutoff, _timestamp(self.train_start), _timestamp(self.test_start) or cutoff, _timestamp(self.test_end)


@dataclass
class Split:
    """Train events plus four sets of first-interaction test pairs, and the id maps models index by.

    `items` lists the train items first (indices [0, n_warm_items)), then the cold items, so warm evaluation
    ranks the train catalogue and cold-start evaluation can rank the whole of it.
    """

    config: SplitConfig
    users: IdMap
    items: IdMap
    n_warm_items: int
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    cold_validation: pd.DataFrame
    cold_test: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)

    def part(self, name: str) -> pd.DataFrame:
        if name not in PARTS:
            raise SplitError(f"unknown split part {name!r}; choose from {', '.join(PARTS)}")
        return getattr(self, name)

    def train_matrix(self) -> InteractionMatrix:
        """Train interactions over the warm catalogue, the input of every recommender's `fit`."""
        warm_items = IdMap(self.items.ids[: self.n_warm_items], name="track_id")
        return InteractionMatrix.from_frame(self.train, self.users, warm_items)

    def repartitioned(self, seed: int) -> Split:
        """The same split with its test-window users partitioned by `seed`: what `temporal_split` gives with
        `SplitConfig(seed=seed)` (train, catalogue and pairs unchanged; only who validates changes)."""
        if seed == self.config.seed:
            return self
        warm = pd.concat([self.validation, self.test], ignore_index=True)
        cold = pd.concat([self.cold_validation, self.cold_test], ignore_index=True)
        warm_items = IdMap(self.items.ids[: self.n_warm_items], name="track_id")
        base = {key: self.stats[key] for key in ("train_interactions", "train_users", "train_items",
                                                  "test_window_pairs", "dropped_cold_user_pairs") if key in self.stats}
        repartitioned = partitioned(replace(self.config, seed=seed), self.users, warm_items, self.train, warm, cold,
                                    base)
        return replace(repartitioned, items=self.items)  # the same cold-item order as the base split

    def pooled(self, users: set[str] | None = None) -> Split:
        """The split with every test-window user (or only `users`) on the test side and no validation pairs: one
        evaluation that each partition's users are then sliced from (`Split.repartitioned` moves only who
        validates, not the train part)."""

        def of(*frames: pd.DataFrame) -> pd.DataFrame:
            joined = pd.concat(frames, ignore_index=True)
            return _tidy(joined if users is None else joined[joined["user_id"].astype(str).isin(users)])

        return replace(self, validation=self.validation.iloc[:0], cold_validation=self.cold_validation.iloc[:0],
                       test=of(self.validation, self.test), cold_test=of(self.cold_validation, self.cold_test))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in PARTS:
            write_parquet(getattr(self, name), folder / f"{name}.parquet")
        self.users.save(folder / "users.parquet")
        self.items.save(folder / "items.parquet")
        write_text(json.dumps({"config": asdict(self.config), "n_warm_items": self.n_warm_items,
                               "stats": self.stats}, indent=2), folder / "split.json")

    @classmethod
    def load(cls, folder: str | Path) -> Split:
        folder = Path(folder)
        meta_path = folder / "split.json"
        if not meta_path.exists():
            raise SplitError(f"{folder}: not a split folder (no split.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        parts = {name: pd.read_parquet(folder / f"{name}.parquet") for name in PARTS}
        return cls(config=SplitConfig(**meta["config"]), users=IdMap.load(folder / "users.parquet"),
                   items=IdMap.load(folder / "items.parquet"), n_warm_items=int(meta["n_warm_items"]),
                   stats=meta["stats"], **parts)


def temporal_split(interactions: pd.DataFrame, config: SplitConfig) -> Split:
    """Apply the temporal protocol to validated interactions (see the module docstring)."""
    cutoff = _timestamp(config.cutoff)
    train_start = _timestamp(config.train_start)
    test_start = _timestamp(config.test_start) or cutoff
    test_end = _timestamp(config.test_end)
    stamps = interactions["timestamp"]

    in_train = stamps < cutoff
    if train_start is not None:
        in_train &= stamps >= train_start
    train = interactions.loc[in_train].reset_index(drop=True)
    if train.empty:
        raise SplitError(f"no interaction falls in the train window before {config.cutoff}")

    first = (interactions.groupby(["user_id", "track_id"], sort=False, observed=True)["timestamp"].min()
             .rename("timestamp").reset_index())
    in_test = first["timestamp"] >= test_start
    if test_end is not None:
        in_test &= first["timestamp"] < test_end
    pairs = first.loc[in_test]

    users = IdMap.from_values(train["user_id"], name="user_id")
    warm_items = IdMap.from_values(train["track_id"], name="track_id")
    known_user = users.contains(pairs["user_id"])
    known_item = warm_items.contains(pairs["track_id"])
    warm = pairs.loc[known_user & known_item]
    cold = pairs.loc[known_user & ~known_item]

    base_stats = {
        "train_interactions": len(train),
        "train_users": len(users),
        "train_items": len(warm_items),
        "test_window_pairs": len(pairs),
        "dropped_cold_user_pairs": int((~known_user).sum()),
    }
    _require_test_users(config, warm, cold, interactions, test_start, test_end)
    return partitioned(config, users, warm_items, train, warm, cold, base_stats)


def _require_test_users(config: SplitConfig, warm: pd.DataFrame, cold: pd.DataFrame, interactions: pd.DataFrame,
                        test_start: pd.Timestamp, test_end: pd.Timestamp | None) -> None:
    """Refuse a split with nothing to evaluate, here where every command builds one, rather than an empty table
    (or a mean over no users) later. validation_ratio=1 empties the test side on purpose and is allowed."""
    n_users = len(pd.unique(pd.concat([warm["user_id"], cold["user_id"]])))
    if n_users == 0:
        window = f"[{test_start.date()}, {test_end.date() if test_end is not None else 'end'})"
        raise SplitError(f"no test users: no train user meets a new track in the test window {window} (the last "
                         f"event is on {interactions['timestamp'].max().date()}); choose an earlier cutoff or "
                         "test window")
    if config.validation_ratio < 1 and round(config.validation_ratio * n_users) == n_users:
        raise SplitError(f"no test users: validation_ratio {config.validation_ratio} sends all {n_users} test-window "
                         "users to validation; lower the validation ratio or widen the test window")


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["user_id", "timestamp", "track_id"]).reset_index(drop=True)


def validation_user_ids(test_users: np.ndarray, config: SplitConfig) -> set[str]:
    """The test-window users (distinct ids, any order) that `config.seed` sends to validation: a seeded permutation
    of the ids sorted as strings, so the partition depends on the ids alone, whatever reads the log."""
    ordered = np.sort(np.asarray(test_users).astype(str))
    order = np.random.default_rng(config.seed).permutation(len(ordered))
    return set(ordered[order[:int(round(config.validation_ratio * len(ordered)))]])


def partitioned(config: SplitConfig, users: IdMap, warm_items: IdMap, train: pd.DataFrame, warm: pd.DataFrame,
                cold: pd.DataFrame, base_stats: dict[str, int]) -> Split:
    """The split whose test-window users (of the warm and cold pairs together, sorted by id) are partitioned into
    validation and test by `config.seed`: the one rule both `temporal_split` and `Split.repartitioned` use."""
    validation_users = validation_user_ids(pd.unique(pd.concat([warm["user_id"], cold["user_id"]])), config)
    to_validation = {name: frame["user_id"].isin(validation_users) for name, frame in
                     (("warm", warm), ("cold", cold))}
    cold_items = np.sort(pd.unique(cold["track_id"]).astype(str))
    stats = {
        **base_stats,
        "validation_users": int(warm["user_id"][to_validation["warm"]].nunique()),
        "test_users": int(warm["user_id"][~to_validation["warm"]].nunique()),
        "validation_pairs": int(to_validation["warm"].sum()),
        "test_pairs": int((~to_validation["warm"]).sum()),
        "cold_items": len(cold_items),
        "cold_validation_pairs": int(to_validation["cold"].sum()),
        "cold_test_pairs": int((~to_validation["cold"]).sum()),
    }
    return Split(
        config=config, users=users, items=warm_items.extended(cold_items), n_warm_items=len(warm_items),
        train=train, validation=_tidy(warm.loc[to_validation["warm"]]), test=_tidy(warm.loc[~to_validation["warm"]]),
        cold_validation=_tidy(cold.loc[to_validation["cold"]]), cold_test=_tidy(cold.loc[~to_validation["cold"]]),
        stats=stats)

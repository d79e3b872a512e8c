"""Listening logs too large for one pandas frame: a fast synthetic generator, and the temporal split done by
streaming over partitioned Parquet with bounded memory.

The generator is a vectorised approximation of the corpus listener model (`tunespace.corpus.listeners`): the
same popularity tail, release dates, late joiners and heavy-tailed activity, with the semantic and latent taste
replaced by clusters, so that 100M events take minutes rather than the hours an exact per-session sampler would.

- Catalogue. Tracks belong to `item_clusters` clusters (log-normal sizes, contiguous ids per cluster); clusters
  belong to `genres`. Popularity pi_t = rank_t^(-zipf_exponent), ranks dealt by a random permutation. A share
  `initial_release_share` of the tracks exists from the start, the others are released at a uniform second of the
  window.
- Embeddings (`embedding_dim`): genre centre + cluster offset + per-track noise (`embedding_noise`), so a content
  model sees the taste structure only through noise.
- Listeners. Each user has `taste_clusters` clusters (the first drawn by cluster popularity, the others within its
  genre) with Dirichlet(1) weights, an activity n_u ~ LogNormal(sigma `activity_sigma`) scaled so the events sum
  to about `interactions`, and joins at the start or (share `late_join_share`) at a uniform time of the window.
- Events. Each event falls at a uniform whole second between joining and the end; with probability
  `popularity_share` its track is drawn from the whole catalogue by popularity, otherwise from one of the user's
  clusters (by its weight) by popularity within the cluster. A track not yet released at that time moves the event
  to a uniform second after the release. Repeats of (user, track, second) are merged, their count the weight.

Users are generated in parts of consecutive ids, each from its own seed, written as one Parquet file each
(`interactions/part-00000.parquet`, ...) atomically: a stopped run resumes at the first missing part. Ids are
written as integers, which the data model accepts (it reads ids as strings: 42 is "42"); the streaming split needs
them integer, so a pair is one int64 code.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.splits import PARTS, SplitConfig, validation_user_ids
from tunespace.errors import DataValidationError, SplitError, TunespaceError
from tunespace.io import atomic_path, write_parquet, write_text

log = logging.getLogger(__name__)

INTERACTIONS_DIR = "interactions"
EMBEDDINGS_FILE = "embeddings.parquet"
MANIFEST_FILE = "manifest.json"
SPLIT_FILE = "split.json"
TRAIN_DIR = "train"
ITEMS_FILE = "items.parquet"
ROW_GROUP = 1 << 20  # rows per Parquet row group: the unit a filtered scan skips by its statistics
SCHEMA = pa.schema([("user_id", pa.int64()), ("track_id", pa.int64()),
                    ("timestamp", pa.timestamp("us", tz="UTC")), ("weight", pa.float32())])
_US = 1_000_000


class ScaleLogError(TunespaceError, ValueError):
    """A partitioned log cannot be generated or read as asked (a changed config, a non-integer id column)."""


@dataclass(frozen=True)
class ScaleLogConfig:
    """Parameters of the generator (see the module docstring); `rows_per_part` sets the size of each part file."""

    tracks: int = 1_000_000
    users: int = 150_000
    interactions: int = 100_000_000
    item_clusters: int = 2000
    genres: int = 50
    taste_clusters: int = 3
    popularity_share: float = 0.3
    zipf_exponent: float = 0.8
    activity_sigma: float = 1.0
    initial_release_share: float = 0.6
    late_join_share: float = 0.3
    months: int = 13
    start: str = "2024-01-01"
    embedding_dim: int = 64
    embedding_noise: float = 0.8
    rows_per_part: int = 4_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {"tracks": self.tracks >= 1, "users": self.users >= 1, "interactions": self.interactions >= 1,
                  "item_clusters": 1 <= self.item_clusters <= self.tracks, "genres": 1 <= self.genres
                  <= self.item_clusters, "taste_clusters": self.taste_clusters >= 1,
                  "popularity_share": 0.0 <= self.popularity_share <= 1.0, "zipf_exponent": self.zipf_exponent >= 0,
                  "activity_sigma": self.activity_sigma >= 0, "initial_release_share":
                  0.0 < self.initial_release_share <= 1.0, "late_join_share": 0.0 <= self.late_join_share <= 1.0,
                  "months": self.months >= 1, "embedding_dim": self.embedding_dim >= 1,
                  "embedding_noise": self.embedding_noise >= 0, "rows_per_part": self.rows_per_part >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ScaleLogError("generator parameters out of range: " + ", ".join(
                f"{name}={getattr(self, name)!r}" for name in bad))

    @property
    def parts(self) -> int:
        return max(1, min(self.users, math.ceil(self.interactions / self.rows_per_part)))

    def window(self) -> tuple[pd.Timestamp, int]:
        """(first instant, length in whole seconds)."""
        start = pd.Timestamp(self.start)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        return start, int((start + pd.DateOffset(months=self.months) - start).total_seconds())


@dataclass
class _World:
    """What every part shares, rebuilt from the seed on each run (cheap next to the events)."""

    cluster_start: np.ndarray  # (clusters + 1,) first track id of each cluster
    cumulative: np.ndarray  # (tracks,) float64 running sum of popularity in id order
    release: np.ndarray  # (tracks,) int64 seconds
    taste: np.ndarray  # (users, taste_clusters) cluster ids
    taste_cdf: np.ndarray  # (users, taste_clusters) cumulative weights
    activity: np.ndarray  # (users,) events
    join: np.ndarray  # (users,) int64 seconds


def _world(config: ScaleLogConfig) -> _World:
    rng = np.random.default_rng([config.seed, 0])
    sizes = rng.lognormal(0.0, 1.0, config.item_clusters)
    sizes = 1 + np.floor(sizes / sizes.sum() * (config.tracks - config.item_clusters)).astype(np.int64)
    sizes[: config.tracks - sizes.sum()] += 1  # the rounding remainder, one track each
    cluster_start = np.concatenate([[0], np.cumsum(sizes)])
    popularity = (1.0 + rng.permutation(config.tracks)) ** -config.zipf_exponent
    cumulative = np.cumsum(popularity)
    _, span = config.window()
    release = np.where(rng.random(config.tracks) < config.initial_release_share, 0,
                       rng.integers(0, span, config.tracks))
    cluster_mass = np.diff(np.concatenate([[0.0], cumulative[cluster_start[1:] - 1]]))
    genre = np.arange(config.item_clusters) % config.genres
    first = rng.choice(config.item_clusters, size=config.users, p=cluster_mass / cluster_mass.sum())
    # the other clusters come from the first one's genre: clusters g, g + genres, g + 2 genres, ...
    per_genre = np.bincount(genre, minlength=config.genres)
    offsets = (rng.random((config.users, config.taste_clusters - 1)) * per_genre[genre[first]][:, None]).astype(
        np.int64)
    taste = np.concatenate([first[:, None], genre[first][:, None] + offsets * config.genres], axis=1)
    weights = rng.dirichlet(np.ones(config.taste_clusters), size=config.users)
    raw = rng.lognormal(0.0, config.activity_sigma, config.users)
    activity = np.maximum(1, np.round(raw / raw.sum() * config.interactions)).astype(np.int64)
    join = np.where(rng.random(config.users) < config.late_join_share, rng.integers(0, span, config.users), 0)
    return _World(cluster_start, cumulative, release.astype(np.int64), taste, np.cumsum(weights, axis=1), activity,
                  join.astype(np.int64))


def part_users(config: ScaleLogConfig, part: int) -> range:
    """The user ids of one part: consecutive, about users / parts of them."""
    bounds = np.linspace(0, config.users, config.parts + 1).round().astype(int)
    return range(int(bounds[part]), int(bounds[part + 1]))


def generate_part(config: ScaleLogConfig, world: _World, part: int) -> pa.Table:
    """The events of one part's users, sorted by user, time and track, in the interactions schema."""
    rng = np.random.default_rng([config.seed, 1, part])
    users = part_users(config, part)
    ids = np.arange(users.start, users.stop)
    user = np.repeat(ids, world.activity[ids])
    n = len(user)
    start, span = config.window()
    join = world.join[user]
    seconds = join + (rng.random(n) * (span - join)).astype(np.int64)
    component = (rng.random(n)[:, None] > world.taste_cdf[user, :-1]).sum(axis=1)
    cluster = world.taste[user, component]
    low = np.where(cluster > 0, world.cumulative[world.cluster_start[cluster] - 1], 0.0)
    high = world.cumulative[world.cluster_start[cluster + 1] - 1]
    popular = rng.random(n) < config.popularity_share
    low[popular], high[popular] = 0.0, world.cumulative[-1]
    track = np.searchsorted(world.cumulative, low + rng.random(n) * (high - low), side="right")
    np.minimum(track, len(world.cumulative) - 1, out=track)
    release = world.release[track]
    late = seconds < release
    seconds[late] = release[late] + (rng.random(int(late.sum())) * (span - release[late])).astype(np.int64)
    order = np.lexsort((track, seconds, user))
    user, seconds, track = user[order], seconds[order], track[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (seconds[1:] != seconds[:-1]) | (track[1:] != track[:-1])
    first = np.flatnonzero(new)
    weight = np.diff(np.append(first, n)).astype(np.float32)
    stamps = start.value // 1000 + seconds[first] * _US  # pandas' value is in nanoseconds
    return pa.table([pa.array(user[first]), pa.array(track[first].astype(np.int64)),
                     pa.array(stamps, type=pa.timestamp("us", tz="UTC")), pa.array(weight)], schema=SCHEMA)


def item_embeddings(config: ScaleLogConfig, world: _World | None = None) -> ItemEmbeddings:
    """Content vectors: genre centre + cluster offset + track noise (ids are the track ids as strings)."""
    world = world or _world(config)
    rng = np.random.default_rng([config.seed, 2])
    dim = config.embedding_dim
    genre_centre = rng.standard_normal((config.genres, dim)).astype(np.float32)
    cluster_centre = genre_centre[np.arange(config.item_clusters) % config.genres] + 0.7 * rng.standard_normal(
        (config.item_clusters, dim)).astype(np.float32)
    cluster_of = np.repeat(np.arange(config.item_clusters), np.diff(world.cluster_start))
    vectors = cluster_centre[cluster_of]
    vectors += config.embedding_noise * rng.standard_normal(vectors.shape, dtype=np.float32)
    return ItemEmbeddings(ids=np.arange(config.tracks).astype(str), vectors=vectors)


def generate_log(config: ScaleLogConfig, out: str | Path, progress: Callable[[int, int], None] | None = None
                 ) -> dict[str, object]:
    """Write `out/interactions/part-*.parquet`, `out/embeddings.parquet` and `out/manifest.json`; resumes a
    stopped run of the same config (parts already written are kept) and refuses a folder of another config.

    progress: called with (part, rows) after each part written. Returns the manifest."""
    out = Path(out)
    manifest_path = out / MANIFEST_FILE
    manifest = {"generator": "tunespace.data.scale", "config": asdict(config), "parts": config.parts}
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        if existing.get("config") != manifest["config"]:
            raise ScaleLogError(f"{out} holds a log of another config ({manifest_path}); choose another folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_text(json.dumps(manifest, indent=2) + "\n", manifest_path)
    world = _world(config)
    for part in range(config.parts):
        path = out / INTERACTIONS_DIR / f"part-{part:05d}.parquet"
        if path.exists():
            continue
        table = generate_part(config, world, part)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP, compression="zstd")
        log.info("wrote %s (%d events)", path, table.num_rows)
        if progress is not None:
            progress(part, table.num_rows)
    if not (out / EMBEDDINGS_FILE).exists():
        item_embeddings(config, world).save(out / EMBEDDINGS_FILE)
    return manifest


# ---------------------------------------------------------------- reading and splitting with bounded memory


def interaction_dataset(path: str | Path) -> ds.Dataset:
    """A Parquet dataset of interactions: a folder of part files (or a generator's folder, whose `interactions/`
    is read), or one file. Ids must be integer columns and the timestamp a timestamp column."""
    path = Path(path)
    if (path / INTERACTIONS_DIR).is_dir():
        path = path / INTERACTIONS_DIR
    if not path.exists():
        raise ScaleLogError(f"{path}: no such file or folder of Parquet interactions")
    try:
        dataset = ds.dataset(path, format="parquet", exclude_invalid_files=False)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataValidationError(str(path), f"not a readable Parquet dataset ({error})") from error
    schema = dataset.schema
    for name, check, want in (("user_id", pa.types.is_integer, "an integer id"),
                              ("track_id", pa.types.is_integer, "an integer id"),
                              ("timestamp", pa.types.is_timestamp, "a timestamp")):
        if name not in schema.names:
            raise DataValidationError(str(path), "missing required column", column=name)
        if not check(schema.field(name).type):
            raise DataValidationError(str(path), f"must be {want} column for the streaming split, not "
                                      f"{schema.field(name).type} (the in-memory `tunespace split` reads any ids)",
                                      column=name)
    return dataset


def _micros(stamp: pd.Timestamp | None) -> int | None:
    return None if stamp is None else stamp.value // 1000


def _stamp_filter(lower: int | None, upper: int | None) -> ds.Expression | None:
    """lower <= timestamp < upper (microseconds, either side open)."""
    field = ds.field("timestamp").cast(pa.int64())
    parts = ([field >= lower] if lower is not None else []) + ([field < upper] if upper is not None else [])
    if not parts:
        return None
    expression = parts[0]
    for part in parts[1:]:
        expression = expression & part
    return expression


def _batches(dataset: ds.Dataset, columns: list[str], where: ds.Expression | None) -> Iterator[pa.RecordBatch]:
    yield from dataset.to_batches(columns=columns, filter=where, batch_size=ROW_GROUP)


def _codes(user: np.ndarray, item: np.ndarray, n_codes: int) -> np.ndarray:
    return user * n_codes + item


def _union(known: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.union1d(known, np.unique(values))


def _check_range(user_max: int, item_max: int, source: str) -> int:
    """The multiplier of pair codes (user * it + item), refusing ids a code cannot hold."""
    if min(user_max, item_max) < 0:
        raise DataValidationError(source, "negative ids cannot be coded as pairs",
                                  column="user_id" if user_max < 0 else "track_id")
    n_codes = item_max + 1
    if user_max >= (2**63 - 1) // max(n_codes, 1):
        raise ScaleLogError(f"{source}: ids too large to code (user, track) pairs as int64")
    return n_codes


def scale_split(source: str | Path, config: SplitConfig, out: str | Path) -> dict[str, int]:
    """The temporal protocol of `tunespace.data.splits` over a partitioned log, streaming, into `out`:

    - `train/part-*.parquet`: the events in [train_start, cutoff), one part per input file;
    - `validation.parquet`, `test.parquet`, `cold_validation.parquet`, `cold_test.parquet`: the first-interaction
      test pairs (user_id, track_id, timestamp), as `temporal_split` defines and partitions them;
    - `items.parquet`: the train tracks ascending, then the cold ones; `split.json`: config, stats, sizes.

    Memory holds the events of the test window, the distinct train users and tracks and one batch of the log,
    never the whole log: one scan writes train and collects the window, a second (filtered to before the window)
    drops the window pairs met earlier. Returns the stats (the same keys and values as `Split.stats`)."""
    dataset = interaction_dataset(source)
    out = Path(out)
    cutoff, train_start, test_start, test_end = (_micros(t) for t in config.window())
    train_filter = _stamp_filter(train_start, cutoff)
    train_rows = 0
    train_users = np.zeros(0, dtype=np.int64)
    train_items = np.zeros(0, dtype=np.int64)
    for number, fragment in enumerate(dataset.get_fragments()):
        path = out / TRAIN_DIR / f"part-{number:05d}.parquet"
        with atomic_path(path) as tmp:
            writer = None
            for batch in fragment.to_batches(filter=train_filter, batch_size=ROW_GROUP, schema=dataset.schema):
                if writer is None:
                    writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
                writer.write_batch(batch, row_group_size=ROW_GROUP)
                train_rows += batch.num_rows
                train_users = _union(train_users, batch.column("user_id").to_numpy())
                train_items = _union(train_items, batch.column("track_id").to_numpy())
            if writer is None:
                pq.write_table(dataset.schema.empty_table(), tmp)
            else:
                writer.close()
    if train_rows == 0:
        raise SplitError(f"no interaction falls in the train window before {config.cutoff}")

    window = [batch for batch in _batches(dataset, ["user_id", "track_id", "timestamp"],
                                          _stamp_filter(test_start, test_end))]
    user = np.concatenate([b.column("user_id").to_numpy() for b in window] or [np.zeros(0, np.int64)])
    item = np.concatenate([b.column("track_id").to_numpy() for b in window] or [np.zeros(0, np.int64)])
    stamp = np.concatenate([pc.cast(b.column("timestamp"), pa.int64()).to_numpy() for b in window]
                           or [np.zeros(0, np.int64)])
    del window
    n_codes = _check_range(int(max(user.max(initial=0), train_users.max(initial=0))),
                           int(max(item.max(initial=0), train_items.max(initial=0))), str(source))
    codes = _codes(user.astype(np.int64), item.astype(np.int64), n_codes)
    order = np.lexsort((stamp, codes))
    codes, stamp = codes[order], stamp[order]
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    codes, stamp = codes[first], stamp[first]  # each window pair at its first time in the window
    seen_before = np.zeros(len(codes), dtype=bool)
    for batch in _batches(dataset, ["user_id", "track_id"], _stamp_filter(None, test_start)):
        earlier = _codes(batch.column("user_id").to_numpy().astype(np.int64),
                         batch.column("track_id").to_numpy().astype(np.int64), n_codes)
        position = np.searchsorted(codes, earlier).clip(max=max(len(codes) - 1, 0))
        if len(codes):
            hit = codes[position] == earlier
            seen_before[position[hit]] = True
    codes, stamp = codes[~seen_before], stamp[~seen_before]
    pairs = pd.DataFrame({"user_id": codes // n_codes, "track_id": codes % n_codes,
                          "timestamp": pd.to_datetime(stamp, unit="us", utc=True)})
    known_user = np.isin(pairs["user_id"].to_numpy(), train_users)
    known_item = np.isin(pairs["track_id"].to_numpy(), train_items)
    warm, cold = pairs.loc[known_user & known_item], pairs.loc[known_user & ~known_item]
    test_users = np.unique(np.concatenate([warm["user_id"].to_numpy(), cold["user_id"].to_numpy()]))
    if len(test_users) == 0:
        raise SplitError(f"no test users: no train user meets a new track in the test window starting "
                         f"{config.window()[2].date()}; choose an earlier cutoff or test window")
    if config.validation_ratio < 1 and round(config.validation_ratio * len(test_users)) == len(test_users):
        raise SplitError(f"no test users: validation_ratio {config.validation_ratio} sends all {len(test_users)} "
                         "test-window users to validation; lower the validation ratio or widen the test window")
    chosen = validation_user_ids(test_users, config)
    validation_users = np.asarray(sorted(int(u) for u in chosen), dtype=np.int64)
    cold_items = np.unique(cold["track_id"].to_numpy())
    frames = {}
    for name, frame in (("validation", warm), ("test", warm), ("cold_validation", cold), ("cold_test", cold)):
        in_validation = np.isin(frame["user_id"].to_numpy(), validation_users)
        keep = in_validation if name.endswith("validation") else ~in_validation
        frames[name] = frame.loc[keep].sort_values(["user_id", "timestamp", "track_id"]).reset_index(drop=True)
    stats = {"train_interactions": train_rows, "train_users": len(train_users), "train_items": len(train_items),
             "test_window_pairs": len(pairs), "dropped_cold_user_pairs": int((~known_user).sum()),
             "validation_users": int(frames["validation"]["user_id"].nunique()),
             "test_users": int(frames["test"]["user_id"].nunique()),
             "validation_pairs": len(frames["validation"]), "test_pairs": len(frames["test"]),
             "cold_items": len(cold_items), "cold_validation_pairs": len(frames["cold_validation"]),
             "cold_test_pairs": len(frames["cold_test"])}
    for name in PARTS[1:]:
        write_parquet(frames[name], out / f"{name}.parquet")
    write_parquet(pd.DataFrame({"track_id": np.concatenate([train_items, cold_items])}), out / ITEMS_FILE)
    write_text(json.dumps({"format": "partitioned", "config": asdict(config), "n_warm_items": len(train_items),
                           "stats": stats}, indent=2) + "\n", out / SPLIT_FILE)
    return stats


@dataclass
class ScaleSplit:
    """A split folder written by `scale_split`: train stays on disk, the test pairs and catalogue in memory."""

    folder: Path
    config: SplitConfig
    items: np.ndarray  # track ids: train tracks ascending, then cold tracks
    n_warm_items: int
    stats: dict[str, int]

    @classmethod
    def load(cls, folder: str | Path) -> ScaleSplit:
        folder = Path(folder)
        meta_path = folder / SPLIT_FILE
        if not meta_path.is_file():
            raise SplitError(f"{folder}: not a split folder (no {SPLIT_FILE})")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != "partitioned":
            raise SplitError(f"{folder}: written by `tunespace split`, not the partitioned split; load it with "
                             "Split.load")
        items = pd.read_parquet(folder / ITEMS_FILE)["track_id"].to_numpy(np.int64)
        return cls(folder, SplitConfig(**meta["config"]), items, int(meta["n_warm_items"]), meta["stats"])

    def train(self) -> ds.Dataset:
        return interaction_dataset(self.folder / TRAIN_DIR)

    def part(self, name: str) -> pd.DataFrame:
        if name not in PARTS[1:]:
            raise SplitError(f"unknown split part {name!r}; choose from {', '.join(PARTS[1:])}")
        return pd.read_parquet(self.folder / f"{name}.parquet")

"""Pair sources: where positive pairs come from. Each is a registered component that yields (anchor track,
positive) pairs, the positive being a text (stage 1, semantic) or another track (stage 2, preference).

Why these sources (Alonso-Jimenez et al., ICASSP 2023; Chen et al., ICMR 2025): tracks that one listener plays
close together in time, or that sit next to each other in a playlist, are alike in the listener's eyes even when
no word describes how; contrasting them teaches the audio encoder the preference space. Only behaviour before the
split's cutoff is used (the train interactions; playlists made before the cutoff), so nothing leaks from the test
window.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tunespace.errors import TunespaceError


# Each pair source's default options (`htcl finetune --pairs` and the pair study pick from these).
PAIR_SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "session": {"weight": 1.0, "window_minutes": 30.0, "neighbours": 2},
    "playlist": {"weight": 1.0},
    "history": {"weight": 1.0, "profile_size": 4},
    "listener": {"weight": 1.0, "holdout_share": 0.2, "order": "latest"},
    # Alonso-Jimenez et al.'s strategies and the editorial baselines (contrastive.pair_sources)
    "artist": {"weight": 1.0},
    "album": {"weight": 1.0},
    "playlist-random": {"weight": 1.0},
    "playlist-top": {"weight": 1.0, "top": 10, "min_count": 2},
    "playlist-emb": {"weight": 1.0, "k": 10},
}


class PairSourceError(TunespaceError):
    """A pair source cannot be built from the data given (missing table, no pairs, leakage risk)."""


@dataclass
class PairContext:
    """What pair sources draw from. `tracks` fixes the track index order (row i = track index i)."""

    tracks: pd.DataFrame
    captions: pd.DataFrame | None = None  # track_id, language, variant, text
    interactions: pd.DataFrame | None = None  # the TRAIN part only: user_id, track_id, timestamp
    playlists: pd.DataFrame | None = None  # playlist_id, position, track_id
    playlist_sessions: pd.DataFrame | None = None  # playlist_id, user_id, timestamp
    cutoff: pd.Timestamp | None = None
    allowed_tracks: np.ndarray | None = None  # bool per track: anchors/positives restricted to these (held-out)
    _index: pd.Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = pd.Index(self.tracks["track_id"].astype(str))

    def track_index(self, ids: pd.Series) -> np.ndarray:
        return self._index.get_indexer(ids.astype(str))


@dataclass
class PairBatch:
    anchors: np.ndarray  # (n,) track indices, or (n, profile_size) for a profile source
    positives: np.ndarray | list[str]  # (n,) track indices, or n texts
    weights: np.ndarray  # (n,) float32


class PairSource(ABC):
    """Holds every candidate pair; `sample` draws a batch without repeating a track, since a repeated track would
    be its own negative."""

    kind: ClassVar[str]  # "text", "audio", "profile" (a set of tracks as the anchor, audio positive) or "listener"

    def __init__(self, context: PairContext, weight: float = 1.0) -> None:
        self.weight = float(weight)
        anchors, positives = self.build(context)
        keep = anchors >= 0
        if self.kind == "audio":
            keep &= (positives >= 0) & (anchors != positives)
        if context.allowed_tracks is not None:
            keep &= context.allowed_tracks[np.maximum(anchors, 0)]
            if self.kind == "audio":
                keep &= context.allowed_tracks[np.maximum(positives, 0)]
        self.anchors, self.positives = anchors[keep], positives[keep]
        if len(self.anchors) == 0:
            raise PairSourceError(f"pair source {type(self).__name__} found no pairs")

    @abstractmethod
    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        """All (anchor track index, positive index) pairs; positive indexes `texts` or tracks by `kind`."""

    texts: list[str]

    def __len__(self) -> int:
        return len(self.anchors)

    def sample(self, rng: np.random.Generator, n: int, used: set[int] | None = None) -> PairBatch:
        """Up to n pairs drawn uniformly, thinned so that no track appears twice in the batch (`used` carries the
        tracks other sources already put in the same batch, and is updated)."""
        draw = rng.integers(0, len(self.anchors), size=min(4 * n, 4 * len(self.anchors)))
        anchors, positives = self.anchors[draw], self.positives[draw]
        used = set() if used is None else used
        chosen: list[int] = []
        for row, (anchor, positive) in enumerate(zip(anchors.tolist(), positives.tolist())):
            tracks = (anchor, positive) if self.kind == "audio" else (anchor,)
            if used.isdisjoint(tracks):
                used.update(tracks)
                chosen.append(row)
                if len(chosen) == n:
                    break
        picked = np.asarray(chosen, dtype=np.int64)
        positive_out: np.ndarray | list[str] = (positives[picked] if self.kind == "audio"
                                                else [self.texts[i] for i in positives[picked]])
        return PairBatch(anchors[picked], positive_out, np.full(len(picked), self.weight, dtype=np.float32))


PAIR_SOURCES: dict[str, type[PairSource]] = {}


def register_pair_source(name: str) -> Callable[[type[PairSource]], type[PairSource]]:
    def decorate(cls: type[PairSource]) -> type[PairSource]:
        PAIR_SOURCES[name] = cls
        return cls

    return decorate


def make_pair_source(name: str, context: PairContext, **options: Any) -> PairSource:
    if name not in PAIR_SOURCES:
        raise PairSourceError(f"unknown pair source {name!r}; known: {', '.join(sorted(PAIR_SOURCES))}")
    return PAIR_SOURCES[name](context, **options)


@register_pair_source("captions")
class CaptionPairs(PairSource):
    """A track and one of its generated descriptions (in the chosen languages)."""

    kind = "text"

    def __init__(self, context: PairContext, weight: float = 1.0, languages: tuple[str, ...] = ("en",)) -> None:
        self.languages = tuple(languages)
        super().__init__(context, weight)

    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        if context.captions is None:
            raise PairSourceError("captions pair source needs the captions table")
        rows = context.captions[context.captions["language"].isin(self.languages)].reset_index(drop=True)
        self.texts = rows["text"].astype(str).tolist()
        return context.track_index(rows["track_id"]), np.arange(len(rows))


@register_pair_source("metadata")
class MetadataPairs(PairSource):
    """A track and its metadata-only text (title, collection): HTCL's weakly paired text."""

    kind = "text"

    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        if "metadata_text" not in context.tracks:
            raise PairSourceError("metadata pair source needs a metadata_text column in tracks")
        self.texts = context.tracks["metadata_text"].fillna("").astype(str).tolist()
        index = np.arange(len(self.texts))
        has_text = np.array([bool(t.strip()) for t in self.texts])
        return np.where(has_text, index, -1), index


@register_pair_source("session")
class SessionPairs(PairSource):
    """Two distinct tracks one user played within `window_minutes` of each other, up to `neighbours` plays apart
    (train interactions only)."""

    kind = "audio"

    def __init__(self, context: PairContext, weight: float = 1.0, window_minutes: float = 30.0,
                 neighbours: int = 2) -> None:
        self.window = pd.Timedelta(minutes=window_minutes)
        self.neighbours = int(neighbours)
        super().__init__(context, weight)

    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        if context.interactions is None:
            raise PairSourceError("session pair source needs the train interactions")
        log = context.interactions.sort_values(["user_id", "timestamp"], kind="stable")
        users = log["user_id"].to_numpy()
        times = log["timestamp"].to_numpy()
        tracks = context.track_index(log["track_id"])
        anchors, positives = [], []
        for step in range(1, self.neighbours + 1):
            same_user = users[step:] == users[:-step]
            close = (times[step:] - times[:-step]) <= self.window.to_timedelta64()
            keep = np.flatnonzero(same_user & close)
            anchors.append(tracks[:-step][keep])
            positives.append(tracks[step:][keep])
        return np.concatenate(anchors), np.concatenate(positives)


@register_pair_source("playlist")
class PlaylistPairs(PairSource):
    """Tracks next to each other in a playlist made before the cutoff."""

    kind = "audio"

    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        if context.playlists is None:
            raise PairSourceError("playlist pair source needs the playlists table")
        playlists = context.playlists
        if context.cutoff is not None:
            if context.playlist_sessions is None:
                raise PairSourceError("playlists have no creation times (playlist_sessions.parquet), so playlists "
                                      "made after the cutoff cannot be dropped; refusing to risk test leakage")
            made = context.playlist_sessions.set_index("playlist_id")["timestamp"]
            early = made[made < context.cutoff].index
            playlists = playlists[playlists["playlist_id"].isin(early)]
        ordered = playlists.sort_values(["playlist_id", "position"], kind="stable")
        ids = ordered["playlist_id"].to_numpy()
        tracks = context.track_index(ordered["track_id"])
        keep = np.flatnonzero(ids[1:] == ids[:-1])
        return tracks[:-1][keep], tracks[1:][keep]


def listener_tracks(context: PairContext, source: str, by_time: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each listener's distinct train tracks outside the held-out set, flat, and the offsets of each listener's run
    (listeners sorted by id, only those with two distinct tracks: a profile and a positive). Within a listener the
    tracks are in order of first play (`by_time`) or of track index."""
    if context.interactions is None:
        raise PairSourceError(f"{source} pair source needs the train interactions")
    log = context.interactions
    tracks = context.track_index(log["track_id"])
    keep = tracks >= 0
    if context.allowed_tracks is not None:
        keep &= context.allowed_tracks[np.maximum(tracks, 0)]
    plays = pd.DataFrame({"user": log["user_id"].astype(str).to_numpy()[keep], "track": tracks[keep],
                          "time": log["timestamp"].to_numpy()[keep]})
    order = ["user", "time", "track"] if by_time else ["user", "track"]
    distinct = plays.sort_values(order, kind="stable").drop_duplicates(["user", "track"])  # each at its first play
    sizes = distinct.groupby("user", sort=True)["track"].size()
    sizes = sizes[sizes >= 2]
    if len(sizes) == 0:
        raise PairSourceError(f"{source} pair source found no user with two distinct train tracks")
    distinct = distinct[distinct["user"].isin(sizes.index)]
    return (distinct["track"].to_numpy(dtype=np.int64),
            np.concatenate([[0], np.cumsum(sizes.to_numpy())]).astype(np.int64))


@register_pair_source("history")
class HistoryPairs(PairSource):
    """A listener's profile and one more track of theirs: the anchor is `profile_size` distinct tracks the user played
    in the train window, the positive another one. The anchor is embedded as the mean of its tracks' embeddings, which
    is how content KNN scores (a user is the mean of their items), so this objective trains what KNN uses. Users are
    drawn uniformly, as the evaluation weighs them, and at most once per batch (two rows of one user would be each
    other's false negatives). A user with fewer than `profile_size` other tracks repeats some of them."""

    kind = "profile"

    def __init__(self, context: PairContext, weight: float = 1.0, profile_size: int = 4) -> None:
        if int(profile_size) < 1:
            raise PairSourceError(f"history: profile_size must be at least 1, got {profile_size}")
        self.weight, self.profile_size = float(weight), int(profile_size)
        self.user_tracks, self.offsets = listener_tracks(context, "history", by_time=False)

    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # the constructor builds the per-user track lists directly

    def __len__(self) -> int:
        """Candidate positives: one per (user, distinct track)."""
        return len(self.user_tracks)

    def sample(self, rng: np.random.Generator, n: int, used: set[int] | None = None) -> PairBatch:
        """Up to n rows: anchors (rows, profile_size) track indices, positives (rows,), no positive twice and no
        positive that `used` already holds."""
        used = set() if used is None else used
        users = rng.permutation(len(self.offsets) - 1)[: 4 * n]
        profiles, positives = [], []
        for user in users.tolist():
            own = self.user_tracks[self.offsets[user]:self.offsets[user + 1]]
            order = rng.permutation(len(own))
            pick = next((i for i in order.tolist() if int(own[i]) not in used), None)
            if pick is None:
                continue
            others = np.delete(own, pick)
            chosen = rng.permutation(others)[: self.profile_size]
            if len(chosen) < self.profile_size:
                chosen = np.concatenate([chosen, rng.choice(others, self.profile_size - len(chosen))])
            used.add(int(own[pick]))
            profiles.append(chosen)
            positives.append(int(own[pick]))
            if len(positives) == n:
                break
        anchors = (np.stack(profiles) if profiles else np.zeros((0, self.profile_size))).astype(np.int64)
        return PairBatch(anchors, np.asarray(positives, dtype=np.int64),
                         np.full(len(positives), self.weight, dtype=np.float32))


@dataclass
class ListenerBatch:
    """Listeners, each with a profile (tracks the model sees) and held-out tracks (what it must rank high), flat:
    `profile_tracks[i]` belongs to listener `profile_owner[i]` (a row of the batch), likewise the positives."""

    profile_tracks: np.ndarray  # track indices
    profile_owner: np.ndarray
    positive_tracks: np.ndarray
    positive_owner: np.ndarray
    weights: np.ndarray  # (listeners,) float32

    @property
    def listeners(self) -> int:
        return len(self.weights)

    def rows(self, part: slice) -> ListenerBatch:
        """The listeners `part` of this batch (a rank's share), renumbered from 0."""
        first, stop = part.start or 0, part.stop if part.stop is not None else self.listeners
        keep_profile = (self.profile_owner >= first) & (self.profile_owner < stop)
        keep_positive = (self.positive_owner >= first) & (self.positive_owner < stop)
        return ListenerBatch(self.profile_tracks[keep_profile], self.profile_owner[keep_profile] - first,
                             self.positive_tracks[keep_positive], self.positive_owner[keep_positive] - first,
                             self.weights[first:stop])


HOLDOUT_ORDERS = ("latest", "random")


@register_pair_source("listener")
class ListenerHoldout(PairSource):
    """A listener's own train tracks split in two: a profile, embedded as the mean of its tracks' unit vectors (the
    user content KNN ranks for), and held-out tracks the model must rank high among the whole catalogue, with the
    profile's tracks excluded as an evaluation excludes seen items. This trains exactly what content KNN scores,
    with every other track a negative, rather than one more track against a sample.

    `holdout_share` of each listener's distinct train tracks (at least one) is held out: their latest ones
    (`order: latest`, as the temporal protocol asks the model to predict what comes next) or a random share.
    Listeners are drawn uniformly, as the evaluation weighs users, each at most once per batch; a listener needs two
    distinct tracks. Only tracks outside the held-out set count (`allowed_tracks`)."""

    kind = "listener"

    def __init__(self, context: PairContext, weight: float = 1.0, holdout_share: float = 0.2,
                 order: str = "latest") -> None:
        if not 0 < float(holdout_share) < 1:
            raise PairSourceError(f"listener: holdout_share must lie in (0, 1), got {holdout_share}")
        if order not in HOLDOUT_ORDERS:
            raise PairSourceError(f"listener: order must be one of {', '.join(HOLDOUT_ORDERS)}, got {order!r}")
        self.weight, self.holdout_share, self.order = float(weight), float(holdout_share), order
        self.user_tracks, self.offsets = listener_tracks(context, "listener", by_time=True)

    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # the constructor builds the per-user track lists directly

    def __len__(self) -> int:
        """Listeners that can be drawn."""
        return len(self.offsets) - 1

    def sample(self, rng: np.random.Generator, n: int, used: set[int] | None = None) -> ListenerBatch:
        """Up to n distinct listeners, each split into profile and held-out tracks (`used` is not consulted: a
        track may be in several listeners' profiles, as it is in the evaluation)."""
        users = rng.permutation(len(self))[:n]
        parts: dict[str, list[np.ndarray]] = {"profile": [], "profile_owner": [], "positive": [],
                                              "positive_owner": []}
        for row, user in enumerate(users.tolist()):
            own = self.user_tracks[self.offsets[user]:self.offsets[user + 1]]
            held = max(1, int(round(self.holdout_share * len(own))))
            held = min(held, len(own) - 1)
            if self.order == "random":
                own = own[rng.permutation(len(own))]
            profile, positive = own[: len(own) - held], own[len(own) - held:]
            parts["profile"].append(profile)
            parts["profile_owner"].append(np.full(len(profile), row, dtype=np.int64))
            parts["positive"].append(positive)
            parts["positive_owner"].append(np.full(len(positive), row, dtype=np.int64))
        flat = {key: np.concatenate(value) if value else np.zeros(0, dtype=np.int64) for key, value in parts.items()}
        return ListenerBatch(flat["profile"], flat["profile_owner"], flat["positive"], flat["positive_owner"],
                             np.full(len(users), self.weight, dtype=np.float32))


def sample_mixed(sources: list[PairSource], rng: np.random.Generator, n: int) -> PairBatch:
    """One batch of n pairs split evenly over sources of one kind, with no track twice across all of them."""
    if not sources:
        raise PairSourceError("no pair sources given")
    kinds = {source.kind for source in sources}
    if "listener" in kinds:
        raise PairSourceError("the listener source is sampled on its own (ListenerHoldout.sample), not mixed")
    if len(kinds) > 1:
        raise PairSourceError(f"a batch mixes {' and '.join(sorted(kinds))} pair sources; give each objective sources "
                              "of one kind")
    if kinds == {"profile"} and len({source.profile_size for source in sources}) > 1:
        raise PairSourceError("profile sources in one batch must share one profile_size")
    used: set[int] = set()
    shares = np.full(len(sources), n // len(sources))
    shares[: n % len(sources)] += 1
    parts = [source.sample(rng, int(share), used) for source, share in zip(sources, shares)]
    positives: np.ndarray | list[str]
    if kinds == {"text"}:
        positives = [text for part in parts for text in part.positives]
    else:
        positives = np.concatenate([np.asarray(part.positives) for part in parts])
    return PairBatch(np.concatenate([part.anchors for part in parts]), positives,
                     np.concatenate([part.weights for part in parts]))


from tunespace.contrastive import pair_sources  # noqa: F401  registers artist, album, playlist-random/-top/-emb

"""Editorial and playlist pair sources for audio-only contrastive pretraining (Alonso-Jimenez et al., ICASSP 2023).

The paper asks where anchor/positive pairs should come from: editorial metadata (same artist, same album: the
earlier works' baseline) or playlists, by three strategies: a random other track of a playlist holding the anchor,
one of the anchor's top-N co-occurring tracks, or one of its nearest neighbours among track vectors learned from
the playlists. Each is a registered pair source of kind "audio" here, so one training loop pretrains with any.

All five share one sampler (`Candidates`): an anchor is drawn uniformly among the tracks that have a positive, then
one of its groups (an artist, an album, a playlist, or its own neighbour list) uniformly, then a member of that
group other than the anchor uniformly. Every step is a numpy draw over the whole batch from flat (CSR-style)
arrays, so a batch of 256 pairs costs well under a millisecond and sampling never starves the training step.

Leakage: playlists count only when made before the context's cutoff (their creation time is in
`playlist_sessions`; without it a cutoff cannot be honoured and the source refuses), and held-out tracks are taken
out of every group before anything is counted or learned, so they are neither anchors nor positives and their
co-occurrences shape no other track's pairs. Editorial metadata carries no time and is used whole.
"""

from __future__ import annotations

import logging
import zlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import sparse

from tunespace.contrastive.pairs import PairBatch, PairContext, PairSource, PairSourceError, register_pair_source
from tunespace.extras import needs_extra

log = logging.getLogger(__name__)

DRAW_ROUNDS = 8
"""Rounds of proposals a batch may take to fill up without repeating a track; a catalogue too small for the batch
gives fewer pairs instead of looping."""


def _offsets(keys: np.ndarray, size: int) -> np.ndarray:
    """CSR offsets of sorted integer `keys` over 0..size-1: rows of key k are offsets[k]:offsets[k+1]."""
    return np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=size))]).astype(np.int64)


@dataclass(frozen=True)
class Candidates:
    """Where each anchor's positive comes from, as flat arrays.

    Track t's memberships are rows `anchor_offsets[t]:anchor_offsets[t + 1]` of `group` and `place`: membership r
    names a group and the anchor's place in it (-1 when the anchor is not a member, as in a neighbour list). Group
    g's tracks are `members[group_offsets[g]:group_offsets[g + 1]]`. A positive is any member other than the anchor;
    every group has at least one for each of its anchors."""

    members: np.ndarray
    group_offsets: np.ndarray
    group: np.ndarray
    place: np.ndarray
    anchor_offsets: np.ndarray

    @classmethod
    def from_groups(cls, groups: np.ndarray, tracks: np.ndarray, track_count: int) -> Candidates:
        """Tracks that share a group (an artist, an album, a playlist). Rows are (group code, track index), distinct;
        groups of one track give nothing."""
        order = np.argsort(groups, kind="stable")
        groups, tracks = groups[order], tracks[order]
        _, groups, sizes = np.unique(groups, return_inverse=True, return_counts=True)
        keep = sizes[groups] >= 2
        _, groups = np.unique(groups[keep], return_inverse=True)
        tracks = tracks[keep]
        group_offsets = _offsets(groups, int(groups.max()) + 1 if len(groups) else 0)
        place = np.arange(len(tracks)) - group_offsets[groups]
        by_track = np.argsort(tracks, kind="stable")
        return cls(tracks.astype(np.int64), group_offsets, groups[by_track].astype(np.int64),
                   place[by_track].astype(np.int64), _offsets(tracks[by_track], track_count))

    @classmethod
    def from_neighbours(cls, anchors: np.ndarray, neighbours: np.ndarray, track_count: int) -> Candidates:
        """Each anchor's own list of positives. Rows are (anchor, neighbour), sorted by anchor, never equal."""
        distinct, groups = np.unique(anchors, return_inverse=True)
        return cls(neighbours.astype(np.int64), _offsets(groups, len(distinct)),
                   np.arange(len(distinct), dtype=np.int64), np.full(len(distinct), -1, dtype=np.int64),
                   _offsets(distinct, track_count))

    def anchors(self) -> np.ndarray:
        """Tracks with at least one positive, in index order."""
        return np.flatnonzero(np.diff(self.anchor_offsets) > 0)

    def draw(self, rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
        """One positive per anchor: a membership uniformly, then a member other than the anchor uniformly."""
        start = self.anchor_offsets[anchors]
        row = start + rng.integers(0, self.anchor_offsets[anchors + 1] - start)
        group, place = self.group[row], self.place[row]
        first = self.group_offsets[group]
        member = place >= 0
        pick = rng.integers(0, self.group_offsets[group + 1] - first - member)
        pick += member & (pick >= place)  # step over the anchor's own place
        return self.members[first + pick]

    def expand(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (anchor, positive) a draw can yield, once per shared group: for tests and inspection, since its size
        grows with the square of the group sizes."""
        memberships = len(self.group)
        owner = np.repeat(np.arange(len(self.anchor_offsets) - 1), np.diff(self.anchor_offsets))
        sizes = np.diff(self.group_offsets)[self.group]
        row = np.repeat(np.arange(memberships), sizes)
        within = np.arange(len(row)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        keep = within != self.place[row]
        row, within = row[keep], within[keep]
        return owner[row], self.members[self.group_offsets[self.group[row]] + within]


class CandidatePairs(PairSource):
    """A pair source whose pairs are held as `Candidates` and drawn with numpy (anchors uniform over the tracks
    that have a positive). Tracks outside the held-out set without a positive are counted (`unpaired`), logged once,
    and never drawn: a track is never paired with itself."""

    kind = "audio"

    def __init__(self, context: PairContext, weight: float = 1.0) -> None:
        self.weight = float(weight)
        self.track_count = len(context.tracks)
        self.candidates = self.candidates_from(context)
        self.pool = self.candidates.anchors()
        if len(self.pool) == 0:
            raise PairSourceError(f"pair source {type(self).__name__} found no pairs")
        eligible = allowed_tracks(context)
        eligible[self.pool] = False
        self._unpaired = int(np.count_nonzero(eligible))
        log.info("%s: %d of %d drawable tracks have no positive and are skipped as anchors", type(self).__name__,
                 self._unpaired, self._unpaired + len(self.pool))

    @abstractmethod
    def candidates_from(self, context: PairContext) -> Candidates:
        """The groups each track draws its positive from, held-out tracks already removed."""

    def build(self, context: PairContext) -> tuple[np.ndarray, np.ndarray]:
        """All (anchor, positive) pairs, expanded from freshly built candidates (sampling never expands them)."""
        return self.candidates_from(context).expand()

    @property
    def unpaired(self) -> int:
        """Tracks outside the held-out set that have no eligible positive (never anchors)."""
        return self._unpaired

    def __len__(self) -> int:
        """Anchors that can be drawn."""
        return len(self.pool)

    def sample(self, rng: np.random.Generator, n: int, used: set[int] | None = None) -> PairBatch:
        """Up to n pairs with no track twice in the batch nor among `used` (updated). Round r proposes 2^(r+1) times
        the pairs still missing (more as free tracks grow scarce) and keeps those whose two tracks are new and appear
        nowhere earlier in the round."""
        taken = np.zeros(self.track_count, dtype=bool)
        if used:
            taken[np.fromiter(used, dtype=np.int64, count=len(used))] = True
        anchors, positives = [], []
        missing = n
        for round_ in range(DRAW_ROUNDS):
            anchor = self.pool[rng.integers(0, len(self.pool), missing << (round_ + 1))]
            positive = self.candidates.draw(rng, anchor)
            fresh = ~taken[anchor] & ~taken[positive]
            anchor, positive = anchor[fresh], positive[fresh]
            _, first = np.unique(np.stack([anchor, positive], axis=1).ravel(), return_index=True)
            alone = np.zeros(2 * len(anchor), dtype=bool)
            alone[first] = True
            keep = np.flatnonzero(alone[0::2] & alone[1::2])[:missing]
            anchors.append(anchor[keep])
            positives.append(positive[keep])
            taken[anchors[-1]] = taken[positives[-1]] = True
            missing -= len(keep)
            if missing == 0:
                break
        anchor, positive = np.concatenate(anchors), np.concatenate(positives)
        if used is not None:
            used.update(anchor.tolist())
            used.update(positive.tolist())
        return PairBatch(anchor, positive, np.full(len(anchor), self.weight, dtype=np.float32))


def allowed_tracks(context: PairContext) -> np.ndarray:
    """Bool per track: outside the held-out set (a fresh array, safe to modify)."""
    if context.allowed_tracks is None:
        return np.ones(len(context.tracks), dtype=bool)
    return np.asarray(context.allowed_tracks, dtype=bool).copy()


class EditorialPairs(CandidatePairs):
    """Tracks that share a value of an editorial column; a missing or blank value is no group."""

    column: ClassVar[str]

    def candidates_from(self, context: PairContext) -> Candidates:
        if self.column not in context.tracks:
            raise PairSourceError(f"{type(self).__name__} needs a {self.column} column in tracks")
        values = context.tracks[self.column].astype("string").str.strip()
        keep = (values.notna() & values.ne("")).to_numpy(dtype=bool) & allowed_tracks(context)
        codes, _ = pd.factorize(values[keep])
        return Candidates.from_groups(codes.astype(np.int64), np.flatnonzero(keep), self.track_count)


@register_pair_source("artist")
class ArtistPairs(EditorialPairs):
    """Two tracks by the same artist (`artist_id`): the earlier works' baseline (in the built-in corpus the artist
    is the tune collection, a handful of large groups)."""

    column = "artist_id"


@register_pair_source("album")
class AlbumPairs(EditorialPairs):
    """Two tracks of the same album (`album_id`; in the built-in corpus, the book of a collection)."""

    column = "album_id"


def training_playlists(context: PairContext, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(playlist code, track index) rows of the playlists made before the cutoff, each playlist in position order,
    without unknown or held-out tracks and with each track once per playlist (at its first place). Codes follow the
    sorted playlist ids."""
    if context.playlists is None:
        raise PairSourceError(f"{source} pair source needs the playlists table")
    playlists = context.playlists
    if context.cutoff is not None:
        if context.playlist_sessions is None:
            raise PairSourceError(f"{source}: playlists have no creation times (playlist_sessions.parquet), so "
                                  "playlists made after the cutoff cannot be dropped; refusing to risk test leakage")
        made = context.playlist_sessions.set_index("playlist_id")["timestamp"]
        playlists = playlists[playlists["playlist_id"].isin(made[made < context.cutoff].index)]
    ordered = playlists.sort_values(["playlist_id", "position"], kind="stable")
    codes = pd.factorize(ordered["playlist_id"].astype(str), sort=True)[0].astype(np.int64)
    tracks = context.track_index(ordered["track_id"])
    keep = tracks >= 0
    keep[keep] = allowed_tracks(context)[tracks[keep]]
    codes, tracks = codes[keep], tracks[keep]
    _, first = np.unique(codes * len(context.tracks) + tracks, return_index=True)
    first.sort()
    return codes[first], tracks[first].astype(np.int64)


@register_pair_source("playlist-random")
class PlaylistRandomPairs(CandidatePairs):
    """A random other track of a random training playlist that holds the anchor."""

    def candidates_from(self, context: PairContext) -> Candidates:
        codes, tracks = training_playlists(context, "playlist-random")
        return Candidates.from_groups(codes, tracks, self.track_count)


@register_pair_source("playlist-top")
class PlaylistTopPairs(CandidatePairs):
    """A track drawn uniformly from the anchor's `top` most co-occurring tracks: those sharing the most training
    playlists with it, at least `min_count` (ties broken by track index, so the list is fixed)."""

    def __init__(self, context: PairContext, weight: float = 1.0, top: int = 10, min_count: int = 2) -> None:
        if int(top) < 1 or int(min_count) < 1:
            raise PairSourceError(f"playlist-top: top and min_count must be at least 1, got {top} and {min_count}")
        self.top, self.min_count = int(top), int(min_count)
        super().__init__(context, weight)

    def candidates_from(self, context: PairContext) -> Candidates:
        codes, tracks = training_playlists(context, "playlist-top")
        counts = co_occurrence(codes, tracks, self.track_count)
        keep = (counts.row != counts.col) & (counts.data >= self.min_count)
        anchor, other, count = counts.row[keep], counts.col[keep], counts.data[keep]
        order = np.lexsort((other, -count, anchor))
        anchor, other = anchor[order], other[order]
        rank = np.arange(len(anchor)) - np.searchsorted(anchor, anchor)
        return Candidates.from_neighbours(anchor[rank < self.top], other[rank < self.top], self.track_count)


def co_occurrence(codes: np.ndarray, tracks: np.ndarray, track_count: int) -> sparse.coo_matrix:
    """Playlists each pair of tracks shares (track x track, diagonal = playlists holding the track)."""
    membership = sparse.csr_matrix((np.ones(len(codes), dtype=np.int64), (codes, tracks)),
                                   shape=(int(codes.max()) + 1 if len(codes) else 0, track_count))
    return (membership.T @ membership).tocoo()


def _stable_hash(text: str) -> int:
    """gensim seeds each word's initial vector with hash(word + seed); Python's str hash changes per process."""
    return zlib.crc32(text.encode())


@register_pair_source("playlist-emb")
class PlaylistEmbeddingPairs(CandidatePairs):
    """A track drawn uniformly from the anchor's `k` nearest neighbours (cosine) among track vectors learned from
    the training playlists: skip-gram Word2Vec (gensim) with playlists as sentences and tracks as words, so tracks
    that appear in the same contexts end up close even when they never share a playlist.

    Word2Vec rather than ALS on the playlist-track matrix because it reads the play order (a `window` of
    neighbouring places) and needs no BLAS thread setup; it is deterministic for a given `seed` since it runs on one
    worker thread with a process-independent hash. Tracks in fewer than `min_count` training playlists get no vector
    and no positive; `sample` thins the most frequent tracks as Word2Vec thins frequent words (0: never), which on
    a tiny catalogue, where every track is frequent, would leave almost nothing to learn from. `vectors` (unit rows) and `vocabulary` (their track indices) stay for inspection."""

    def __init__(self, context: PairContext, weight: float = 1.0, k: int = 10, dim: int = 64, window: int = 5,
                 epochs: int = 20, min_count: int = 1, sample: float = 1e-3, seed: int = 0) -> None:
        if min(int(k), int(dim), int(window), int(epochs), int(min_count)) < 1 or float(sample) < 0:
            raise PairSourceError("playlist-emb: k, dim, window, epochs and min_count must be at least 1, sample "
                                  "at least 0")
        self.k, self.dim, self.window, self.epochs = int(k), int(dim), int(window), int(epochs)
        self.min_count, self.sample_threshold, self.seed = int(min_count), float(sample), int(seed)
        super().__init__(context, weight)

    def candidates_from(self, context: PairContext) -> Candidates:
        codes, tracks = training_playlists(context, "playlist-emb")
        self.vocabulary, self.vectors = self.learn(codes, tracks)
        if len(self.vocabulary) < 2:
            raise PairSourceError(f"playlist-emb: {len(self.vocabulary)} track(s) in at least {self.min_count} "
                                  "training playlists; no neighbours to draw")
        neighbours = nearest(self.vectors, min(self.k, len(self.vocabulary) - 1))
        order = np.argsort(self.vocabulary, kind="stable")
        anchors = np.repeat(self.vocabulary[order], neighbours.shape[1])
        return Candidates.from_neighbours(anchors, self.vocabulary[neighbours[order]].ravel(), self.track_count)

    def learn(self, codes: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track indices with a vector, and their unit vectors (float32), from Word2Vec over the playlists."""
        with needs_extra("pairs"):
            from gensim.models import Word2Vec
        bounds = np.flatnonzero(np.diff(codes)) + 1
        words = tracks.astype(str)
        sentences = [part.tolist() for part in np.split(words, bounds) if len(part)]
        options: dict[str, Any] = {"vector_size": self.dim, "window": self.window, "min_count": self.min_count,
                                   "sample": self.sample_threshold, "sg": 1, "negative": 5, "epochs": self.epochs,
                                   "seed": self.seed, "workers": 1, "hashfxn": _stable_hash}
        model = Word2Vec(sentences, **options)
        vocabulary = np.asarray([int(word) for word in model.wv.index_to_key], dtype=np.int64)
        return vocabulary, model.wv.get_normed_vectors().astype(np.float32)


def nearest(vectors: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Each row's k most cosine-similar other rows (unit vectors), most similar first; computed in chunks of rows
    so memory stays chunk x rows."""
    result = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        rows = np.arange(start, min(start + chunk, len(vectors)))
        similarity = vectors[rows] @ vectors.T
        similarity[np.arange(len(rows)), rows] = -np.inf
        best = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        order = np.lexsort((best, -np.take_along_axis(similarity, best, axis=1)), axis=1)
        result[rows] = np.take_along_axis(best, order, axis=1)
    return result

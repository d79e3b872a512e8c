"""The explorer's logic, free of any web framework: search, similar tracks, recommendations and the map.

`tunespace.serve.app` turns these calls into HTTP endpoints; everything here is plain Python so that it can be
tested and reused without FastAPI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunespace.errors import TunespaceError, UnknownIdError
from tunespace.index import EmbeddingIndex, Hit
from tunespace.serve.catalogue import Catalogue

log = logging.getLogger(__name__)

MAP_POINTS = 5000  # the map shows at most this many tracks (an even sample of a larger catalogue)
LANGUAGES = ("en", "de", "zh")  # what a query may be written in: the built-in corpus's caption languages


class FeatureUnavailableError(TunespaceError):
    """The server was started without what this request needs (a text tower, a recommender)."""


class ServeSetupError(TunespaceError, ValueError):
    """The data folder and the index do not belong together (no track of the one is in the other)."""


@dataclass(frozen=True)
class MapPoint:
    track_id: str
    x: float
    y: float


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of `vectors` (n, d), each scaled to [-1, 1]; the sign of each axis is
    fixed so that its largest-magnitude loading is positive (the same map on every start)."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    if len(axes) < 2:  # one-dimensional embeddings: the second axis is flat
        axes = np.vstack([axes, np.zeros_like(axes)])
    signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])
    coords = centred @ (axes * np.where(signs == 0, 1, signs)[:, None]).T
    scale = np.abs(coords).max(axis=0)
    return coords / np.where(scale > 0, scale, 1.0)


class Explorer:
    """A catalogue, its embedding index and, optionally, an HTCL run (text search) and a saved recommender."""

    def __init__(self, data: str | Path, index: str | Path, run: str | Path | None = None,
                 model: str | Path | None = None, embeddings: str | Path | None = None) -> None:
        self.catalogue = Catalogue(data)
        self.index = EmbeddingIndex.load(index, embeddings_dir=embeddings)
        self.index_path = Path(index)
        self.run = Path(run) if run is not None else None
        self.model = Path(model) if model is not None else None
        indexed = [tid for tid in self.index.ids if tid in self.catalogue]
        if not indexed:
            raise ServeSetupError(f"the index {index} holds none of the {len(self.catalogue)} tracks of {data}: "
                                  "build it from embeddings of this catalogue")
        if len(indexed) < len(self.index.ids):
            log.warning("%d of the index's %d tracks are not in %s; they are never shown",
                        len(self.index.ids) - len(indexed), len(self.index.ids), data)
        self._indexed = set(indexed)
        if self.run is not None:
            self._check_text_tower()
        self.map_points = self._map(indexed)

    def _check_text_tower(self) -> None:
        """Refuse a run whose text tower does not map into the index's space, and load it now (the first text
        query is then as fast as the rest)."""
        from tunespace.index.queries import check_text_space, text_query_vector

        assert self.run is not None
        check_text_space(self.index, self.run)
        dim = text_query_vector(self.run, "a tune").shape[-1]
        if dim != self.index.dim:
            raise ServeSetupError(f"the text tower of {self.run} gives {dim}-d vectors but the index holds "
                                  f"{self.index.dim}-d ones: build the index from this run's embeddings "
                                  "(tunespace embed --backend htcl --option run=RUN)")

    def _map(self, ids: list[str]) -> list[MapPoint]:
        """PCA of (an even sample of at most MAP_POINTS of) the indexed tracks' embeddings, computed once."""
        if len(ids) > MAP_POINTS:
            ids = [ids[i] for i in np.linspace(0, len(ids) - 1, MAP_POINTS).round().astype(int)]
        coords = pca_2d(np.stack([self.index.vector(tid) for tid in ids]))
        return [MapPoint(tid, float(x), float(y)) for tid, (x, y) in zip(ids, coords)]

    @property
    def text_search(self) -> bool:
        return self.run is not None

    @property
    def trained_languages(self) -> tuple[str, ...]:
        """The caption languages the run's text tower was trained on (others are searched, with less promise)."""
        from tunespace.index.queries import run_languages

        return run_languages(self.run) if self.run is not None else ()

    def is_indexed(self, track_id: str) -> bool:
        return track_id in self._indexed

    def _shown(self, hits: list[Hit], k: int) -> list[Hit]:
        return [hit for hit in hits if hit.item_id in self.catalogue][:k]

    def search_text(self, text: str, k: int, language: str | None = None) -> list[Hit]:
        """Tracks nearest to `text` through the HTCL run's text tower (its captions' languages: en, de, zh)."""
        from tunespace.index.queries import text_query_vector

        if self.run is None:
            raise FeatureUnavailableError("text search needs an HTCL run: start the server with --run RUN_FOLDER "
                                          "(or search with like=TRACK_ID)")
        vector = np.asarray(text_query_vector(self.run, text, language=language), dtype=np.float32)
        return self._shown(self.index.search(vector.reshape(1, -1), k)[0], k)

    def similar(self, track_id: str, k: int) -> list[Hit]:
        """The `k` tracks nearest to `track_id` in the index, the track itself excluded."""
        self.catalogue.require(track_id)
        if track_id not in self._indexed:
            raise UnknownIdError(f"track {track_id!r} is not in the index {self.index_path}")
        query = np.asarray(self.index.vector(track_id), dtype=np.float32).reshape(1, -1)
        return self._shown(self.index.search(query, k, exclude=[{track_id}])[0], k)

    def recommendations(self, user_id: str, k: int) -> tuple[list[Hit], str]:
        """Top-`k` new tracks for a listener and where they come from: the saved recommender when the server has
        one, else the listener's profile (the mean embedding of their history) searched in the index. Tracks
        they have played are never recommended."""
        self.catalogue.require_user(user_id)
        if self.model is not None:
            from tunespace.index.queries import recommend_for_user

            return self._shown(recommend_for_user(self.model, user_id, k), k), f"recommender {self.model.name}"
        played = self.catalogue.history(user_id)
        known = [tid for tid in played["track_id"] if tid in self._indexed]
        if not known:
            raise FeatureUnavailableError(f"listener {user_id!r} played no indexed track and the server has no "
                                          "recommender (--model)")
        weights = played.set_index("track_id").loc[known, "plays"].to_numpy(dtype=np.float32)
        profile = (np.stack([self.index.vector(t) for t in known]) * weights[:, None]).sum(0) / weights.sum()
        hits = self.index.search(profile.astype(np.float32).reshape(1, -1), k, exclude=[set(played["track_id"])])
        return self._shown(hits[0], k), "listening profile (mean embedding of the history)"

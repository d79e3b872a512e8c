"""EASE with a content -> collaborative map (after van den Oord et al., 2013): a ridge regression learns each train
item's EASE column (its weights from every train item) from its content embedding, so an item with few or no plays
gets a predicted column.

    W = argmin ||C W - B'||^2 + ridge ||W||^2        (C: train items x content, B': the columns of B as rows)
    column_j = a_j B[:, j] + (1 - a_j) (c_j W)',     a_j = plays_j / (plays_j + shrink)

A new item has no plays (a = 0) and takes its predicted column; a much-played item keeps its own. `shrink` = 0 is
EASE on train items.
"""

from __future__ import annotations

import numpy as np
import torch

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import ModelConfigError
from tunespace.evaluation.ranking import Scorer
from tunespace.recommenders.base import Standardiser, new_item_vectors, register, train_item_vectors
from tunespace.recommenders.ease import EASE, ease_weights
from tunespace.recommenders.sparse import item_column_scorer


def ridge_map(features: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """W minimising ||features W - targets||^2 + ridge ||W[:-1]||^2: the last feature column is the constant one,
    an unpenalised bias."""
    penalty = ridge * np.eye(features.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(features.T @ features + penalty, features.T @ targets)


@register("ease-mapped")
class MappedEASE(EASE):
    """`l2` is EASE's; `ridge` regularises the content map; `shrink` is the play count at which an item's own
    column and its predicted one weigh the same; `standardize` z-scores the embedding dimensions over the train
    catalogue before the map (see `Standardiser`)."""

    needs_embeddings = True
    cold_items = "its EASE column predicted from its content embedding by a ridge map fitted on the train items"

    def __init__(self, embeddings: ItemEmbeddings | None = None, l2: float = 500.0, ridge: float = 10.0,
                 shrink: float = 0.0, standardize: bool = False, **options):
        if l2 <= 0 or ridge <= 0 or shrink < 0:
            raise ModelConfigError(f"ease-mapped: l2 > 0, ridge > 0 and shrink >= 0 are required, got l2={l2}, "
                                   f"ridge={ridge}, shrink={shrink}")
        super().__init__(l2=l2, ridge=ridge, shrink=shrink, standardize=bool(standardize), **options)
        self.embeddings = embeddings
        self.l2, self.ridge, self.shrink = float(l2), float(ridge), float(shrink)
        self._map: np.ndarray | None = None
        self._standardiser = Standardiser() if standardize else None

    def _fit(self, train: InteractionMatrix) -> None:
        vectors, placed = train_item_vectors(self.name, train.items, self.embeddings, purpose="map from",
                                             standardiser=self._standardiser)
        x = train.binary()
        weights = ease_weights(x, self.l2).numpy()
        features = _with_bias(vectors)
        self._map = ridge_map(features[placed], weights.T[placed], self.ridge)
        if self.shrink > 0:
            plays = np.asarray(x.sum(axis=0)).ravel()
            own = plays / (plays + self.shrink)
            own[~placed] = 1.0  # without content an item can only keep its own column
            predicted = (features @ self._map).T
            weights = own[None, :] * weights + (1.0 - own[None, :]) * predicted
            np.fill_diagonal(weights, 0.0)
        self._weights = torch.from_numpy(weights.astype(np.float32)).to(self.device)

    def _new_item_scorer(self, ids: np.ndarray, embeddings: ItemEmbeddings | None) -> Scorer | None:
        assert self._map is not None and self._seen is not None
        vectors, placed = new_item_vectors(self.name, ids, embeddings or self.embeddings, self._standardiser)
        return item_column_scorer(self._seen, (_with_bias(vectors) @ self._map).T, placed, self.device)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._weights is not None and self._map is not None
        state = {"weights": self._weights.cpu().numpy(), "map": self._map}
        return state | (self._standardiser.state() if self._standardiser is not None else {})

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._weights = torch.from_numpy(state["weights"]).to(self.device)
        self._map = state["map"]
        self._standardiser = Standardiser.from_state(state) if "shift" in state else None


def _with_bias(vectors: np.ndarray) -> np.ndarray:
    return np.hstack([np.asarray(vectors, dtype=np.float64), np.ones((len(vectors), 1))])

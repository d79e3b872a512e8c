"""EASE whose item-item weights are pulled toward a content similarity: collaborative where plays are dense, content
where they are sparse, and a closed form for items no one has played yet.

    B = argmin ||X - XB||^2 + l2 ||B - w S||^2   subject to diag(B) = 0

S is the cosine similarity of the item embeddings, each column kept to its `neighbours` largest positive entries
(the item itself left out). With P = (X'X + l2 I)^-1 the Lagrangian gives

    B = I - l2 P + l2 w P S - P diag(mu),   mu_j = (1 - l2 P_jj + l2 w (P S)_jj) / P_jj,

so w = 0 is EASE exactly. An item without plays has a zero column in X'X, so its column of B is l2 w P S[:, j]:
its content neighbours' similarity, propagated through the same P. New items are scored with that column, with
their own weight `cold_weight` (default w): warm items want a light pull toward content, an item nobody has played
has only content, and one w cannot serve both (measured on the medium corpus, see docs/recommenders.md).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import ModelConfigError
from tunespace.evaluation.ranking import Scorer
from tunespace.recommenders.base import Standardiser, new_item_vectors, register, train_item_vectors
from tunespace.recommenders.ease import EASE, ease_precision
from tunespace.recommenders.sparse import item_column_scorer


def unit_rows(vectors: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Rows L2-normalised (float64); rows without an embedding stay zero."""
    out = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.where(norms > 0, out / np.maximum(norms, 1e-300), 0.0)
    out[~placed] = 0.0
    return out


def neighbour_similarity(rows: np.ndarray, columns: np.ndarray, neighbours: int,
                         same: bool) -> sp.csc_matrix:
    """(len(rows), len(columns)) cosine of unit vectors, each column kept to its `neighbours` largest positive
    entries; with `same` (rows are the columns) the diagonal is left out."""
    similarity = rows @ columns.T
    if same:
        np.fill_diagonal(similarity, -np.inf)
    keep = min(neighbours, len(rows) - (1 if same else 0))
    if keep <= 0:
        return sp.csc_matrix(similarity.shape)
    top = np.argpartition(-similarity, keep - 1, axis=0)[:keep]
    values = np.take_along_axis(similarity, top, axis=0)
    cols = np.broadcast_to(np.arange(similarity.shape[1]), top.shape)
    positive = values > 0
    return sp.csc_matrix((values[positive], (top[positive], cols[positive])), shape=similarity.shape)


def propagated(precision: np.ndarray, similarity: sp.spmatrix) -> np.ndarray:
    """P S as a dense array, computed as (S' P)' because P is symmetric: sparse times dense, without a sparse copy
    of the dense P."""
    return np.asarray(sp.csr_matrix(similarity.T) @ precision).T


@register("ease-content")
class ContentEASE(EASE):
    """`l2` is EASE's; `content_weight` (w) scales the content prior S of the train items, `cold_weight` that of
    new items; `neighbours` sparsifies S; `standardize` z-scores embedding dimensions over the train catalogue
    before the cosine. The default w = 0.01 is the medium corpus's validation choice."""

    needs_embeddings = True
    cold_items = "its column of B is l2 w P S: the content similarity to train items, propagated through EASE's P"

    def __init__(self, embeddings: ItemEmbeddings | None = None, l2: float = 500.0, content_weight: float = 0.01,
                 neighbours: int = 50, standardize: bool = False, cold_weight: float | None = None, **options):
        if l2 <= 0 or content_weight < 0 or neighbours < 1 or (cold_weight is not None and cold_weight < 0):
            raise ModelConfigError(f"ease-content: l2 > 0, content_weight >= 0, cold_weight >= 0 and neighbours >= 1 "
                                   f"are required, got l2={l2}, content_weight={content_weight}, "
                                   f"cold_weight={cold_weight}, neighbours={neighbours}")
        super().__init__(l2=l2, content_weight=content_weight, neighbours=int(neighbours),
                         standardize=bool(standardize), cold_weight=cold_weight, **options)
        self.embeddings = embeddings
        self.l2, self.content_weight = float(l2), float(content_weight)
        self.cold_weight = self.content_weight if cold_weight is None else float(cold_weight)
        self.neighbours = int(neighbours)
        self._standardiser = Standardiser() if standardize else None
        self._precision: np.ndarray | None = None  # P, kept to place new items
        self._units: np.ndarray | None = None  # the train items' unit content vectors

    def _fit(self, train: InteractionMatrix) -> None:
        vectors, placed = train_item_vectors(self.name, train.items, self.embeddings, purpose="regularise toward",
                                             standardiser=self._standardiser)
        self._units = unit_rows(vectors, placed)
        precision = ease_precision(train.binary(), self.l2).numpy()
        similarity = neighbour_similarity(self._units, self._units, self.neighbours, same=True)
        pulled = self.l2 * self.content_weight * propagated(precision, similarity) if self.content_weight > 0 \
            else np.zeros_like(precision)
        diagonal = np.diag(precision)
        mu = (1.0 - self.l2 * diagonal + np.diag(pulled)) / diagonal
        weights = np.eye(len(precision)) - self.l2 * precision + pulled - precision * mu[None, :]
        np.fill_diagonal(weights, 0.0)
        self._precision = precision
        self._weights = torch.from_numpy(weights.astype(np.float32)).to(self.device)

    def _new_item_scorer(self, ids: np.ndarray, embeddings: ItemEmbeddings | None) -> Scorer | None:
        assert self._precision is not None and self._units is not None and self._seen is not None
        vectors, placed = new_item_vectors(self.name, ids, embeddings or self.embeddings, self._standardiser)
        units = unit_rows(vectors, placed)
        similarity = neighbour_similarity(self._units, units, self.neighbours, same=False)
        columns = self.l2 * self.cold_weight * propagated(self._precision, similarity)
        return item_column_scorer(self._seen, columns, placed, self.device)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._weights is not None and self._precision is not None and self._units is not None
        state = {"weights": self._weights.cpu().numpy(), "precision": self._precision, "units": self._units}
        if self._standardiser is not None:
            state.update(self._standardiser.state())
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._weights = torch.from_numpy(state["weights"]).to(self.device)
        self._precision, self._units = state["precision"], state["units"]
        self._standardiser = Standardiser.from_state(state) if "shift" in state else None

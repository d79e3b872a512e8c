"""Content KNN exactly as Tamm and Aljanaki (RecSys 2024): a user is the mean of the embeddings of the items in
their profile, and items are ranked by cosine to that mean. It measures how much a content embedding alone
knows about taste."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.evaluation.ranking import Scorer
from tunespace.recommenders.base import (
    Recommender,
    Standardiser,
    dot_scorer,
    new_item_vectors,
    register,
    train_item_vectors,
)


def unit_rows(rows: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows; a zero row stays zero (its cosine with everything is 0)."""
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)


def profile_means(seen: sp.spmatrix, vectors: np.ndarray, placed: np.ndarray | None = None) -> np.ndarray:
    """(users, d) float32: each user's mean of the vectors of their distinct items (`seen`, binary users x items),
    leaving out items not `placed` (without an embedding): the user vectors of content KNN before normalising."""
    weights = np.ones(seen.shape[1]) if placed is None else placed.astype(np.float64)
    profiles = seen @ sp.diags(weights)
    sizes = np.asarray(profiles.sum(axis=1)).ravel()
    return np.asarray(sp.diags(1.0 / np.maximum(sizes, 1)) @ profiles @ vectors, dtype=np.float32)


@register("knn")
class ContentKNN(Recommender):
    """The profile is the set of distinct train items. An item without an embedding (an extraction skipped its
    file) cannot be placed by content: it is left out of user means and scored -inf, so it is never recommended.

    `standardize=True`, the default, z-scores every dimension over the train catalogue's embedded items before the
    cosine (see `Standardiser`; chosen on validation users of the medium corpus, see docs/recommenders.md). The
    study's KNN is `standardize=False`."""

    needs_embeddings = True
    cold_items = "ranked like a train item: cosine of its embedding to the user's mean"

    def __init__(self, embeddings: ItemEmbeddings | None = None, standardize: bool = True, **options):
        super().__init__(standardize=bool(standardize), **options)
        self.embeddings = embeddings
        self._standardiser = Standardiser() if standardize else None
        self._items: torch.Tensor | None = None
        self._users: torch.Tensor | None = None
        self._unplaced: torch.Tensor | None = None  # -inf for items without an embedding, else 0

    def _fit(self, train: InteractionMatrix) -> None:
        vectors, placed = train_item_vectors(self.name, train.items, self.embeddings, purpose="rank by",
                                             standardiser=self._standardiser)
        self._set(vectors, profile_means(train.binary(), vectors, placed), placed)

    def _set(self, items: np.ndarray, users: np.ndarray, placed: np.ndarray) -> None:
        self._items = unit_rows(torch.from_numpy(items)).to(self.device)
        self._users = unit_rows(torch.from_numpy(users)).to(self.device)
        penalty = np.where(placed, 0.0, -np.inf).astype(np.float32)
        self._unplaced = torch.from_numpy(penalty).to(self.device) if not placed.all() else None

    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert self._items is not None and self._users is not None
        scores = torch.matmul(self._users[users], self._items[start:stop].T, out=out)
        if self._unplaced is not None:
            scores += self._unplaced[start:stop]
        return scores

    def _new_item_scorer(self, ids: np.ndarray, embeddings: ItemEmbeddings | None) -> Scorer | None:
        assert self._users is not None
        vectors, placed = new_item_vectors(self.name, ids, embeddings or self.embeddings, self._standardiser)
        penalty = torch.from_numpy(np.where(placed, 0.0, -np.inf).astype(np.float32)).to(self.device)
        return dot_scorer(self._users, unit_rows(torch.from_numpy(vectors)).to(self.device),
                          None if placed.all() else penalty)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._items is not None and self._users is not None
        placed = np.ones(len(self._items), bool) if self._unplaced is None else self._unplaced.cpu().numpy() == 0
        state = {"items": self._items.cpu().numpy(), "users": self._users.cpu().numpy(), "placed": placed}
        if self._standardiser is not None:
            state.update(self._standardiser.state())
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._standardiser = Standardiser.from_state(state) if "shift" in state else None
        self._set(state["items"], state["users"], state.get("placed", np.ones(len(state["items"]), bool)))


"""Content KNN exactly as Tamm and Aljanaki (RecSys 2024): a user is the mean of the embeddings of the items in
their profile, and items are ranked by cosine to that mean. It measures how much a content embedding alone
knows about taste."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.recommenders.base import Recommender, register


def _unit(rows: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows; a zero row stays zero (its cosine with everything is 0)."""
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)


@register("knn")
class ContentKNN(Recommender):
    """Needs `embeddings` covering every train item. The profile is the set of distinct train items."""

    needs_embeddings = True

    def __init__(self, embeddings: ItemEmbeddings | None = None, **options):
        super().__init__(**options)
        self.embeddings = embeddings
        self._items: torch.Tensor | None = None
        self._users: torch.Tensor | None = None

    def _fit(self, train: InteractionMatrix) -> None:
        if self.embeddings is None:
            raise ValueError("knn: give the item embeddings to rank by (embeddings=ItemEmbeddings)")
        vectors = self.embeddings.aligned(train.items)
        profiles = train.binary()
        sizes = np.asarray(profiles.sum(axis=1)).ravel()
        means = sp.diags(1.0 / np.maximum(sizes, 1)) @ profiles @ vectors
        self._set(vectors, np.asarray(means, dtype=np.float32))

    def _set(self, items: np.ndarray, users: np.ndarray) -> None:
        self._items = _unit(torch.from_numpy(items)).to(self.device)
        self._users = _unit(torch.from_numpy(users)).to(self.device)

    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert self._items is not None and self._users is not None
        return torch.matmul(self._users[users], self._items[start:stop].T, out=out)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._items is not None and self._users is not None
        return {"items": self._items.cpu().numpy(), "users": self._users.cpu().numpy()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._set(state["items"], state["users"])

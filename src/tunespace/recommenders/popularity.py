"""Most-popular baseline: the same ranking for everyone, the floor any personalised model must beat."""

from __future__ import annotations

import numpy as np
import torch

from tunespace.data.interactions import InteractionMatrix
from tunespace.recommenders.base import Recommender, register


@register("popularity")
class Popularity(Recommender):
    """Score = number of distinct train users who interacted with the item."""

    def __init__(self, **options):
        super().__init__(**options)
        self._popularity: torch.Tensor | None = None

    def _fit(self, train: InteractionMatrix) -> None:
        counts = np.asarray(train.binary().sum(axis=0)).ravel().astype(np.float32)
        self._popularity = torch.from_numpy(counts).to(self.device)

    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert self._popularity is not None
        return self._popularity[start:stop].expand(len(users), -1)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._popularity is not None
        return {"popularity": self._popularity.cpu().numpy()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._popularity = torch.from_numpy(state["popularity"]).to(self.device)

"""Popularity-aware scoring ("+pop"): any fitted recommender's scores plus a weighted popularity term.

Why: a content model's NDCG@50 can rise merely because its scores drift towards popular items, so a content
embedding is judged against "content score + beta * popularity" with beta chosen on validation users
(`tunespace.evaluation.popularity`), not against the raw content score alone. `with_weight` re-weights a fitted
blend without refitting its base, so beta can be searched on a grid for trained bases too.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.evaluation.ranking import Scorer
from tunespace.recommenders.base import Recommender, get_recommender, register


def popularity_z(plays: np.ndarray) -> tuple[np.ndarray, float]:
    """z-scores of log(1 + plays) over the given (train) items, and the z of an item with no plays; a
    catalogue whose items are all equally played has sd 0, and every z (also a new item's) is then 0."""
    logs = np.log1p(np.asarray(plays, dtype=np.float64))
    mean, sd = float(logs.mean()) if len(logs) else 0.0, float(logs.std()) if len(logs) else 0.0
    if sd == 0:
        return np.zeros(len(logs)), 0.0
    return (logs - mean) / sd, (np.log1p(0.0) - mean) / sd


@register("popularity-blend")
class PopularityBlend(Recommender):
    """score(u, i) = base score(u, i) + weight * z_i, z_i = (log(1 + plays_i) - mean) / sd, where plays_i sums
    the item's train event weights and mean and sd (ddof 0) run over the train catalogue. Items added later
    (`extended`) have no train plays: z = (log 1 - mean) / sd. What the base scores -inf stays -inf.

    `base` names a registered recommender; every other option (embeddings included, for a content base) goes to
    it. The class is registered as needing embeddings because its purpose is judging content bases; a base
    without `needs_embeddings` never receives them. An instance stops early on validation pairs exactly when its
    base does (`uses_validation` follows the base)."""

    needs_embeddings = True
    cold_items = "as the base model scores them, plus weight x the popularity z-score of an item with no train plays"

    def __init__(self, base: str = "knn", weight: float = 0.0, embeddings: ItemEmbeddings | None = None,
                 device: str = "auto", user_chunk: int = 1024, item_chunk: int = 65536, **options: Any):
        base_cls = get_recommender(base)
        given = {"embeddings": embeddings} if base_cls.needs_embeddings else {}
        self.base = base_cls(device=device, user_chunk=user_chunk, item_chunk=item_chunk, **given, **options)
        super().__init__(device=device, user_chunk=user_chunk, item_chunk=item_chunk, base=base,
                         weight=float(weight), **self.base.params)
        self.uses_validation = self.base.uses_validation  # type: ignore[misc]  # the base decides, per instance
        self.weight = float(weight)
        self._plays: np.ndarray | None = None
        self._z: torch.Tensor | None = None
        self._cold_z = 0.0

    def _fit(self, train: InteractionMatrix, validation: pd.DataFrame | None = None) -> None:
        self.base.fit(train, validation)
        self._set_plays(np.asarray(train.matrix.sum(axis=0), dtype=np.float64).ravel())

    def _set_plays(self, plays: np.ndarray) -> None:
        self._plays = plays
        z, self._cold_z = popularity_z(plays)
        self._z = torch.from_numpy(z.astype(np.float32)).to(self.device)

    def with_weight(self, weight: float) -> PopularityBlend:
        """This fitted blend with another weight, sharing the fitted base: a re-score, not a refit."""
        self._fitted()
        other = copy.copy(self)
        other.weight = float(weight)
        other.params = {**self.params, "weight": float(weight)}
        return other

    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert self._z is not None
        return self.base._score(users, start, stop, out) + self.weight * self._z[start:stop]

    def _new_item_scorer(self, ids: np.ndarray, embeddings: ItemEmbeddings | None) -> Scorer | None:
        scorer = self.base._new_item_scorer(ids, embeddings)
        if scorer is None:
            return None
        offset = self.weight * self._cold_z

        def score(users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
            return scorer(users, start, stop, out) + offset

        return score

    def _state(self) -> dict[str, np.ndarray]:
        assert self._plays is not None
        return {"plays": self._plays, **{f"base.{key}": value for key, value in self.base._state().items()}}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.base.train_, self.base._seen = self.train_, self._seen
        self.base._load_state({key[len("base."):]: value for key, value in state.items() if key.startswith("base.")})
        self._set_plays(state["plays"])

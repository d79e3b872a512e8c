"""EASE (Steck, WWW 2019): a closed-form item-item linear model, the strong collaborative reference."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from tunespace.data.interactions import InteractionMatrix
from tunespace.recommenders.base import Recommender, register
from tunespace.recommenders.sparse import dense_rows


@register("ease")
class EASE(Recommender):
    """B = argmin ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0, solved as B = I - P / diag(P), P = (X'X + l2 I)^-1.

    Memory and time grow with the square and cube of the catalogue: meant for up to some tens of thousands
    of items.
    """

    def __init__(self, l2: float = 500.0, **options):
        super().__init__(l2=l2, **options)
        self.l2 = l2
        self._weights: torch.Tensor | None = None

    def _fit(self, train: InteractionMatrix) -> None:
        self._weights = ease_weights(train.binary(), self.l2).to(torch.float32).to(self.device)

    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert self._weights is not None and self._seen is not None
        profiles = dense_rows(self._seen, users.cpu().numpy()).to(self.device)
        return torch.matmul(profiles, self._weights[:, start:stop], out=out)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._weights is not None
        return {"weights": self._weights.cpu().numpy()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._weights = torch.from_numpy(state["weights"]).to(self.device)


def ease_precision(x: sp.spmatrix, l2: float) -> torch.Tensor:
    """P = (X'X + l2 I)^-1 (float64, CPU) for a binary user x item matrix X."""
    gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
    gram.diagonal().add_(l2)
    return torch.cholesky_inverse(torch.linalg.cholesky(gram))


def ease_weights(x: sp.spmatrix, l2: float) -> torch.Tensor:
    """EASE's B (float64, CPU) for a binary user x item matrix: B = I - P / diag(P)."""
    precision = ease_precision(x, l2)
    weights = -precision / precision.diagonal()
    weights.diagonal().zero_()
    return weights

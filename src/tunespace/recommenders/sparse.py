"""Small helpers between scipy sparse matrices and torch tensors."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """Rows of a CSR matrix as a dense float32 tensor (one user chunk's profiles)."""
    return torch.from_numpy(matrix[rows].toarray().astype(np.float32, copy=False))


def item_column_scorer(seen: sp.csr_matrix, columns: np.ndarray, placed: np.ndarray, device: torch.device):
    """A `Scorer` of new items through item-item weight columns: a user's score for new item j is the sum of
    `columns[i, j]` over the train items i in their profile; items without content (`placed` False) score -inf."""
    weights = torch.from_numpy(np.asarray(columns, dtype=np.float32)).to(device)
    penalty = torch.from_numpy(np.where(placed, 0.0, -np.inf).astype(np.float32)).to(device)

    def score(users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        profiles = dense_rows(seen, users.cpu().numpy()).to(device)
        scores = torch.matmul(profiles, weights[:, start:stop], out=out)
        scores += penalty[start:stop]
        return scores

    return score

"""Small helpers between scipy sparse matrices and torch tensors."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """Rows of a CSR matrix as a dense float32 tensor (one user chunk's profiles)."""
    return torch.from_numpy(matrix[rows].toarray().astype(np.float32, copy=False))

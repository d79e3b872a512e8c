"""Item-based KNN with cosine similarity between items' user vectors (Sarwar et al., WWW 2001)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from tunespace.data.interactions import InteractionMatrix
from tunespace.recommenders.base import Recommender, register
from tunespace.recommenders.sparse import dense_rows


@register("itemknn")
class ItemKNN(Recommender):
    """score(u, j) = sum over items i in u's profile of sim(i, j), keeping each item's `neighbours` most similar.

    sim(i, j) = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrink); the item itself is never its own neighbour.
    """

    def __init__(self, neighbours: int = 100, shrink: float = 0.0, **options):
        super().__init__(neighbours=neighbours, shrink=shrink, **options)
        self.neighbours = neighbours
        self.shrink = shrink
        self._similarity: sp.csr_matrix | None = None

    def _fit(self, train: InteractionMatrix) -> None:
        x = train.binary().tocsc()
        co = (x.T @ x).tocsr().astype(np.float32)
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        coo = co.tocoo()
        values = coo.data / (norms[coo.row] * norms[coo.col] + self.shrink)
        similarity = sp.csc_matrix((values, (coo.row, coo.col)), shape=co.shape)
        self._similarity = self._prune(similarity).tocsr()

    def _prune(self, similarity: sp.csc_matrix) -> sp.csc_matrix:
        """Keep the `neighbours` largest similarities of each target item (column); ties to lower index."""
        keep_rows, keep_cols, keep_vals = [], [], []
        for col in range(similarity.shape[1]):
            lo, hi = similarity.indptr[col], similarity.indptr[col + 1]
            rows, vals = similarity.indices[lo:hi], similarity.data[lo:hi]
            if len(vals) > self.neighbours:
                order = np.lexsort((rows, -vals))[: self.neighbours]
                rows, vals = rows[order], vals[order]
            keep_rows.append(rows)
            keep_vals.append(vals)
            keep_cols.append(np.full(len(rows), col))
        return sp.csc_matrix((np.concatenate(keep_vals), (np.concatenate(keep_rows), np.concatenate(keep_cols))),
                             shape=similarity.shape, dtype=np.float32)

    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert self._similarity is not None and self._seen is not None
        block = self._seen[users.cpu().numpy()] @ self._similarity[:, start:stop]
        return torch.from_numpy(block.toarray().astype(np.float32, copy=False)).to(self.device)

    def _state(self) -> dict[str, np.ndarray]:
        assert self._similarity is not None
        s = self._similarity
        return {"data": s.data, "indices": s.indices, "indptr": s.indptr, "shape": np.asarray(s.shape)}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._similarity = sp.csr_matrix((state["data"], state["indices"], state["indptr"]),
                                         shape=tuple(state["shape"]))

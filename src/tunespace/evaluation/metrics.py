"""Top-K ranking metrics as pure functions of a hit matrix, one value per user.

`hits[u, r]` is True when the r-th recommendation of user u is relevant; `n_relevant[u]` is the size of the
user's relevant set (all of it, not only what the list could reach). Definitions (binary relevance):

- hit_rate@K      1 if any of the first K is relevant
- recall@K        hits in the first K / n_relevant (as Tamm and Aljanaki report it)
- recall_capped@K hits in the first K / min(K, n_relevant) (reaches 1 when the list is as good as it can be)
- precision@K     hits in the first K / K
- ndcg@K          sum over ranks r < K of hit / log2(r + 2), divided by the ideal DCG of min(n_relevant, K) hits
- mrr@K           1 / (rank of the first hit, from 1) if it is within K, else 0
- coverage@K      (catalogue level) distinct items recommended in the first K to any user / catalogue size
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

PER_USER_METRICS = ("hit_rate", "recall", "recall_capped", "precision", "ndcg", "mrr")


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks: Iterable[int]) -> dict[str, np.ndarray]:
    """Per-user metrics `{"ndcg@50": (n_users,), ...}` for every K in `ks` (K may exceed the list length)."""
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    if hits.ndim != 2 or len(hits) != len(n_relevant):
        raise ValueError(f"hits must be (n_users, list_length) with one n_relevant per user, got {hits.shape} "
                         f"and {n_relevant.shape}")
    if (n_relevant < 1).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    if (hits.sum(axis=1) > n_relevant).any():
        raise ValueError("a user has more hits than relevant items")
    out: dict[str, np.ndarray] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be at least 1, got {k}")
        top = hits[:, :k]
        found = top.sum(axis=1).astype(np.float64)
        discounts = _discounts(top.shape[1])
        ideal = np.concatenate([[0.0], np.cumsum(_discounts(k))])[np.minimum(n_relevant, k).astype(int)]
        first = np.where(top.any(axis=1), top.argmax(axis=1) + 1, 0)
        out[f"hit_rate@{k}"] = (found > 0).astype(np.float64)
        out[f"recall@{k}"] = found / n_relevant
        out[f"recall_capped@{k}"] = found / np.minimum(n_relevant, k)
        out[f"precision@{k}"] = found / k
        out[f"ndcg@{k}"] = (top * discounts).sum(axis=1) / ideal
        out[f"mrr@{k}"] = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return out


def coverage(items: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's first K recommendations (-1 is padding)."""
    top = np.asarray(items)[:, :k]
    return float(np.unique(top[top >= 0]).size / n_items) if n_items else 0.0

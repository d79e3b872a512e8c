"""Track-to-track similarity: each query track ranks the whole catalogue (itself excluded) by cosine, and the list is
scored against the tracks judged similar to it (sharing a held-out playlist, or the same labels) with the
full-ranking metrics of `evaluation.metrics`. Ties never favour a relevant track (`ranking.top_k` demotes them)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from tunespace.errors import TunespaceError
from tunespace.evaluation.evaluate import hit_matrix
from tunespace.evaluation.metrics import ranking_metrics
from tunespace.evaluation.ranking import top_k
from tunespace.recommenders.base import dot_scorer


class SimilarityError(TunespaceError, ValueError):
    """Queries or relevance cannot be evaluated as given (shape, a query with nothing relevant, or relevant to
    itself)."""


def similarity_per_query(vectors: np.ndarray, queries: np.ndarray, relevance: sp.spmatrix,
                         ks: Iterable[int] = (10, 50), query_chunk: int = 1024,
                         device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """One value per query for each metric (`ndcg@10`, `hit_rate@50`, ...).

    vectors: (n_tracks, dim) track embeddings, normalised here (cosine). queries: row indices of the query tracks.
    relevance: (len(queries), n_tracks), nonzero where a track is judged similar to that query; every query needs
    at least one relevant track, and never itself.
    """
    vectors = F.normalize(torch.as_tensor(np.asarray(vectors, dtype=np.float32)), dim=-1).to(device)
    queries = np.asarray(queries, dtype=np.int64)
    relevance = sp.csr_matrix(relevance, dtype=bool)
    relevance.eliminate_zeros()
    if relevance.shape != (len(queries), len(vectors)):
        raise SimilarityError(f"relevance has shape {relevance.shape}; expected ({len(queries)}, {len(vectors)}): "
                              "one row per query, one column per track")
    if len(queries) and (queries.min() < 0 or queries.max() >= len(vectors)):
        raise SimilarityError(f"query rows must be in 0..{len(vectors) - 1}")
    n_relevant = np.diff(relevance.indptr)
    if (n_relevant == 0).any():
        raise SimilarityError(f"{int((n_relevant == 0).sum())} of {len(queries)} queries have no relevant track; "
                              "drop them before evaluating")
    rows = np.arange(len(queries))
    exclude = sp.csr_matrix((np.ones(len(queries), dtype=bool), (rows, queries)), shape=relevance.shape)
    if relevance.multiply(exclude).nnz:
        raise SimilarityError("a query is marked relevant to itself; the query is excluded from its own ranking")
    ks = tuple(ks)
    ranked = top_k(dot_scorer(vectors[torch.as_tensor(queries, device=vectors.device)], vectors), rows,
                   len(vectors), max(ks), exclude=exclude, demote=relevance, user_chunk=query_chunk, device=device)
    return ranking_metrics(hit_matrix(ranked.items, rows, relevance), n_relevant, ks)


def shared_group_relevance(groups: sp.spmatrix, queries: np.ndarray) -> sp.csr_matrix:
    """(len(queries), n_tracks): the tracks sharing at least one group with each query, the query itself left out.
    `groups` is (n_groups, n_tracks), nonzero where a track belongs to a group (a playlist, a label value)."""
    queries = np.asarray(queries, dtype=np.int64)
    membership = sp.csr_matrix(groups, dtype=np.float32).T.tocsr()  # tracks x groups
    shared = (membership[queries] @ membership.T).tocsr()
    itself = sp.csr_matrix((np.ones(len(queries), dtype=np.float32), (np.arange(len(queries)), queries)),
                           shape=shared.shape)
    shared = (shared - shared.multiply(itself)).tocsr()
    shared.eliminate_zeros()
    return shared.astype(bool)

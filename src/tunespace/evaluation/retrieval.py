"""Cross-modal retrieval metrics (text -> audio, audio -> text) with exact, pessimistic ranks, and their chance levels.

Every relevant target gets its full 1-based rank among all targets, so median and mean rank are exact, not
truncated at a list length. Similarities come from a batched matmul over chunks of queries, so memory stays at
about `query_chunk * n_targets` floats whatever the sizes. As in `ranking.py`, ties never favour the ground truth:
a relevant target tied with irrelevant ones ranks below all of them, and tied relevant targets are ordered by index.

Definitions, per query (then averaged over queries, except the median rank):

- R@k          1 if any relevant target is among the first k
- rank         rank of the best-ranked relevant target (median_rank and mean_rank summarise it)
- MRR          1 / rank
- mAP@k        sum over relevant targets ranked within k of (relevant targets at or above it) / its rank,
               divided by min(k, n_relevant), so a perfect ranking scores 1
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp
import torch

from tunespace.errors import TunespaceError

KS = (1, 5, 10)
MAP_K = 10
_COMPARE_SLOTS = 16  # up to this many relevant targets per query, count by comparison; beyond, by sorting
_CHUNK_ENTRIES = 2**24  # similarities held at once (64 MiB of float32) when query_chunk is not given


class RetrievalError(TunespaceError, ValueError):
    """Embeddings or relevance cannot be evaluated as given (shape mismatch, NaN, a query with no relevant target)."""


def _as_matrix(values: np.ndarray | torch.Tensor, name: str, device: torch.device) -> torch.Tensor:
    matrix = torch.as_tensor(values).to(device=device, dtype=torch.float32)
    if matrix.ndim != 2:
        raise RetrievalError(f"{name} must be a 2-D (count, dim) matrix, got shape {tuple(matrix.shape)}")
    if len(matrix) == 0:
        raise RetrievalError(f"{name} is empty (shape {tuple(matrix.shape)})")
    if not torch.isfinite(matrix).all():
        raise RetrievalError(f"{name} contains NaN or infinite values")
    return matrix


def _groups(groups: np.ndarray | None, count: int, name: str) -> np.ndarray:
    if groups is None:
        return np.arange(count)
    groups = np.asarray(groups)
    if groups.shape != (count,):
        raise RetrievalError(f"{name} must hold one group per row, expected shape ({count},), got {groups.shape}")
    return groups


def relevance_matrix(n_queries: int, n_targets: int, relevance: np.ndarray | sp.spmatrix | None = None,
                     query_groups: np.ndarray | None = None,
                     target_groups: np.ndarray | None = None) -> sp.csr_matrix:
    """Boolean CSR (n_queries, n_targets): which targets count as correct answers for each query.

    Either an explicit `relevance` matrix, or groups: query i and target j match when their groups are equal.
    A side without groups gets its own index as group, so the default (nothing given) is "query i <-> target i",
    and `query_groups=track_of_caption` says "every caption of track t retrieves audio t".
    """
    if relevance is not None:
        if query_groups is not None or target_groups is not None:
            raise RetrievalError("give either a relevance matrix or groups, not both")
        matrix = sp.csr_matrix(relevance, dtype=bool)
        if matrix.shape != (n_queries, n_targets):
            raise RetrievalError(f"relevance has shape {matrix.shape}, expected (n_queries, n_targets) = "
                                 f"{(n_queries, n_targets)}")
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return matrix
    queries = _groups(query_groups, n_queries, "query_groups")
    targets = _groups(target_groups, n_targets, "target_groups")
    order = np.argsort(targets, kind="stable")
    sorted_targets = targets[order]
    starts = np.searchsorted(sorted_targets, queries, side="left")
    stops = np.searchsorted(sorted_targets, queries, side="right")
    lengths = stops - starts
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
    indices = order[np.repeat(starts, lengths) + offsets]
    matrix = sp.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=(n_queries, n_targets))
    matrix.sort_indices()
    return matrix


def _count_at_least(scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """counts[b, s] = number of entries of scores[b] that are >= values[b, s] (+inf padding counts 0)."""
    if values.shape[1] <= _COMPARE_SLOTS:
        return torch.stack([(scores >= values[:, s, None]).sum(dim=1) for s in range(values.shape[1])], dim=1)
    ascending = scores.sort(dim=1).values
    return scores.shape[1] - torch.searchsorted(ascending, values.contiguous(), side="left")


def _later_ties(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """For each relevant pair, how many relevant targets of the same query with a higher index share its score."""
    order = np.lexsort((cols, scores, rows))
    sorted_rows, sorted_scores = rows[order], scores[order]
    new = np.r_[True, (sorted_rows[1:] != sorted_rows[:-1]) | (sorted_scores[1:] != sorted_scores[:-1])]
    ends = np.r_[np.flatnonzero(new)[1:], len(order)]
    group = np.cumsum(new) - 1
    later = np.empty(len(order), dtype=np.int64)
    later[order] = ends[group] - np.arange(len(order)) - 1
    return later


def _relevant_ranks(queries: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor,
                   relevance: sp.csr_matrix, query_chunk: int | None = None,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """1-based rank of every relevant pair, aligned with `relevance.indices` (CSR order), ties pessimistic.

    Rank of relevant target j = (targets scoring >= s_j) - (relevant targets after j with score exactly s_j):
    every tied irrelevant target is placed above j, tied relevant ones in index order.
    """
    device = torch.device(device)
    q = _as_matrix(queries, "queries", device)
    t = _as_matrix(targets, "targets", device)
    if q.shape[1] != t.shape[1]:
        raise RetrievalError(f"queries have dimension {q.shape[1]} but targets have {t.shape[1]} "
                             f"(queries {tuple(q.shape)}, targets {tuple(t.shape)})")
    n, m = len(q), len(t)
    if relevance.shape != (n, m):
        raise RetrievalError(f"relevance has shape {relevance.shape}, expected (n_queries, n_targets) = {(n, m)}")
    per_query = np.diff(relevance.indptr)
    if (per_query == 0).any():
        missing = np.flatnonzero(per_query == 0)
        raise RetrievalError(f"{len(missing)} queries have no relevant target (first: query {missing[0]}); "
                             "with no relevance given, query i matches target i, which needs as many queries as "
                             "targets")
    if query_chunk is not None and query_chunk < 1:
        raise RetrievalError(f"query_chunk must be at least 1, got {query_chunk}")
    chunk = query_chunk or max(1, _CHUNK_ENTRIES // m)
    ranks = np.empty(relevance.nnz, dtype=np.int64)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        lo, hi = relevance.indptr[a], relevance.indptr[b]
        lengths = per_query[a:b]
        rows = np.repeat(np.arange(b - a), lengths)
        slots = np.arange(hi - lo) - np.repeat(relevance.indptr[a:b] - lo, lengths)
        cols = relevance.indices[lo:hi].astype(np.int64)
        sims = q[a:b] @ t.T  # -0.0 == 0.0 in every comparison below, torch's and numpy's alike
        rows_t, slots_t = torch.from_numpy(rows).to(device), torch.from_numpy(slots).to(device)
        values = sims[rows_t, torch.from_numpy(cols).to(device)]
        padded = torch.full((b - a, int(lengths.max())), float("inf"), device=device)
        padded[rows_t, slots_t] = values
        at_least = _count_at_least(sims, padded)[rows_t, slots_t].cpu().numpy()
        ranks[lo:hi] = at_least - _later_ties(rows, cols, values.cpu().numpy())
    return ranks


def _checked_ks(ks: Iterable[int], map_k: int) -> tuple[int, ...]:
    ks = tuple(ks)
    if min(ks, default=1) < 1 or map_k < 1:
        raise RetrievalError(f"k must be at least 1, got ks={ks}, map_k={map_k}")
    return ks


def metrics_from_ranks(ranks: np.ndarray, indptr: np.ndarray, ks: Iterable[int] = KS,
                       map_k: int = MAP_K) -> dict[str, np.ndarray]:
    """Per-query `R@k`, `rank` (of the first relevant), `MRR` and `mAP@k` from CSR-aligned relevant ranks."""
    ks = _checked_ks(ks, map_k)
    ranks = np.asarray(ranks, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    counts = np.diff(indptr)
    if len(indptr) < 2 or indptr[0] != 0 or indptr[-1] != len(ranks) or (counts < 1).any():
        raise RetrievalError(f"indptr must split the {len(ranks)} ranks into non-empty runs, one per query")
    rows = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((ranks, rows))
    sorted_ranks = ranks[order]
    position = np.arange(len(ranks)) - indptr[rows] + 1  # rows are already sorted, so rows[order] == rows
    first = sorted_ranks[indptr[:-1]].astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"R@{k}"] = (first <= k).astype(np.float64)
    out["rank"] = first
    out["MRR"] = 1.0 / first
    precision = np.where(sorted_ranks <= map_k, position / sorted_ranks, 0.0)
    out[f"mAP@{map_k}"] = np.bincount(rows, weights=precision, minlength=len(counts)) / np.minimum(counts, map_k)
    return out


def retrieval_per_query(queries: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor,
                        relevance: np.ndarray | sp.spmatrix | None = None, query_groups: np.ndarray | None = None,
                        target_groups: np.ndarray | None = None, ks: Iterable[int] = KS, map_k: int = MAP_K,
                        query_chunk: int | None = None,
                        device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """One value per query for each metric, for confidence intervals and paired tests between models.

    Similarity is the dot product, i.e. cosine for the L2-normalised embeddings this expects.
    """
    ks = _checked_ks(ks, map_k)  # before the long part, not after
    matrix = relevance_matrix(len(queries), len(targets), relevance, query_groups, target_groups)
    ranks = _relevant_ranks(queries, targets, matrix, query_chunk, device)
    return metrics_from_ranks(ranks, matrix.indptr, ks, map_k)


def summarise(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over queries, with the first-relevant rank as `median_rank` and `mean_rank` instead of its mean."""
    out = {name: float(values.mean()) for name, values in per_query.items() if name != "rank"}
    out["median_rank"] = float(np.median(per_query["rank"]))
    out["mean_rank"] = float(per_query["rank"].mean())
    return out


def retrieval_metrics(queries: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor,
                      relevance: np.ndarray | sp.spmatrix | None = None, query_groups: np.ndarray | None = None,
                      target_groups: np.ndarray | None = None, ks: Iterable[int] = KS, map_k: int = MAP_K,
                      query_chunk: int | None = None, device: torch.device | str = "cpu") -> dict[str, float]:
    """`{"R@1", ..., "MRR", "mAP@10", "median_rank", "mean_rank"}` averaged over queries (see module docstring)."""
    return summarise(retrieval_per_query(queries, targets, relevance, query_groups, target_groups, ks, map_k,
                                         query_chunk, device))


def text_to_audio(text: np.ndarray | torch.Tensor, audio: np.ndarray | torch.Tensor,
                  groups: np.ndarray | None = None, ks: Iterable[int] = KS, map_k: int = MAP_K,
                  query_chunk: int | None = None, device: torch.device | str = "cpu") -> dict[str, float]:
    """Each text retrieves audio; `groups[i]` is the audio row text i describes (default: row i)."""
    return retrieval_metrics(text, audio, query_groups=groups, ks=ks, map_k=map_k, query_chunk=query_chunk,
                             device=device)


def audio_to_text(audio: np.ndarray | torch.Tensor, text: np.ndarray | torch.Tensor,
                  groups: np.ndarray | None = None, ks: Iterable[int] = KS, map_k: int = MAP_K,
                  query_chunk: int | None = None, device: torch.device | str = "cpu") -> dict[str, float]:
    """Each audio row retrieves texts; every text with `groups[i] == row` is relevant (default: text i <-> row i)."""
    return retrieval_metrics(audio, text, target_groups=groups, ks=ks, map_k=map_k, query_chunk=query_chunk,
                             device=device)


def _first_rank_survival(n_relevant: int, n_targets: int) -> np.ndarray:
    """P(first relevant rank > j) for j = 0..n_targets under a uniformly random order: C(m-r, j) / C(m, j)."""
    j = np.arange(n_targets)
    factors = np.clip((n_targets - n_relevant - j) / (n_targets - j), 0.0, None)
    return np.concatenate([[1.0], np.cumprod(factors)])


def retrieval_chance(n_targets: int, n_relevant: int | np.ndarray = 1, ks: Iterable[int] = KS,
                     map_k: int = MAP_K) -> dict[str, float]:
    """Expected value of each metric of `retrieval_metrics` when targets are ordered at random, so a report can
    say "x times chance".

    n_relevant: relevant targets per query (one number for all queries, or one per query). Exact expectations
    from the hypergeometric law of where the relevant targets fall: R@k = 1 - C(m-r, k) / C(m, k), mean rank
    (m+1)/(r+1), MRR and mAP@k summed term by term. `median_rank` is the median of the first-relevant rank's
    distribution (mixed over queries), halfway between two ranks when the distribution splits evenly there, as a
    sample median over many queries would be: (m+1)/2 for one relevant target.
    """
    counts = np.atleast_1d(np.asarray(n_relevant, dtype=np.int64))
    if counts.ndim != 1 or len(counts) == 0:
        raise RetrievalError(f"n_relevant must be a number or a non-empty 1-D array, got shape {counts.shape}")
    if n_targets < 1 or (counts < 1).any() or (counts > n_targets).any():
        raise RetrievalError(f"every query needs between 1 and n_targets={n_targets} relevant targets, got "
                             f"values in [{counts.min()}, {counts.max()}]")
    ks = _checked_ks(ks, map_k)
    values, weights = np.unique(counts, return_counts=True)
    weights = weights / weights.sum()
    mixture_cdf = np.zeros(n_targets + 1)
    expected = dict.fromkeys([f"R@{k}" for k in ks] + ["MRR", f"mAP@{map_k}", "mean_rank"], 0.0)
    ranks = np.arange(1, n_targets + 1)
    j = np.arange(1, min(map_k, n_targets) + 1)
    for r, weight in zip(values, weights):
        survival = _first_rank_survival(int(r), n_targets)
        mixture_cdf += weight * (1.0 - survival)
        for k in ks:
            expected[f"R@{k}"] += weight * (1.0 - survival[min(k, n_targets)])
        expected["MRR"] += weight * float(np.sum((survival[:-1] - survival[1:]) / ranks))
        expected["mean_rank"] += weight * (n_targets + 1) / (r + 1)
        # E[relevant at j * precision@j] = P(relevant at j) * (1 + E[relevant above j | relevant at j]) / j
        later = (j - 1) * (r - 1) / max(n_targets - 1, 1)
        expected[f"mAP@{map_k}"] += weight * float(np.sum(r / n_targets * (1.0 + later) / j)) / min(r, map_k)
    tolerance = 1e-9
    lower = int(np.argmax(mixture_cdf >= 0.5 - tolerance))
    upper = int(np.argmax(mixture_cdf > 0.5 + tolerance))
    mean_rank = expected.pop("mean_rank")
    return {**{name: float(value) for name, value in expected.items()}, "median_rank": (lower + upper) / 2.0,
            "mean_rank": float(mean_rank)}

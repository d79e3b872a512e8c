"""Full-ranking evaluation of a content KNN over a partitioned split, with memory bounded whatever the log's size.

`tunespace.evaluation.evaluate` fits a model on the whole train frame first; at 100M events that frame alone is
larger than the machine. Here the evaluated users are taken in blocks of consecutive ids: a block's train pairs
are read by a filtered scan of the train parts (Parquet row-group statistics skip the rest when parts are sorted
by user, as the generator writes them), its user vectors are the KNN profile means of those pairs, and
`ranking.top_k` ranks the catalogue in user x item chunks with a running top-k merge. Memory is the item
vectors plus one block, not the log.

The model is `recommenders.knn.ContentKNN` with `standardize=False` (a user is the mean of their distinct train
items' embeddings; items are ranked by cosine), computed the same way, so on a small log the per-user metrics
equal `evaluate(ContentKNN(...))`'s. Three ways to run it, with identical per-user metrics for the first two:

- `evaluate_partitioned`: one process, block after block;
- `evaluate_partitioned_ray`: the users partitioned over Ray tasks, each running the same blocks;
- with a `retriever` (an approximate index's candidate search): each user's `candidates` nearest items are
  fetched, seen items dropped, and the rest re-ranked by their exact cosine (`ranking.rank_candidates`); a user
  left with fewer than k unseen candidates is searched again with twice as many.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import scipy.sparse as sp
import torch

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import pairs_to_csr
from tunespace.data.scale import ScaleSplit
from tunespace.errors import TunespaceError, UnknownIdError
from tunespace.evaluation.evaluate import EvaluationResult, hit_matrix
from tunespace.evaluation.metrics import coverage, ranking_metrics
from tunespace.evaluation.ranking import TopK, rank_candidates, top_k
from tunespace.recommenders.knn import profile_means, unit_rows

log = logging.getLogger(__name__)

Retriever = Callable[[np.ndarray, int], np.ndarray]
"""(unit query vectors (B, d) float32, n) -> (B, n) int64 item indices, nearest first, -1 where fewer exist."""


class ScaleEvaluationError(TunespaceError, ValueError):
    """A partitioned evaluation was asked for with settings it cannot run (no users, bad sizes)."""


@dataclass(frozen=True)
class ScaleEvalConfig:
    """ks: cut-offs. user_block: users whose train pairs are read and ranked together (memory grows with it);
    user_chunk x item_chunk: the score block of `top_k`. candidates: items fetched per user from the retriever
    (only used with one)."""

    ks: tuple[int, ...] = (10, 50)
    user_block: int = 8192
    user_chunk: int = 1024
    item_chunk: int = 65536
    candidates: int = 200

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ScaleEvaluationError(f"ks must be positive cut-offs, got {self.ks}")
        for name in ("user_block", "user_chunk", "item_chunk", "candidates"):
            if getattr(self, name) < 1:
                raise ScaleEvaluationError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class ItemSpace:
    """The ranked catalogue: track ids ascending (an item's index is its position) and their vectors."""

    ids: np.ndarray  # (n,) int64, ascending
    vectors: np.ndarray  # (n, d) float32, as embedded
    unit: torch.Tensor  # (n, d) float32, L2-normalised: what scores are cosines of

    @classmethod
    def of(cls, track_ids: np.ndarray, embeddings: ItemEmbeddings) -> ItemSpace:
        """The vectors of `track_ids` (integers) from embeddings whose ids are those integers as strings."""
        ids = np.asarray(track_ids, dtype=np.int64)
        if len(ids) > 1 and not (np.diff(ids) > 0).all():
            raise ScaleEvaluationError("the catalogue's track ids must be distinct and ascending")
        try:
            numeric = embeddings.ids.astype(np.int64)
        except ValueError as error:
            raise UnknownIdError(f"the embeddings' track ids are not integers ({error}); the partitioned log's "
                                 "are") from error
        order = np.argsort(numeric, kind="stable")
        position = np.searchsorted(numeric, ids, sorter=order).clip(max=max(len(numeric) - 1, 0))
        found = order[position]
        missing = numeric[found] != ids
        if missing.any():
            raise UnknownIdError(f"{int(missing.sum())} of {len(ids)} catalogue tracks have no embedding (first: "
                                 f"{ids[int(np.flatnonzero(missing)[0])]})")
        vectors = embeddings.vectors[found]
        return cls(ids, vectors, unit_rows(torch.from_numpy(vectors)))

    def index_of(self, track_ids: np.ndarray, what: str) -> np.ndarray:
        position = np.searchsorted(self.ids, track_ids).clip(max=max(len(self.ids) - 1, 0))
        unknown = self.ids[position] != track_ids
        if unknown.any():
            raise UnknownIdError(f"{int(unknown.sum())} {what} name tracks outside the ranked catalogue (first: "
                                 f"{track_ids[int(np.flatnonzero(unknown)[0])]}); the cold items are not ranked")
        return position


def _train_pairs(train: ds.Dataset, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user, track) of the train events of `users` (ascending), by a scan filtered to their id range."""
    where = (ds.field("user_id") >= int(users[0])) & (ds.field("user_id") <= int(users[-1]))
    table = train.to_table(columns=["user_id", "track_id"], filter=where)
    user = table.column("user_id").to_numpy().astype(np.int64)
    track = table.column("track_id").to_numpy().astype(np.int64)
    keep = np.isin(user, users)
    return user[keep], track[keep]


def knn_user_vectors(seen: sp.csr_matrix, vectors: np.ndarray) -> torch.Tensor:
    """ContentKNN's unit user vectors, by its own functions."""
    return unit_rows(torch.from_numpy(profile_means(seen, vectors)))


def _sorted_member(codes: np.ndarray, sorted_codes: np.ndarray) -> np.ndarray:
    if len(sorted_codes) == 0:
        return np.zeros(codes.shape, dtype=bool)
    position = np.searchsorted(sorted_codes, codes).clip(max=len(sorted_codes) - 1)
    return sorted_codes[position] == codes


def _csr_codes(matrix: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return np.sort(rows * matrix.shape[1] + matrix.indices)


def _rerank(users: torch.Tensor, items: ItemSpace, seen: sp.csr_matrix, relevant: sp.csr_matrix, k: int,
            retriever: Retriever, candidates: int, user_chunk: int) -> TopK:
    """Exact re-ranking of each user's retrieved candidates; users short of k unseen candidates retry with more."""
    n_items = len(items.ids)
    seen_codes, relevant_codes = _csr_codes(seen), _csr_codes(relevant)
    out = TopK(np.full((len(users), k), -1, dtype=np.int64), np.full((len(users), k), -np.inf, dtype=np.float32))
    queries = users.numpy()
    pending, wanted = np.arange(len(users)), min(candidates, n_items)
    while len(pending):
        retry = []
        for c0 in range(0, len(pending), user_chunk):
            rows = pending[c0:c0 + user_chunk]
            columns = np.asarray(retriever(queries[rows], wanted), dtype=np.int64)
            codes = rows[:, None] * n_items + columns
            excluded = _sorted_member(codes, seen_codes) & (columns >= 0)
            short = ((columns >= 0) & ~excluded).sum(axis=1) < np.minimum(k, n_items - np.diff(seen.indptr)[rows])
            if wanted < n_items and short.any():
                retry.append(rows[short])
            gathered = items.unit[torch.from_numpy(columns.clip(min=0))]  # (B, C, d)
            scores = torch.bmm(gathered, users[torch.from_numpy(rows)].unsqueeze(2)).squeeze(2)
            scores[torch.from_numpy(excluded)] = float("-inf")
            demoted = torch.from_numpy(_sorted_member(codes, relevant_codes))
            ranked = rank_candidates(scores, torch.from_numpy(columns), demoted, k)
            out.items[rows], out.scores[rows] = ranked.items, ranked.scores
        pending = np.concatenate(retry) if retry else np.zeros(0, dtype=np.int64)
        wanted = min(2 * wanted, n_items)
    return out


def evaluate_users(train: ds.Dataset, items: ItemSpace, truth: pd.DataFrame, users: np.ndarray,
                   config: ScaleEvalConfig = ScaleEvalConfig(), retriever: Retriever | None = None,
                   progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-user metrics (user_id, n_relevant, metric@k...) and top lists (item indices) of `users` (ascending
    integer ids, each with truth pairs in `truth`: user_id, track_id), block by block."""
    ks = tuple(sorted(set(config.ks)))
    k_max, n_items = max(ks), len(items.ids)
    frames, lists = [], []
    truth_users = truth["user_id"].to_numpy(np.int64)
    truth_items = truth["track_id"].to_numpy(np.int64)
    order = np.argsort(truth_users, kind="stable")
    truth_users, truth_items = truth_users[order], truth_items[order]
    for b0 in range(0, len(users), config.user_block):
        block = users[b0:b0 + config.user_block]
        user, track = _train_pairs(train, block)
        seen = pairs_to_csr(np.searchsorted(block, user), items.index_of(track, "train events"), len(block), n_items)
        lo = np.searchsorted(truth_users, block[0], side="left")
        hi = np.searchsorted(truth_users, block[-1], side="right")
        local = np.searchsorted(block, truth_users[lo:hi])
        mine = block[local] == truth_users[lo:hi]  # users between the block's ids may be left out of it
        relevant = pairs_to_csr(local[mine], items.index_of(truth_items[lo:hi][mine], "truth pairs"), len(block),
                                n_items)
        vectors = knn_user_vectors(seen, items.vectors)
        if retriever is None:
            def score(chosen: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None,
                      vectors: torch.Tensor = vectors) -> torch.Tensor:
                return torch.matmul(vectors[chosen], items.unit[start:stop].T, out=out)

            ranked = top_k(score, np.arange(len(block)), n_items, k_max, exclude=seen, demote=relevant,
                           user_chunk=config.user_chunk, item_chunk=config.item_chunk)
        else:
            ranked = _rerank(vectors, items, seen, relevant, k_max, retriever, config.candidates, config.user_chunk)
        n_relevant = np.diff(relevant.indptr)
        if (n_relevant == 0).any():
            missing = block[int(np.flatnonzero(n_relevant == 0)[0])]
            raise ScaleEvaluationError(f"user {missing} has no truth pair to evaluate")
        hits = hit_matrix(ranked.items, np.arange(len(block)), relevant)
        frame = pd.DataFrame({"user_id": block, "n_relevant": n_relevant})
        frames.append(pd.concat([frame, pd.DataFrame(ranking_metrics(hits, n_relevant, ks))], axis=1))
        lists.append(ranked.items)
        if progress is not None:
            progress(len(block))
    if not frames:
        raise ScaleEvaluationError("no users to evaluate")
    return pd.concat(frames, ignore_index=True), np.concatenate(lists)


def _result(name: str, ks: tuple[int, ...], per_user: pd.DataFrame, lists: np.ndarray, n_items: int
            ) -> EvaluationResult:
    ks = tuple(sorted(set(ks)))
    return EvaluationResult(model=name, ks=ks, per_user=per_user,
                            coverage={f"coverage@{k}": coverage(lists, n_items, k) for k in ks},
                            lists=lists, n_items=n_items)


def _setting(split: ScaleSplit, part: str, users: np.ndarray | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The truth pairs of `part` and the users to evaluate (all of them, or those of `users` among them)."""
    if part not in ("validation", "test"):
        raise ScaleEvaluationError(f"part must be validation or test (the warm pairs), got {part!r}")
    truth = split.part(part)
    evaluated = np.unique(truth["user_id"].to_numpy(np.int64))
    if users is not None:
        evaluated = np.intersect1d(evaluated, np.asarray(users, dtype=np.int64))
    if len(evaluated) == 0:
        raise ScaleEvaluationError(f"no {part} users to evaluate")
    return truth, evaluated


def evaluate_partitioned(split: ScaleSplit, embeddings: ItemEmbeddings | None, part: str = "test",
                         config: ScaleEvalConfig = ScaleEvalConfig(), users: np.ndarray | None = None,
                         retriever: Retriever | None = None, progress: Callable[[int], None] | None = None,
                         items: ItemSpace | None = None) -> EvaluationResult:
    """Content KNN on `split`'s warm `part` by full ranking over the train catalogue (or `retriever`'s candidates),
    in one process. `users` restricts it to those ids; `items` (the train catalogue's `ItemSpace`, built once by a
    caller that also indexes it) replaces `embeddings`."""
    truth, evaluated = _setting(split, part, users)
    if items is None:
        if embeddings is None:
            raise ScaleEvaluationError("give the item embeddings (or the ItemSpace built from them)")
        items = ItemSpace.of(split.items[:split.n_warm_items], embeddings)
    per_user, lists = evaluate_users(split.train(), items, truth, evaluated, config, retriever, progress)
    return _result("knn", config.ks, per_user, lists, len(items.ids))


def _ray_task(folder: str, ids: np.ndarray, vectors: np.ndarray, truth: pd.DataFrame, users: np.ndarray,
              config: ScaleEvalConfig, threads: int) -> tuple[pd.DataFrame, np.ndarray]:
    """One Ray task: the same blocks as `evaluate_partitioned`, over its share of the users."""
    torch.set_num_threads(threads)
    items = ItemSpace(ids, vectors, unit_rows(torch.from_numpy(vectors)))
    return evaluate_users(ScaleSplit.load(folder).train(), items, truth, users, config)


def evaluate_partitioned_ray(split: ScaleSplit, embeddings: ItemEmbeddings, part: str = "test",
                             config: ScaleEvalConfig = ScaleEvalConfig(), users: np.ndarray | None = None,
                             tasks: int = 2, cpus_per_task: int = 1) -> EvaluationResult:
    """`evaluate_partitioned` with the users cut into `tasks` contiguous shares run as Ray tasks (on the cluster
    `ray.init` joins; a local one if none is running). The catalogue goes to the object store once; every task
    reads its own users' train pairs. Per-user metrics are identical to the one-process run."""
    from tunespace.extras import needs_extra

    with needs_extra("distributed"):
        import ray
    if tasks < 1:
        raise ScaleEvaluationError(f"tasks must be at least 1, got {tasks}")
    truth, evaluated = _setting(split, part, users)
    items = ItemSpace.of(split.items[:split.n_warm_items], embeddings)
    if not ray.is_initialized():
        ray.init(num_cpus=max(tasks * cpus_per_task, 1), include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=cpus_per_task)(_ray_task)
    ids_ref, vectors_ref = ray.put(items.ids), ray.put(items.vectors)
    shares = [share for share in np.array_split(evaluated, tasks) if len(share)]
    refs = []
    for share in shares:
        in_share = truth["user_id"].between(int(share[0]), int(share[-1]))
        refs.append(remote.remote(str(split.folder), ids_ref, vectors_ref, truth.loc[in_share], share, config,
                                  cpus_per_task))
    results = ray.get(refs)
    per_user = pd.concat([frame for frame, _ in results], ignore_index=True)
    lists = np.concatenate([found for _, found in results])
    return _result("knn", config.ks, per_user, lists, len(items.ids))

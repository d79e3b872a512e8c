"""Evaluate a fitted recommender on held-out first interactions by full ranking over its whole catalogue."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tunespace.data.interactions import pairs_to_csr
from tunespace.errors import UnknownIdError
from tunespace.evaluation.metrics import PER_USER_METRICS, coverage, ranking_metrics
from tunespace.evaluation.significance import compare_pairs as compare_pair_values
from tunespace.evaluation.significance import compare_to_baseline, confidence_interval
from tunespace.recommenders.base import ExtendedCatalogue, Recommender

DEFAULT_KS = (10, 50)


HEADLINE_METRICS = ("hit_rate", "recall", "ndcg")
"""The metrics result tables show at every cut-off (the per-user files keep all of `PER_USER_METRICS`)."""


def headline_metrics(ks: Iterable[int]) -> list[str]:
    """`hit_rate@k, recall@k, ndcg@k` for every k, smallest k first: the columns of the result tables."""
    return [f"{m}@{k}" for k in sorted(set(int(k) for k in ks)) for m in HEADLINE_METRICS]


def headline_metric(ks: Iterable[int]) -> str:
    """The one metric paired tests are shown for and charts draw: NDCG at the largest cut-off requested."""
    return f"ndcg@{max(int(k) for k in ks)}"


@dataclass
class EvaluationResult:
    """Per-user metric vectors (kept for intervals and paired tests) and catalogue coverage.

    `lists` (users x max k item indices, rows in the order of `per_user`) and `n_items` (the catalogue size) are
    kept by `evaluate` so that `subset` can recompute coverage for a subset of the users; results built by hand
    or by averaging have neither, and their subsets carry NaN coverage.
    """

    model: str
    ks: tuple[int, ...]
    per_user: pd.DataFrame  # user_id, n_relevant, then one column per metric@K
    coverage: dict[str, float]
    lists: np.ndarray | None = field(default=None, repr=False)
    n_items: int | None = None

    @property
    def metric_names(self) -> list[str]:
        return [f"{m}@{k}" for k in self.ks for m in PER_USER_METRICS]

    def subset(self, user_ids: Iterable[str]) -> EvaluationResult:
        """The result restricted to `user_ids` (users not evaluated are ignored), rows in their original order.

        Every per-user metric depends on that user's ranking alone, so this equals evaluating the same fitted model
        on those users only; coverage is recomputed from the kept lists (NaN without them)."""
        keep = self.per_user["user_id"].isin(set(user_ids)).to_numpy()
        per_user = self.per_user.loc[keep].reset_index(drop=True)
        lists = None if self.lists is None else self.lists[keep]
        if lists is not None and self.n_items is not None:
            cover = {f"coverage@{k}": coverage(lists, self.n_items, k) for k in self.ks}
        else:
            cover = {key: float("nan") for key in self.coverage}
        return EvaluationResult(self.model, self.ks, per_user, cover, lists, self.n_items)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """One row per metric: mean and Student-t confidence interval over users."""
        rows = []
        for metric in self.metric_names:
            ci = confidence_interval(self.per_user[metric].to_numpy(), level)
            rows.append({"model": self.model, "metric": metric, "mean": ci.mean, "low": ci.low, "high": ci.high,
                         "users": ci.n})
        rows += [{"model": self.model, "metric": name, "mean": value, "low": np.nan, "high": np.nan,
                  "users": len(self.per_user)} for name, value in self.coverage.items()]
        return pd.DataFrame(rows)


def evaluate(
    model: Recommender | ExtendedCatalogue,
    truth: pd.DataFrame,
    ks: Iterable[int] = DEFAULT_KS,
    exclude_seen: bool = True,
    name: str | None = None,
    users_per_step: int = 8192,
    progress: Callable[[int], None] | None = None,
) -> EvaluationResult:
    """Rank the whole catalogue for every user in `truth` (columns user_id, track_id) and score the lists.

    Every truth user and item must be known to the model: for cold-start evaluation pass
    `model.extended(split.items)`, which ranks the train and the cold items together. Relevant items lose score
    ties.
    """
    ks = tuple(sorted(set(int(k) for k in ks)))
    users_map, items_map = model.users, model.items
    unknown_items = ~items_map.contains(truth["track_id"])
    if unknown_items.any():
        raise UnknownIdError(f"{int(unknown_items.sum())} truth pairs name items outside the model's catalogue "
                             f"(first: {truth['track_id'].iloc[int(np.flatnonzero(unknown_items)[0])]!r}); "
                             "use the cold-item set for those")
    user_idx = users_map.index_of(truth["user_id"])
    item_idx = items_map.index_of(truth["track_id"])
    relevant = pairs_to_csr(user_idx, item_idx, len(users_map), len(items_map))
    evaluated = np.unique(user_idx)
    n_relevant = np.diff(relevant.indptr)[evaluated]
    k_max = max(ks)
    lists = np.empty((len(evaluated), k_max), dtype=np.int64)
    for start in range(0, len(evaluated), users_per_step):
        block = evaluated[start:start + users_per_step]
        lists[start:start + len(block)] = model.recommend(block, k_max, exclude_seen=exclude_seen,
                                                          demote=relevant).items
        if progress is not None:
            progress(len(block))
    hits = hit_matrix(lists, evaluated, relevant)
    per_user = pd.DataFrame({"user_id": users_map.id_of(evaluated), "n_relevant": n_relevant})
    per_user = pd.concat([per_user, pd.DataFrame(ranking_metrics(hits, n_relevant, ks))], axis=1)
    return EvaluationResult(model=name or model.name, ks=ks, per_user=per_user,
                            coverage={f"coverage@{k}": coverage(lists, len(items_map), k) for k in ks},
                            lists=lists, n_items=len(items_map))


def hit_matrix(lists: np.ndarray, users: np.ndarray, relevant) -> np.ndarray:  # noqa: ANN001 - csr
    """hits[r, j] = lists[r, j] is a relevant item of users[r] (padding -1 never hits)."""
    n_items = relevant.shape[1]
    codes = users[:, None] * n_items + lists
    rows = np.repeat(np.arange(relevant.shape[0]), np.diff(relevant.indptr))
    truth_codes = rows.astype(np.int64) * n_items + relevant.indices
    return np.isin(codes, truth_codes) & (lists >= 0)


def _paired_values(results: Mapping[str, EvaluationResult], model: str, baseline: str,
                   metric: str) -> tuple[np.ndarray, np.ndarray]:
    base = results[baseline].per_user.set_index("user_id")[metric]
    frame = results[model].per_user.set_index("user_id")[metric]
    if len(frame) != len(base) or not frame.index.isin(base.index).all():
        raise ValueError(f"{model} was evaluated on other users than {baseline}")
    return frame.loc[base.index].to_numpy(), base.to_numpy()


def compare_pairs(results: Mapping[str, EvaluationResult], pairs: Sequence[tuple[str, str]],
                  metric: str) -> pd.DataFrame:
    """Paired t and Wilcoxon tests of each (model, baseline) pair on `metric`, users matched by id; each test's
    p-values are Holm-corrected over all the pairs together (one family per test)."""
    values = [(model, baseline, *_paired_values(results, model, baseline, metric)) for model, baseline in pairs]
    return pd.DataFrame([vars(c) for c in compare_pair_values(values, metric)],
                        columns=["model", "baseline", "metric", "mean_difference", "t_p", "wilcoxon_p", "t_p_holm",
                                 "wilcoxon_p_holm"])


def compare(results: Mapping[str, EvaluationResult], baseline: str, metric: str) -> pd.DataFrame:
    """Paired t and Wilcoxon tests of every model against `baseline` on `metric`, Holm-corrected per test.

    Users are matched by id, so the results must come from the same truth set.
    """
    base_users = results[baseline].per_user["user_id"].to_numpy()
    per_user = {}
    for model, result in results.items():
        frame = result.per_user.set_index("user_id")
        if len(frame) != len(base_users) or not frame.index.isin(base_users).all():
            raise ValueError(f"{model} was evaluated on other users than {baseline}")
        per_user[model] = frame.loc[base_users, metric].to_numpy()
    return pd.DataFrame([vars(c) for c in compare_to_baseline(per_user, baseline, metric)])

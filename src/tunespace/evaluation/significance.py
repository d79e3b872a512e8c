"""Confidence intervals and paired significance tests over per-user metric values.

Every model is scored once per test user, so two models evaluated on the same users give
paired samples; paired tests remove the between-user variance that unpaired tests would
mistake for noise. Holm's step-down correction keeps the family-wise error rate at the
nominal level when one model is compared with several others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from tunespace.errors import TunespaceError

METHODS = ("t", "wilcoxon")


class SignificanceError(TunespaceError, ValueError):
    """The inputs cannot give a trustworthy interval or test (empty, NaN, mismatched, bad option)."""


@dataclass(frozen=True)
class ConfidenceInterval:
    mean: float
    low: float
    high: float
    n: int
    level: float


@dataclass(frozen=True)
class PairedTest:
    method: str
    statistic: float
    p_value: float
    mean_difference: float
    n: int


@dataclass(frozen=True)
class Comparison:
    model: str
    baseline: str
    metric: str
    mean_difference: float
    t_p: float
    wilcoxon_p: float
    t_p_holm: float
    wilcoxon_p_holm: float


def _as_values(values: np.ndarray, name: str) -> np.ndarray:
    """Return a finite 1-D float array, refusing NaN/inf so they cannot silently skew a mean."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise SignificanceError(f"{name} must be one-dimensional, got shape {arr.shape}")
    n_nan = int(np.isnan(arr).sum())
    if n_nan:
        raise SignificanceError(f"{name} contains {n_nan} NaN value(s) out of {arr.size}")
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise SignificanceError(f"{name} contains {n_inf} infinite value(s) out of {arr.size}")
    return arr


def confidence_interval(values: np.ndarray, level: float = 0.95) -> ConfidenceInterval:
    """Student-t interval of the mean, the honest choice when the variance is estimated.

    With a single value the spread is unknown, so both bounds are NaN rather than a fake
    zero-width interval.
    """
    if not 0.0 < level < 1.0:
        raise SignificanceError(f"level must lie strictly between 0 and 1, got {level}")
    arr = _as_values(values, "values")
    n = arr.size
    if n == 0:
        raise SignificanceError("cannot compute a confidence interval of no values")
    mean = float(arr.mean())
    if n == 1:
        return ConfidenceInterval(mean, float("nan"), float("nan"), 1, level)
    half = float(stats.t.ppf((1.0 + level) / 2.0, n - 1) * arr.std(ddof=1) / np.sqrt(n))
    return ConfidenceInterval(mean, mean - half, mean + half, n, level)


def paired_test(a: np.ndarray, b: np.ndarray, method: str = "t") -> PairedTest:
    """Two-sided paired test of a - b, where a[i] and b[i] belong to the same user.

    Identical inputs give statistic 0 and p-value 1 (scipy would return NaN there). Fewer
    than two users cannot support a test and raise.
    """
    if method not in METHODS:
        raise SignificanceError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    a_arr, b_arr = _as_values(a, "a"), _as_values(b, "b")
    if a_arr.size != b_arr.size:
        raise SignificanceError(
            f"paired inputs must cover the same users: a has {a_arr.size} values, b has {b_arr.size}"
        )
    n = a_arr.size
    if n < 2:
        raise SignificanceError(f"a paired test needs at least 2 users, got {n}")
    diff = a_arr - b_arr
    mean_diff = float(diff.mean())
    if np.all(diff == 0.0):
        return PairedTest(method, 0.0, 1.0, 0.0, n)
    if method == "t":
        res = stats.ttest_rel(a_arr, b_arr, alternative="two-sided")
    else:
        res = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    return PairedTest(method, float(res.statistic), float(res.pvalue), mean_diff, n)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in input order: controls family-wise error without
    assuming independence, and is uniformly more powerful than plain Bonferroni."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise SignificanceError(f"p_values must be one-dimensional, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0.0).any() or (p > 1.0).any():
        raise SignificanceError("p_values must all lie in [0, 1] (no NaN)")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def compare_to_baseline(
    per_user: Mapping[str, np.ndarray], baseline: str, metric: str = ""
) -> list[Comparison]:
    """Test every other model against `baseline` with both paired tests; each method's
    p-values form one Holm family, so the corrected values account for all comparisons."""
    if baseline not in per_user:
        raise SignificanceError(
            f"baseline {baseline!r} not among the models: {', '.join(map(repr, per_user))}"
        )
    base = per_user[baseline]
    return compare_pairs([(name, baseline, values, base) for name, values in per_user.items() if name != baseline],
                         metric)


def compare_pairs(pairs: Sequence[tuple[str, str, np.ndarray, np.ndarray]], metric: str = "") -> list[Comparison]:
    """Test each (model, baseline, model values, baseline values) with both paired tests; each method's p-values
    form one Holm family over all the pairs, whatever their baselines."""
    t_tests = [paired_test(a, b, "t") for _, _, a, b in pairs]
    w_tests = [paired_test(a, b, "wilcoxon") for _, _, a, b in pairs]
    t_holm = holm([r.p_value for r in t_tests])
    w_holm = holm([r.p_value for r in w_tests])
    return [
        Comparison(model, baseline, metric, t.mean_difference, t.p_value, w.p_value, float(th), float(wh))
        for (model, baseline, _, _), t, w, th, wh in zip(pairs, t_tests, w_tests, t_holm, w_holm)
    ]


BOUNDED_METHODS = ("wilson", "bootstrap")


def bounded_interval(values: np.ndarray, low: float = 0.0, high: float = 1.0, level: float = 0.95,
                     method: str = "wilson", resamples: int = 2000, seed: int = 0) -> ConfidenceInterval:
    """Interval of the mean of per-user values that never leaves the metric's range [low, high].

    "wilson": Wilson score interval, for values that are all `low` or `high` (hit rate: 0 or 1 per user).
    "bootstrap": seeded percentile bootstrap over users (resampled means of in-range values stay in range).
    Unlike `confidence_interval` (Student t), a mean near a bound cannot give an interval past it.
    """
    if method not in BOUNDED_METHODS:
        raise SignificanceError(f"unknown method {method!r}; valid methods: {', '.join(BOUNDED_METHODS)}")
    if not 0.0 < level < 1.0:
        raise SignificanceError(f"level must lie strictly between 0 and 1, got {level}")
    if not low < high:
        raise SignificanceError(f"low must be below high, got low={low}, high={high}")
    arr = _as_values(values, "values")
    n = arr.size
    if n == 0:
        raise SignificanceError("cannot compute a confidence interval of no values")
    outside = int(((arr < low) | (arr > high)).sum())
    if outside:
        raise SignificanceError(f"{outside} value(s) lie outside the range [{low}, {high}]")
    mean = float(arr.mean())
    if method == "wilson":
        scaled = (arr - low) / (high - low)
        if not np.all((scaled == 0.0) | (scaled == 1.0)):
            raise SignificanceError(f"the Wilson interval needs values that are all {low} or {high} (a hit or "
                                    "not per user); use method='bootstrap' for other per-user values")
        p, z = float(scaled.mean()), float(stats.norm.ppf((1.0 + level) / 2.0))
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
        lo, hi = max(centre - half, 0.0), min(centre + half, 1.0)
        return ConfidenceInterval(mean, low + lo * (high - low), low + hi * (high - low), n, level)
    if resamples < 1:
        raise SignificanceError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return ConfidenceInterval(mean, float(np.clip(lo, low, high)), float(np.clip(hi, low, high)), n, level)

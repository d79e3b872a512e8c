"""Tests for tunespace.evaluation.significance: known answers and independent re-computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from tunespace.errors import TunespaceError
from tunespace.evaluation.significance import (
    Comparison,
    SignificanceError,
    compare_to_baseline,
    confidence_interval,
    holm,
    paired_test,
)


# ---------------------------------------------------------------- confidence_interval

def test_ci_hand_computed():
    ci = confidence_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975,4} * sd / sqrt(n)
    assert half == pytest.approx(1.9632432, abs=1e-6)
    assert ci.mean == pytest.approx(3.0, abs=1e-12)
    assert ci.low == pytest.approx(3.0 - half, abs=1e-6)
    assert ci.high == pytest.approx(3.0 + half, abs=1e-6)
    assert (ci.n, ci.level) == (5, 0.95)


def test_ci_contains_mean_and_widens_with_level():
    values = np.random.default_rng(0).normal(0.3, 0.1, size=40)
    ci95, ci99 = confidence_interval(values), confidence_interval(values, level=0.99)
    assert ci95.low < ci95.mean < ci95.high
    assert ci99.low < ci95.low and ci99.high > ci95.high


def test_ci_single_value_has_nan_bounds():
    ci = confidence_interval(np.array([0.4]))
    assert ci.mean == 0.4 and ci.n == 1
    assert math.isnan(ci.low) and math.isnan(ci.high)


def test_ci_errors():
    with pytest.raises(SignificanceError):
        confidence_interval(np.array([]))
    with pytest.raises(SignificanceError, match="2 NaN"):
        confidence_interval(np.array([1.0, np.nan, 2.0, np.nan]))
    with pytest.raises(SignificanceError):
        confidence_interval(np.array([1.0, 2.0]), level=1.0)
    assert issubclass(SignificanceError, TunespaceError) and issubclass(SignificanceError, ValueError)


# ---------------------------------------------------------------- paired_test

A = np.array([0.31, 0.42, 0.28, 0.55, 0.47, 0.36, 0.50, 0.29])
B = np.array([0.30, 0.35, 0.30, 0.41, 0.45, 0.30, 0.38, 0.31])


def test_paired_t_matches_hand_computation():
    d = [x - y for x, y in zip(A.tolist(), B.tolist())]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    t = mean / (sd / math.sqrt(n))
    res = paired_test(A, B, "t")
    assert res.statistic == pytest.approx(t, abs=1e-9)
    assert res.p_value == pytest.approx(2 * stats.t.sf(abs(t), n - 1), abs=1e-12)
    assert res.mean_difference == pytest.approx(mean, abs=1e-12)
    assert (res.method, res.n) == ("t", n)


def exact_wilcoxon_p(d: list[float]) -> float:
    """Two-sided exact p by enumerating all 2^n sign flips (no ties, no zeros)."""
    n = len(d)
    rank = {v: r for r, v in enumerate(sorted(abs(x) for x in d), start=1)}
    w_obs = sum(rank[abs(x)] for x in d if x > 0)
    total = n * (n + 1) // 2
    extreme = sum(
        1
        for signs in itertools.product((0, 1), repeat=n)
        if abs(2 * sum(r * s for r, s in zip(range(1, n + 1), signs)) - total)
        >= abs(2 * w_obs - total)
    )
    return extreme / 2**n


@pytest.mark.parametrize(
    "d",
    [
        [0.5, -1.2, 2.3, 0.1, -0.4, 3.3],
        [0.9, 1.7, -0.2, 2.5, 3.1, 0.6, 1.1, -0.05, 4.0, 2.2],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # all positive: p = 2 / 2^7
    ],
)
def test_wilcoxon_matches_exact_enumeration(d):
    res = paired_test(np.array(d), np.zeros(len(d)), "wilcoxon")
    assert res.p_value == pytest.approx(exact_wilcoxon_p(d), abs=1e-9)
    assert res.method == "wilcoxon" and res.n == len(d)


def test_wilcoxon_drops_zero_differences():
    d = [0.5, -1.2, 2.3, 0.1, -0.4, 3.3]
    with_zeros = paired_test(np.array(d + [0.0, 0.0]), np.zeros(8), "wilcoxon")
    assert with_zeros.p_value == pytest.approx(exact_wilcoxon_p(d), abs=1e-9)


@pytest.mark.parametrize("method", ["t", "wilcoxon"])
def test_identical_inputs_give_p_one(method):
    res = paired_test(A, A.copy(), method)
    assert (res.statistic, res.p_value, res.mean_difference) == (0.0, 1.0, 0.0)


def test_paired_errors():
    with pytest.raises(SignificanceError, match="t, wilcoxon"):
        paired_test(A, B, "sign")
    with pytest.raises(SignificanceError, match="8.*7"):
        paired_test(A, B[:7])
    with pytest.raises(SignificanceError, match="1 NaN"):
        paired_test(np.array([1.0, np.nan]), np.array([0.0, 0.0]))
    with pytest.raises(SignificanceError):
        paired_test(np.array([1.0]), np.array([0.0]))


# ---------------------------------------------------------------- holm

def test_holm_known_example():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], atol=1e-12)


def holm_loop(p: list[float]) -> list[float]:
    """Plain re-implementation: walk the sorted p-values, keeping a running maximum."""
    m = len(p)
    out = [0.0] * m
    running = 0.0
    for k, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


@given(st.lists(st.floats(0.0, 1.0), min_size=0, max_size=30))
def test_holm_properties(p):
    adj = holm(p)
    assert adj.shape == (len(p),)
    np.testing.assert_allclose(adj, holm_loop(p), rtol=0, atol=1e-12)
    for i in range(len(p)):
        assert p[i] <= adj[i] <= 1.0
        for j in range(len(p)):
            if p[i] <= p[j]:
                assert adj[i] <= adj[j]


def test_holm_rejects_invalid():
    for bad in ([0.1, float("nan")], [-0.1], [1.5]):
        with pytest.raises(SignificanceError):
            holm(bad)


# ---------------------------------------------------------------- compare_to_baseline

def test_compare_to_baseline():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.4, 30)
    per_user = {"pop": base, "als": base + rng.normal(0.05, 0.02, 30), "knn": base + rng.normal(0, 0.02, 30)}
    out = compare_to_baseline(per_user, "pop", metric="ndcg@50")
    assert [c.model for c in out] == ["als", "knn"]
    assert all(isinstance(c, Comparison) and c.baseline == "pop" and c.metric == "ndcg@50" for c in out)
    t_raw = [paired_test(per_user[m], base, "t").p_value for m in ("als", "knn")]
    w_raw = [paired_test(per_user[m], base, "wilcoxon").p_value for m in ("als", "knn")]
    assert [c.t_p for c in out] == t_raw and [c.wilcoxon_p for c in out] == w_raw
    np.testing.assert_allclose([c.t_p_holm for c in out], holm_loop(t_raw))
    np.testing.assert_allclose([c.wilcoxon_p_holm for c in out], holm_loop(w_raw))
    assert out[0].mean_difference == pytest.approx(float(np.mean(per_user["als"] - base)))


def test_compare_unknown_baseline():
    with pytest.raises(SignificanceError, match="missing"):
        compare_to_baseline({"a": A, "b": B}, "missing")

"""Tests for tunespace.evaluation.metrics: hand-computed values and an independent re-implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.evaluation.metrics import PER_USER_METRICS, coverage, ranking_metrics

# 1 / log2(r + 2) for ranks r = 0..5, written out
D1, D2, D3, D4, D5, D6 = 1.0, 0.6309297535714574, 0.5, 0.43067655807339306, 0.38685280723454163, 0.3562071871080222


def test_discount_constants():
    for rank, value in enumerate([D1, D2, D3, D4, D5, D6]):
        assert value == pytest.approx(1.0 / math.log2(rank + 2), abs=1e-15)


# ---------------------------------------------------------------- independent reference

def reference_metrics(ranked: list[list[int]], relevant: list[set[int]], ks) -> dict[str, list[float]]:
    """Per-user metrics from ranked item lists (-1 = padding) and relevant sets, one user and one rank at a time.

    Written without the hit matrix: walks each list and asks the relevant set directly.
    """
    out: dict[str, list[float]] = {}
    for k in ks:
        columns = {name: [] for name in PER_USER_METRICS}
        for items, rel in zip(ranked, relevant):
            n_rel = len(rel)
            found = 0
            dcg = 0.0
            first_rank = None
            for position in range(k):
                if position >= len(items):
                    break
                item = items[position]
                if item == -1 or item not in rel:
                    continue
                found += 1
                dcg += 1.0 / math.log2(position + 2)
                if first_rank is None:
                    first_rank = position + 1
            ideal = 0.0
            for position in range(min(n_rel, k)):
                ideal += 1.0 / math.log2(position + 2)
            columns["hit_rate"].append(1.0 if found else 0.0)
            columns["recall"].append(found / n_rel)
            columns["recall_capped"].append(found / min(k, n_rel))
            columns["precision"].append(found / k)
            columns["ndcg"].append(dcg / ideal)
            columns["mrr"].append(1.0 / first_rank if first_rank is not None else 0.0)
        for name, values in columns.items():
            out[f"{name}@{k}"] = values
    return out


def hits_of(ranked: list[list[int]], relevant: list[set[int]]) -> np.ndarray:
    return np.array([[item != -1 and item in rel for item in items] for items, rel in zip(ranked, relevant)],
                    dtype=bool).reshape(len(ranked), -1)


def assert_same(got: dict[str, np.ndarray], want: dict[str, list[float]], tol: float = 1e-12) -> None:
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], np.asarray(want[name]), rtol=0, atol=tol, err_msg=name)


# ---------------------------------------------------------------- hand-computed cases

def metric(hits, n_relevant, k, name):
    return ranking_metrics(np.array([hits], dtype=bool), np.array([n_relevant]), [k])[f"{name}@{k}"][0]


HITS = [False, True, False, True, False]  # relevant at ranks 2 and 4, 3 relevant in all


@pytest.mark.parametrize(("k", "expected"), [
    (1, dict(hit_rate=0.0, recall=0.0, recall_capped=0.0, precision=0.0, ndcg=0.0, mrr=0.0)),
    (2, dict(hit_rate=1.0, recall=1 / 3, recall_capped=1 / 2, precision=1 / 2,
             ndcg=D2 / (D1 + D2), mrr=0.5)),
    (3, dict(hit_rate=1.0, recall=1 / 3, recall_capped=1 / 3, precision=1 / 3,
             ndcg=D2 / (D1 + D2 + D3), mrr=0.5)),
    (4, dict(hit_rate=1.0, recall=2 / 3, recall_capped=2 / 3, precision=2 / 4,
             ndcg=(D2 + D4) / (D1 + D2 + D3), mrr=0.5)),
    (5, dict(hit_rate=1.0, recall=2 / 3, recall_capped=2 / 3, precision=2 / 5,
             ndcg=(D2 + D4) / (D1 + D2 + D3), mrr=0.5)),
])
def test_hand_computed_every_metric(k, expected):
    got = ranking_metrics(np.array([HITS]), np.array([3]), [k])
    assert set(got) == {f"{name}@{k}" for name in PER_USER_METRICS}
    for name, value in expected.items():
        assert got[f"{name}@{k}"].shape == (1,)
        assert got[f"{name}@{k}"][0] == pytest.approx(value, abs=1e-12), name


def test_hand_computed_numbers_written_out():
    assert metric(HITS, 3, 1, "hit_rate") == 0.0
    assert metric(HITS, 3, 2, "hit_rate") == 1.0
    assert metric(HITS, 3, 5, "recall") == pytest.approx(0.6666666666666666, abs=1e-15)
    assert metric(HITS, 3, 2, "recall_capped") == 0.5
    assert metric(HITS, 3, 5, "precision") == pytest.approx(0.4, abs=1e-15)
    # (1/log2 3 + 1/log2 5) / (1 + 1/log2 3 + 1/log2 4) = 1.0616063116448506 / 2.1309297535714578
    assert metric(HITS, 3, 5, "ndcg") == pytest.approx(0.49818925746641285, abs=1e-12)
    assert metric(HITS, 3, 5, "mrr") == 0.5


def test_several_users_and_ks_at_once():
    hits = np.array([
        [True, False, False, False],   # 1 relevant, found first
        [False, False, True, False],   # 2 relevant, one at rank 3
        [False, False, False, False],  # nothing found
    ])
    got = ranking_metrics(hits, np.array([1, 2, 4]), (1, 3))
    np.testing.assert_allclose(got["hit_rate@1"], [1, 0, 0], atol=0)
    np.testing.assert_allclose(got["hit_rate@3"], [1, 1, 0], atol=0)
    np.testing.assert_allclose(got["recall@3"], [1, 0.5, 0], atol=1e-15)
    np.testing.assert_allclose(got["recall_capped@3"], [1, 0.5, 0], atol=1e-15)
    np.testing.assert_allclose(got["precision@1"], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(got["precision@3"], [1 / 3, 1 / 3, 0], atol=1e-15)
    np.testing.assert_allclose(got["ndcg@1"], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(got["ndcg@3"], [1, D3 / (D1 + D2), 0], atol=1e-15)
    np.testing.assert_allclose(got["mrr@3"], [1, 1 / 3, 0], atol=1e-15)
    for values in got.values():
        assert values.dtype == np.float64 and values.shape == (3,)


def test_user_without_hits_is_zero_everywhere():
    got = ranking_metrics(np.zeros((1, 5), dtype=bool), np.array([2]), (1, 3, 5, 10))
    assert len(got) == 4 * len(PER_USER_METRICS)
    for name, values in got.items():
        assert values[0] == 0.0, name


def test_k_larger_than_list_length():
    hits = [True, False, True]  # 3 recommendations, 4 relevant
    got = ranking_metrics(np.array([hits]), np.array([4]), (3, 10))
    assert got["recall@10"][0] == pytest.approx(2 / 4, abs=1e-15)
    assert got["recall_capped@10"][0] == pytest.approx(2 / 4, abs=1e-15)  # min(10, 4) = 4
    assert got["precision@10"][0] == pytest.approx(2 / 10, abs=1e-15)  # divided by K, not by the list length
    assert got["hit_rate@10"][0] == 1.0
    assert got["mrr@10"][0] == 1.0
    # ideal DCG over min(4, 10) = 4 hits, even though the list only has 3 entries
    assert got["ndcg@10"][0] == pytest.approx((D1 + D3) / (D1 + D2 + D3 + D4), abs=1e-12)
    assert got["ndcg@3"][0] == pytest.approx((D1 + D3) / (D1 + D2 + D3), abs=1e-12)


def test_n_relevant_larger_than_k():
    hits = [False, True, True, False, False]
    got = ranking_metrics(np.array([hits]), np.array([10]), (2, 3))
    # ideal DCG over min(10, K) = K hits
    assert got["ndcg@2"][0] == pytest.approx(D2 / (D1 + D2), abs=1e-12)
    assert got["ndcg@3"][0] == pytest.approx((D2 + D3) / (D1 + D2 + D3), abs=1e-12)
    assert got["recall@3"][0] == pytest.approx(2 / 10, abs=1e-15)
    assert got["recall_capped@3"][0] == pytest.approx(2 / 3, abs=1e-15)
    assert got["mrr@3"][0] == 0.5


def test_perfect_lists():
    got = ranking_metrics(np.array([[True, True, True, False, False]]), np.array([3]), (1, 2, 3, 5))
    for k in (1, 2, 3, 5):
        assert got[f"ndcg@{k}"][0] == pytest.approx(1.0, abs=1e-12)
        assert got[f"recall_capped@{k}"][0] == pytest.approx(1.0, abs=1e-12)
        assert got[f"hit_rate@{k}"][0] == 1.0
        assert got[f"mrr@{k}"][0] == 1.0
    assert got["recall@2"][0] == pytest.approx(2 / 3, abs=1e-15)
    assert got["recall@5"][0] == pytest.approx(1.0, abs=1e-15)
    assert got["precision@5"][0] == pytest.approx(3 / 5, abs=1e-15)
    # all three hits, but 5 relevant: the list is as good as it can be at 3, not at 5
    short = ranking_metrics(np.array([[True, True, True]]), np.array([5]), (3, 5))
    assert short["ndcg@3"][0] == pytest.approx(1.0, abs=1e-12)
    assert short["recall_capped@3"][0] == pytest.approx(1.0, abs=1e-12)
    assert short["recall@3"][0] == pytest.approx(0.6, abs=1e-15)
    assert short["ndcg@5"][0] == pytest.approx((D1 + D2 + D3) / (D1 + D2 + D3 + D4 + D5), abs=1e-12)
    assert short["recall_capped@5"][0] == pytest.approx(0.6, abs=1e-15)


def test_single_relevant_item_at_each_rank():
    for rank in range(5):
        hits = [r == rank for r in range(5)]
        got = ranking_metrics(np.array([hits]), np.array([1]), (5,))
        assert got["ndcg@5"][0] == pytest.approx([D1, D2, D3, D4, D5][rank], abs=1e-12)
        assert got["mrr@5"][0] == pytest.approx(1 / (rank + 1), abs=1e-15)
        assert got["recall@5"][0] == 1.0 and got["recall_capped@5"][0] == 1.0


def test_empty_user_set_and_empty_ks():
    got = ranking_metrics(np.zeros((0, 4), dtype=bool), np.zeros(0), (1, 5))
    assert all(values.shape == (0,) for values in got.values())
    assert ranking_metrics(np.array([[True]]), np.array([1]), ()) == {}


def test_reference_agrees_on_hand_example():
    ranked = [[7, 3, 9, 4, 1]]
    relevant = [{3, 4, 8}]
    assert hits_of(ranked, relevant).tolist() == [HITS]
    assert_same(ranking_metrics(hits_of(ranked, relevant), np.array([3]), (1, 2, 5, 7)),
                reference_metrics(ranked, relevant, (1, 2, 5, 7)))


# ---------------------------------------------------------------- random agreement with the reference

def random_case(rng: np.random.Generator, n_users: int, n_items: int, length: int):
    ranked, relevant = [], []
    for _ in range(n_users):
        n_real = int(rng.integers(0, length + 1))  # the rest is padding
        items = rng.permutation(n_items)[:n_real].tolist() + [-1] * (length - n_real)
        # relevant sets overlap the list by chance, sometimes heavily
        pool = items[:n_real] if rng.random() < 0.5 and n_real else list(range(n_items))
        size = int(rng.integers(1, min(len(pool), 12) + 1))
        chosen = set(rng.choice(pool, size=size, replace=False).tolist())
        if rng.random() < 0.3:
            chosen |= set(rng.choice(n_items, size=int(rng.integers(1, 6)), replace=False).tolist())
        ranked.append(items)
        relevant.append(chosen)
    return ranked, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    ranked, relevant = random_case(rng, n_users=400, n_items=40, length=10)
    ks = (1, 2, 3, 5, 10, 15, 50)
    n_relevant = np.array([len(r) for r in relevant])
    got = ranking_metrics(hits_of(ranked, relevant), n_relevant, ks)
    assert_same(got, reference_metrics(ranked, relevant, ks))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_reference_hypothesis(data):
    n_items = data.draw(st.integers(1, 12))
    length = data.draw(st.integers(1, 8))
    n_users = data.draw(st.integers(1, 6))
    ranked, relevant = [], []
    for _ in range(n_users):
        items = data.draw(st.lists(st.integers(0, n_items - 1), max_size=length, unique=True))
        ranked.append(items + [-1] * (length - len(items)))
        relevant.append(data.draw(st.sets(st.integers(0, n_items - 1), min_size=1)))
    ks = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=4, unique=True))
    got = ranking_metrics(hits_of(ranked, relevant), np.array([len(r) for r in relevant]), ks)
    assert_same(got, reference_metrics(ranked, relevant, ks))


def test_metrics_are_bounded_and_ordered():
    rng = np.random.default_rng(5)
    ranked, relevant = random_case(rng, n_users=300, n_items=30, length=12)
    got = ranking_metrics(hits_of(ranked, relevant), np.array([len(r) for r in relevant]), (1, 5, 12))
    for values in got.values():
        assert ((values >= 0) & (values <= 1 + 1e-12)).all()
    for k in (1, 5, 12):
        assert (got[f"recall_capped@{k}"] >= got[f"recall@{k}"] - 1e-15).all()
        assert (got[f"hit_rate@{k}"] >= got[f"mrr@{k}"]).all()
    assert (got["hit_rate@12"] >= got["hit_rate@5"]).all() and (got["recall@12"] >= got["recall@5"]).all()
    np.testing.assert_allclose(got["ndcg@1"], got["hit_rate@1"], atol=1e-15)
    np.testing.assert_allclose(got["precision@1"], got["hit_rate@1"], atol=1e-15)


# ---------------------------------------------------------------- coverage

def test_coverage_hand_example():
    items = np.array([
        [0, 1, 2],
        [1, 3, -1],
        [-1, -1, -1],
        [4, 0, 5],
    ])
    assert coverage(items, 10, 1) == pytest.approx(3 / 10)  # {0, 1, 4}; padding is not an item
    assert coverage(items, 10, 2) == pytest.approx(4 / 10)  # {0, 1, 3, 4}
    assert coverage(items, 10, 3) == pytest.approx(6 / 10)  # {0, 1, 2, 3, 4, 5}
    assert coverage(items, 6, 50) == pytest.approx(1.0)
    assert coverage(np.full((3, 4), -1), 10, 4) == 0.0
    assert coverage(np.zeros((0, 4), dtype=np.int64), 5, 4) == 0.0
    assert coverage(np.zeros((2, 0), dtype=np.int64), 0, 3) == 0.0


# ---------------------------------------------------------------- errors

def test_k_below_one_raises():
    with pytest.raises(ValueError, match="K must be at least 1"):
        ranking_metrics(np.array([[True]]), np.array([1]), (0,))
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[True]]), np.array([1]), (5, -1))


def test_user_without_relevant_items_raises():
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(np.array([[False, False], [True, False]]), np.array([0, 1]), (1,))


def test_more_hits_than_relevant_raises():
    with pytest.raises(ValueError, match="more hits than relevant"):
        ranking_metrics(np.array([[True, True, False]]), np.array([1]), (1,))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[True], [False]]), np.array([1]), (1,))
    with pytest.raises(ValueError):
        ranking_metrics(np.array([True, False]), np.array([1]), (1,))

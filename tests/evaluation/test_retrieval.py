"""Tests for tunespace.evaluation.retrieval: hand-computed metrics, pessimistic ties, chunking, groups, chance levels.

Similarities are set exactly by using the wanted score matrix as queries and the identity as targets, so
`queries @ targets.T` is the score matrix bit for bit; scores are binary fractions, so ties are real ties.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.errors import TunespaceError
from tunespace.evaluation import retrieval
from tunespace.evaluation.retrieval import (
    RetrievalError,
    audio_to_text,
    metrics_from_ranks,
    relevance_matrix,
    retrieval_chance,
    retrieval_metrics,
    retrieval_per_query,
    text_to_audio,
)


def scored(scores) -> tuple[np.ndarray, np.ndarray]:
    """(queries, targets) whose dot products are exactly `scores`."""
    scores = np.asarray(scores, dtype=np.float32)
    return scores, np.eye(scores.shape[1], dtype=np.float32)


# ---------------------------------------------------------------- independent reference

def reference(scores: np.ndarray, relevant: list[set[int]], ks, map_k: int) -> dict[str, list[float]]:
    """Per-query metrics by sorting every row with an explicit key: higher score first, then irrelevant before
    relevant (ties never favour the ground truth), then lower index; then walking the ranked list."""
    out: dict[str, list[float]] = {name: [] for name in [*(f"R@{k}" for k in ks), "rank", "MRR", f"mAP@{map_k}"]}
    for row, rel in zip(scores, relevant):
        ranked = sorted(range(len(row)), key=lambda j: (-float(row[j]), j in rel, j))
        hits = [j in rel for j in ranked]
        first = hits.index(True) + 1
        for k in ks:
            out[f"R@{k}"].append(float(first <= k))
        out["rank"].append(float(first))
        out["MRR"].append(1.0 / first)
        found, total = 0, 0.0
        for position, hit in enumerate(hits[:map_k], start=1):
            if hit:
                found += 1
                total += found / position
        out[f"mAP@{map_k}"].append(total / min(len(rel), map_k))
    return out


def relevant_sets(matrix: sp.csr_matrix) -> list[set[int]]:
    return [set(matrix.indices[matrix.indptr[i]:matrix.indptr[i + 1]].tolist()) for i in range(matrix.shape[0])]


def tied_problem(seed: int, n: int, m: int, d: int = 3, max_relevant: int = 4):
    """Integer embeddings (exact dot products, many ties) and a random relevance with 1..max_relevant per query."""
    rng = np.random.default_rng(seed)
    queries = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    targets = rng.integers(-2, 3, size=(m, d)).astype(np.float32)
    dense = np.zeros((n, m), dtype=bool)
    for i in range(n):
        dense[i, rng.choice(m, size=rng.integers(1, min(max_relevant, m) + 1), replace=False)] = True
    return queries, targets, dense


# ---------------------------------------------------------------- hand-computed

PAIRED = [[0.875, 0.125, 0.5],  # target 0 first: rank 1
          [0.75, 0.25, 0.5],  # target 1 below 0.75 and 0.5: rank 3
          [0.25, 0.75, 0.625]]  # target 2 below 0.75: rank 2


def test_paired_hand_computed():
    per_query = retrieval_per_query(*scored(PAIRED), ks=(1, 2, 5))
    assert per_query["rank"].tolist() == [1.0, 3.0, 2.0]
    assert per_query["R@1"].tolist() == [1.0, 0.0, 0.0]
    assert per_query["R@2"].tolist() == [1.0, 0.0, 1.0]
    assert per_query["MRR"] == pytest.approx([1.0, 1 / 3, 1 / 2])
    assert per_query["mAP@10"] == pytest.approx([1.0, 1 / 3, 1 / 2])  # one relevant: AP is 1/rank within k
    summary = retrieval_metrics(*scored(PAIRED), ks=(1, 2, 5))
    assert summary == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@5": 1.0, "MRR": 11 / 18, "mAP@10": 11 / 18,
                                     "median_rank": 2.0, "mean_rank": 2.0})


def test_default_metric_names():
    assert set(retrieval_metrics(*scored(PAIRED))) == {"R@1", "R@5", "R@10", "MRR", "mAP@10", "median_rank",
                                                       "mean_rank"}


def test_map_with_several_relevant_hand_computed():
    row = np.arange(12, 0, -1) / 16  # strictly decreasing: target j has rank j + 1
    relevance = np.zeros((1, 12), dtype=bool)
    relevance[0, [0, 2, 11]] = True  # ranks 1, 3, 12
    per_query = retrieval_per_query(*scored([row]), relevance=relevance)
    assert per_query["mAP@10"] == pytest.approx([(1 / 1 + 2 / 3) / 3])  # rank 12 is beyond k=10 and adds nothing
    assert per_query["rank"].tolist() == [1.0]
    # fewer slots than relevant targets: normalised by k, so filling the first k slots scores 1
    relevance[0, 1] = True  # ranks 1, 2, 3, 12
    assert retrieval_per_query(*scored([row]), relevance=relevance, map_k=2)["mAP@2"] == pytest.approx([1.0])
    assert retrieval_per_query(*scored([row]), relevance=relevance, map_k=3)["mAP@3"] == pytest.approx([1.0])
    assert retrieval_per_query(*scored([row]), relevance=relevance, map_k=12)["mAP@12"] == pytest.approx(
        [(1 + 1 + 1 + 4 / 12) / 4])


def test_metrics_from_ranks_hand_computed():
    # query 0: relevant at ranks 4 and 2 (CSR order need not be rank order); query 1: one relevant at rank 7
    out = metrics_from_ranks(np.array([4, 2, 7]), np.array([0, 2, 3]), ks=(1, 2, 7), map_k=5)
    assert out["rank"].tolist() == [2.0, 7.0]
    assert out["R@1"].tolist() == [0.0, 0.0]
    assert out["R@2"].tolist() == [1.0, 0.0]
    assert out["R@7"].tolist() == [1.0, 1.0]
    assert out["MRR"] == pytest.approx([0.5, 1 / 7])
    assert out["mAP@5"] == pytest.approx([(1 / 2 + 2 / 4) / 2, 0.0])


# ---------------------------------------------------------------- ties

def test_all_equal_scores_give_the_worst_rank():
    queries, targets = np.ones((5, 4), dtype=np.float32), np.ones((5, 4), dtype=np.float32)
    per_query = retrieval_per_query(queries, targets)
    assert per_query["rank"].tolist() == [5.0] * 5
    summary = retrieval_metrics(queries, targets)
    assert summary["R@1"] == 0.0 and summary["R@5"] == 1.0
    assert summary["MRR"] == pytest.approx(0.2) and summary["median_rank"] == 5.0


def test_relevant_loses_ties_to_irrelevant_and_tied_relevant_share_no_rank():
    relevance = np.array([[True, False, True, False]])
    per_query = retrieval_per_query(*scored([[0.5, 0.5, 0.5, 0.25]]), relevance=relevance)
    # the tied irrelevant target 1 goes first; the two tied relevant targets take ranks 2 and 3
    assert per_query["rank"].tolist() == [2.0]
    assert per_query["R@1"].tolist() == [0.0]
    assert per_query["mAP@10"] == pytest.approx([(1 / 2 + 2 / 3) / 2])


def test_negative_zero_ties_with_zero(monkeypatch):
    # a matmul rarely yields -0.0, but if it does it must tie with 0.0 in both counting paths and in tie-breaking
    torch = pytest.importorskip("torch")
    scores, values = torch.tensor([[-0.0, 0.0]]), torch.tensor([[0.0, -0.0]])
    assert retrieval._count_at_least(scores, values).tolist() == [[2, 2]]
    monkeypatch.setattr(retrieval, "_COMPARE_SLOTS", 0)
    assert retrieval._count_at_least(scores, values).tolist() == [[2, 2]]
    later = retrieval._later_ties(np.array([0, 0]), np.array([0, 1]), np.array([-0.0, 0.0], dtype=np.float32))
    assert later.tolist() == [1, 0]


# ---------------------------------------------------------------- groups and relevance

def test_audio_to_text_with_several_captions_per_track():
    audio_by_text = np.array([[0.5, 0.125, 0.75, 0.25],  # track 0, captions 0 and 1: ranks 2 and 4
                              [0.5, 0.25, 0.125, 0.75]], dtype=np.float32)  # track 1, captions 2, 3: ranks 4, 1
    groups = np.array([0, 0, 1, 1])
    summary = audio_to_text(audio_by_text, np.eye(4, dtype=np.float32), groups=groups)
    assert summary == pytest.approx({"R@1": 0.5, "R@5": 1.0, "R@10": 1.0, "MRR": 0.75,
                                     "mAP@10": ((1 / 2 + 2 / 4) / 2 + (1 + 2 / 4) / 2) / 2,
                                     "median_rank": 1.5, "mean_rank": 1.5})


def test_text_to_audio_with_several_captions_per_track():
    audio_by_text = np.array([[0.5, 0.125, 0.75, 0.25], [0.5, 0.25, 0.125, 0.75]], dtype=np.float32)
    groups = np.array([0, 0, 1, 1])
    # text x audio scores are the transpose: caption 0 ties (loses), 1 and 2 rank second, 3 ranks first
    summary = text_to_audio(np.eye(4, dtype=np.float32), audio_by_text, groups=groups)
    assert summary["R@1"] == 0.25
    assert summary["MRR"] == pytest.approx(0.625)
    assert summary["median_rank"] == 2.0 and summary["mean_rank"] == 1.75


def test_groups_and_explicit_relevance_agree():
    queries, targets, _ = tied_problem(seed=3, n=9, m=4)
    groups = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3])
    dense = groups[:, None] == np.arange(4)[None, :]
    assert retrieval_metrics(queries, targets, query_groups=groups) == retrieval_metrics(
        queries, targets, relevance=dense)
    assert retrieval_metrics(queries, targets, query_groups=groups) == retrieval_metrics(
        queries, targets, relevance=sp.csr_matrix(dense))


def test_relevance_matrix_from_labels_on_both_sides():
    matrix = relevance_matrix(3, 4, query_groups=np.array(["rock", "jazz", "folk"]),
                              target_groups=np.array(["jazz", "rock", "jazz", "rock"]))
    assert matrix.toarray().tolist() == [[False, True, False, True], [True, False, True, False],
                                         [False, False, False, False]]
    assert relevance_matrix(2, 2).toarray().tolist() == [[True, False], [False, True]]


# ---------------------------------------------------------------- chunking and the reference

@pytest.mark.parametrize("query_chunk", [1, 3, 7, 100])
def test_chunked_equals_unchunked_and_reference(query_chunk):
    queries, targets, dense = tied_problem(seed=1, n=23, m=17, max_relevant=5)
    whole = retrieval_per_query(queries, targets, relevance=dense, ks=(1, 3, 5))
    chunked = retrieval_per_query(queries, targets, relevance=dense, ks=(1, 3, 5), query_chunk=query_chunk)
    expected = reference(queries @ targets.T, relevant_sets(sp.csr_matrix(dense)), (1, 3, 5), 10)
    for name, values in whole.items():
        np.testing.assert_array_equal(chunked[name], values)
        np.testing.assert_allclose(values, expected[name], rtol=1e-12)


def test_many_relevant_per_query_takes_the_sorting_path(monkeypatch):
    queries, targets, dense = tied_problem(seed=2, n=11, m=40, max_relevant=30)
    assert dense.sum(axis=1).max() > retrieval._COMPARE_SLOTS
    by_mixed = retrieval_per_query(queries, targets, relevance=dense, query_chunk=4)
    monkeypatch.setattr(retrieval, "_COMPARE_SLOTS", 0)  # every chunk sorts
    by_sorting = retrieval_per_query(queries, targets, relevance=dense, query_chunk=4)
    expected = reference(queries @ targets.T, relevant_sets(sp.csr_matrix(dense)), (1, 5, 10), 10)
    for name, values in by_sorting.items():
        np.testing.assert_array_equal(values, by_mixed[name])
        np.testing.assert_allclose(values, expected[name], rtol=1e-12)


def test_torch_inputs_are_accepted():
    torch = pytest.importorskip("torch")
    queries, targets = scored(PAIRED)
    assert retrieval_metrics(torch.from_numpy(queries), torch.from_numpy(targets)) == retrieval_metrics(
        queries, targets)


# ---------------------------------------------------------------- chance

def test_chance_hand_computed_one_relevant():
    harmonic = sum(1 / j for j in range(1, 11))
    chance = retrieval_chance(10)
    assert chance == pytest.approx({"R@1": 0.1, "R@5": 0.5, "R@10": 1.0, "MRR": harmonic / 10,
                                    "mAP@10": harmonic / 10, "mean_rank": 5.5, "median_rank": 5.5})
    assert retrieval_chance(9)["median_rank"] == 5.0
    assert retrieval_chance(1) == pytest.approx({"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "MRR": 1.0, "mAP@10": 1.0,
                                                 "mean_rank": 1.0, "median_rank": 1.0})


def test_chance_hand_computed_two_relevant():
    chance = retrieval_chance(10, n_relevant=2, ks=(1, 5))
    assert chance["R@1"] == pytest.approx(0.2)
    assert chance["R@5"] == pytest.approx(1 - math.comb(8, 5) / math.comb(10, 5))
    assert chance["mean_rank"] == pytest.approx(11 / 3)
    # P(first = j) = (10 - j) / 45; the CDF passes 1/2 between ranks 3 (24/45) and 2 (17/45)
    assert chance["median_rank"] == 3.0
    assert chance["MRR"] == pytest.approx(sum((10 - j) / 45 / j for j in range(1, 10)))


def test_chance_matches_monte_carlo():
    rng = np.random.default_rng(12345)
    m, trials = 30, 20000
    n_relevant = rng.choice([1, 3, 5], size=trials)
    ranks = rng.random((trials, m)).argsort(axis=1).argsort(axis=1) + 1  # a uniformly random rank per target
    first = np.array([ranks[i, :r].min() for i, r in enumerate(n_relevant)])
    ap = []
    for i, r in enumerate(n_relevant):
        ordered = np.sort(ranks[i, :r])
        ap.append(sum((p + 1) / rank for p, rank in enumerate(ordered) if rank <= 10) / min(r, 10))
    simulated = {"R@1": np.mean(first <= 1), "R@5": np.mean(first <= 5), "R@10": np.mean(first <= 10),
                 "MRR": np.mean(1 / first), "mAP@10": np.mean(ap), "mean_rank": first.mean(),
                 "median_rank": np.median(first)}
    chance = retrieval_chance(m, n_relevant)
    for name in ("R@1", "R@5", "R@10", "MRR", "mAP@10"):
        assert chance[name] == pytest.approx(simulated[name], abs=0.015), name
    assert chance["mean_rank"] == pytest.approx(simulated["mean_rank"], abs=0.3)
    assert chance["median_rank"] == pytest.approx(simulated["median_rank"], abs=1.0)


def test_chance_of_random_embeddings():
    rng = np.random.default_rng(7)
    queries, targets = rng.normal(size=(3000, 32)), rng.normal(size=(60, 32))
    relevance = rng.random((3000, 60)) < 0.02
    relevance[np.arange(3000), rng.integers(0, 60, 3000)] = True
    measured = retrieval_metrics(queries, targets, relevance=relevance)
    chance = retrieval_chance(60, relevance.sum(axis=1))
    assert measured["R@10"] == pytest.approx(chance["R@10"], abs=0.05)
    assert measured["mean_rank"] == pytest.approx(chance["mean_rank"], rel=0.1)


# ---------------------------------------------------------------- errors

def test_errors_are_named_and_say_what_is_wrong():
    queries, targets = scored(PAIRED)
    with pytest.raises(RetrievalError, match=r"dimension 3 .* 2"):
        retrieval_metrics(queries, targets[:, :2])
    with pytest.raises(RetrievalError, match="no relevant target"):
        retrieval_metrics(queries, targets[:2])  # three queries, two targets, paired by default
    with pytest.raises(RetrievalError, match=r"relevance has shape \(2, 2\)"):
        retrieval_metrics(queries, targets, relevance=np.eye(2, dtype=bool))
    with pytest.raises(RetrievalError, match="NaN"):
        retrieval_metrics(np.full((3, 3), np.nan), targets)
    with pytest.raises(RetrievalError, match="2-D"):
        retrieval_metrics(np.ones(3), targets)
    with pytest.raises(RetrievalError, match="query_chunk"):
        retrieval_metrics(queries, targets, query_chunk=0)
    with pytest.raises(RetrievalError, match="not both"):
        retrieval_metrics(queries, targets, relevance=np.eye(3, dtype=bool), query_groups=np.arange(3))
    with pytest.raises(RetrievalError, match="query_groups"):
        retrieval_metrics(queries, targets, query_groups=np.arange(4))
    with pytest.raises(RetrievalError):
        retrieval_chance(5, n_relevant=6)
    with pytest.raises(TunespaceError, match="at least 1"):
        retrieval_metrics(queries, targets, ks=(0,))
    with pytest.raises(RetrievalError, match="at least 1"):
        retrieval_chance(5, map_k=0)
    with pytest.raises(RetrievalError, match="non-empty runs"):
        metrics_from_ranks(np.array([1, 2]), np.array([0, 0, 2]))


# ---------------------------------------------------------------- properties

@st.composite
def problems(draw):
    n, m = draw(st.integers(1, 8)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    queries, targets, dense = tied_problem(seed, n, m, d=draw(st.integers(1, 3)), max_relevant=m)
    return queries, targets, dense, draw(st.integers(1, 10)), seed


@settings(max_examples=60, deadline=None)
@given(problems())
def test_properties(problem):
    queries, targets, dense, chunk, seed = problem
    m = targets.shape[0]
    ks = tuple(range(1, m + 2))
    per_query = retrieval_per_query(queries, targets, relevance=dense, ks=ks, query_chunk=chunk)
    recalls = np.stack([per_query[f"R@{k}"] for k in ks], axis=1)
    assert (np.diff(recalls, axis=1) >= 0).all()  # R@k never drops as k grows
    assert (recalls[:, -1] == 1.0).all()
    for name in ("MRR", "mAP@10", *(f"R@{k}" for k in ks)):
        assert ((per_query[name] >= 0) & (per_query[name] <= 1)).all()
    assert ((per_query["rank"] >= 1) & (per_query["rank"] <= m)).all()
    expected = reference(queries @ targets.T, relevant_sets(sp.csr_matrix(dense)), ks, 10)
    for name, values in per_query.items():
        np.testing.assert_allclose(values, expected[name], rtol=1e-12)
    # relabelling the targets (with their relevance) changes nothing, ties included
    permutation = np.random.default_rng(seed).permutation(m)
    permuted = retrieval_per_query(queries, targets[permutation], relevance=dense[:, permutation], ks=ks)
    for name, values in per_query.items():
        np.testing.assert_array_equal(permuted[name], values)

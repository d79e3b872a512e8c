"""Tests for tunespace.evaluation.tagging: ROC-AUC and average precision against hand-computed values and against
independent brute-force versions (pairwise counting, an explicit walk over thresholds), ties included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.evaluation.tagging import (
    TaggingError,
    average_precision,
    roc_auc,
    tagging_metrics,
    zero_shot_tagging,
)

# ---------------------------------------------------------------- independent references


def pairwise_auc(scores, labels) -> float:
    """Share of (positive, negative) pairs ordered correctly, a tie counting half."""
    positives = [s for s, y in zip(scores, labels) if y]
    negatives = [s for s, y in zip(scores, labels) if not y]
    if not positives or not negatives:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def threshold_ap(scores, labels) -> float:
    """Walk the distinct thresholds from high to low; add recall gained times precision at each."""
    total = sum(bool(y) for y in labels)
    if total == 0 or total == len(labels):
        return float("nan")
    ap, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        selected = [y for s, y in zip(scores, labels) if s >= threshold]
        true_positives = sum(bool(y) for y in selected)
        recall = true_positives / total
        ap += (recall - previous_recall) * true_positives / len(selected)
        previous_recall = recall
    return ap


def tied_scores(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(0, 6, size=shape) / 4.0  # six levels: ties everywhere


# ---------------------------------------------------------------- hand-computed

def test_hand_computed_small_case():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert roc_auc(scores, labels) == pytest.approx(0.75)  # 3 of 4 pairs right
    assert average_precision(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_hand_computed_ties():
    # all tied: one threshold, precision 2/3 at recall 1; every pair tied
    assert roc_auc([1, 1, 1], [0, 1, 1]) == pytest.approx(0.5)
    assert average_precision([1, 1, 1], [0, 1, 1]) == pytest.approx(2 / 3)
    # 0.9(-) 0.5(+) 0.5(-) 0.1(+): pairs 0, 1/2, 0, 0; thresholds give (recall 1/2, precision 1/3), (1, 2/4)
    assert roc_auc([0.9, 0.5, 0.5, 0.1], [0, 1, 0, 1]) == pytest.approx(0.125)
    assert average_precision([0.9, 0.5, 0.5, 0.1], [0, 1, 0, 1]) == pytest.approx(0.5 / 3 + 0.5 * 0.5)


def test_perfect_and_reversed():
    assert roc_auc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert average_precision([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert average_precision([0, 1, 2, 3], [1, 1, 0, 0]) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_one_class_gives_nan():
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))


# ---------------------------------------------------------------- against the references

@pytest.mark.parametrize("seed", range(5))
def test_matches_references_on_random_tied_data(seed):
    rng = np.random.default_rng(seed)
    scores = tied_scores(rng, (40, 6))
    truth = rng.random((40, 6)) < rng.uniform(0.05, 0.6, size=6)
    truth[:, 0] = False  # no positives
    truth[:, 1] = True  # no negatives
    result = tagging_metrics(scores, truth, tags=[f"tag{i}" for i in range(6)])
    expected_auc = np.array([pairwise_auc(scores[:, t], truth[:, t]) for t in range(6)])
    expected_ap = np.array([threshold_ap(scores[:, t].tolist(), truth[:, t]) for t in range(6)])
    np.testing.assert_allclose(result.roc_auc, expected_auc, rtol=1e-12)
    np.testing.assert_allclose(result.pr_auc, expected_ap, rtol=1e-12)
    evaluated = ~np.isnan(expected_auc)
    assert result.skipped == ("tag0", "tag1") + tuple(f"tag{t}" for t in range(2, 6) if not evaluated[t])
    assert result.macro_roc_auc == pytest.approx(expected_auc[evaluated].mean())
    assert result.macro_pr_auc == pytest.approx(expected_ap[evaluated].mean())
    # micro pools every cell, skipped tags included
    assert result.micro_roc_auc == pytest.approx(pairwise_auc(scores.ravel(), truth.ravel()))
    assert result.micro_pr_auc == pytest.approx(threshold_ap(scores.ravel().tolist(), truth.ravel()))
    frame = result.per_tag()
    assert frame["tag"].tolist() == list(result.tags)
    assert frame["positives"].tolist() == truth.sum(axis=0).tolist()


def test_zero_shot_tagging_scores_by_cosine():
    rng = np.random.default_rng(4)
    tracks = rng.normal(size=(30, 8))
    tracks /= np.linalg.norm(tracks, axis=1, keepdims=True)
    prompts = rng.normal(size=(3, 8))
    prompts /= np.linalg.norm(prompts, axis=1, keepdims=True)
    truth = rng.random((30, 3)) < 0.3
    result = zero_shot_tagging(tracks, prompts, truth, tags=["rock", "jazz", "folk"])
    cosine = np.array([[t @ p / np.linalg.norm(t) / np.linalg.norm(p) for p in prompts] for t in tracks])
    expected = [pairwise_auc(cosine[:, j], truth[:, j]) for j in range(3)]
    np.testing.assert_allclose(result.roc_auc, expected, rtol=1e-9)
    assert set(result.summary()) == {"macro_roc_auc", "macro_pr_auc", "micro_roc_auc", "micro_pr_auc"}


def test_tags_found_by_their_prompts_score_one():
    prompts = np.eye(3)
    tracks = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]])
    truth = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    result = zero_shot_tagging(tracks, prompts, truth)
    assert result.roc_auc.tolist() == [1.0, 1.0, 1.0]
    assert result.pr_auc.tolist() == [1.0, 1.0, 1.0]
    assert result.tags == ("0", "1", "2") and result.skipped == ()


# ---------------------------------------------------------------- errors

def test_errors():
    with pytest.raises(TaggingError, match=r"truth has shape \(3, 2\), expected \(3, 3\)"):
        tagging_metrics(np.zeros((3, 3)), np.zeros((3, 2)))
    with pytest.raises(TaggingError, match="binary"):
        tagging_metrics(np.zeros((3, 1)), np.array([[0], [2], [1]]))
    with pytest.raises(TaggingError, match="NaN"):
        tagging_metrics(np.array([[np.nan], [0.0]]), np.array([[0], [1]]))
    with pytest.raises(TaggingError, match="nothing can be evaluated"):
        tagging_metrics(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(TaggingError, match="tag names"):
        tagging_metrics(np.zeros((2, 2)), np.array([[0, 1], [1, 0]]), tags=["only one"])
    with pytest.raises(TaggingError, match=r"tracks .*\(4, 3\).*prompts \(2, 5\)"):
        zero_shot_tagging(np.zeros((4, 3)), np.zeros((2, 5)), np.zeros((4, 2)))
    with pytest.raises(TaggingError, match="1-D"):
        roc_auc(np.zeros((2, 2)), np.zeros((2, 2)))


# ---------------------------------------------------------------- properties

@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=25))
def test_properties(pairs):
    scores = np.array([s for s, _ in pairs], dtype=float) / 4
    labels = np.array([y for _, y in pairs])
    auc, ap = roc_auc(scores, labels), average_precision(scores, labels)
    if labels.all() or not labels.any():
        assert np.isnan(auc) and np.isnan(ap)
        return
    assert 0.0 <= auc <= 1.0 and 0.0 < ap <= 1.0
    assert auc == pytest.approx(pairwise_auc(scores, labels))
    assert ap == pytest.approx(threshold_ap(scores.tolist(), labels))
    assert roc_auc(-scores, labels) == pytest.approx(1.0 - auc)  # flipping the order flips the AUC
    assert average_precision(np.exp(3 * scores), labels) == pytest.approx(ap)  # only the order matters

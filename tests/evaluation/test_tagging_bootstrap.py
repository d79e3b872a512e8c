"""Tests for tunespace.evaluation.tagging.bootstrap_tagging: a model compared with itself has difference 0 and
p = 1; the intervals hold the point estimates of `tagging_metrics`; a near-perfect model beats random scores with
p < 0.01; tags without both classes are ignored; the seed fixes the output; and every figure matches a reference
recomputed here from `tagging_metrics` on the same resamples (this pins the implementation's draws,
`numpy.random.default_rng(seed).integers(0, n_tracks, (resamples, n_tracks))`), the p-value being
2 * (1 + min(#d <= 0, #d >= 0)) / (B + 1) capped at 1."""

from __future__ import annotations

import numpy as np
import pytest

from tunespace.evaluation.tagging import TaggingError, bootstrap_tagging, tagging_metrics

N_TRACKS, N_TAGS = 80, 4
RESAMPLES = 300


def tagged_tracks(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth (N_TRACKS, N_TAGS), an informative model (truth plus noise, imperfect) and a random model."""
    rng = np.random.default_rng(seed)
    truth = rng.random((N_TRACKS, N_TAGS)) < 0.3
    informative = truth + rng.normal(0.0, 0.6, (N_TRACKS, N_TAGS))
    return truth, informative, rng.random((N_TRACKS, N_TAGS))


def reference_bootstrap(scores: np.ndarray, truth: np.ndarray, other: np.ndarray, resamples: int,
                        seed: int) -> dict[str, float]:
    """The bootstrap written from its definition with `tagging_metrics` on each resample of tracks (macro averages
    over the tags with both classes in that resample)."""
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
    out = {}
    for name in ("macro_roc_auc", "macro_pr_auc"):
        mine = np.array([getattr(tagging_metrics(scores[d], truth[d]), name) for d in draws])
        theirs = np.array([getattr(tagging_metrics(other[d], truth[d]), name) for d in draws])
        difference = mine - theirs
        out[f"{name}_low"], out[f"{name}_high"] = np.quantile(mine, [0.025, 0.975])
        out[f"{name}_difference"] = (getattr(tagging_metrics(scores, truth), name)
                                     - getattr(tagging_metrics(other, truth), name))
        out[f"{name}_difference_low"], out[f"{name}_difference_high"] = np.quantile(difference, [0.025, 0.975])
        far_side = min(np.sum(difference <= 0), np.sum(difference >= 0))
        out[f"{name}_p"] = min(1.0, 2 * (1 + far_side) / (resamples + 1))
    return out


def test_matches_reference_computed_from_tagging_metrics():
    truth, informative, _ = tagged_tracks(seed=1)
    # a weaker second model, so the difference is neither 0 nor always of one sign
    weaker = informative + np.random.default_rng(2).normal(0.0, 0.1, informative.shape)
    result = bootstrap_tagging(informative, truth, resamples=200, seed=7, other=weaker)
    expected = reference_bootstrap(informative, truth, weaker, resamples=200, seed=7)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    for name in ("macro_roc_auc", "macro_pr_auc"):  # a case where the p-value formula is not at a bound
        assert 0.05 < result[f"{name}_p"] < 1.0


def test_without_other_only_intervals_are_reported():
    truth, informative, _ = tagged_tracks()
    result = bootstrap_tagging(informative, truth, resamples=50, seed=0)
    assert set(result) == {"macro_roc_auc_low", "macro_roc_auc_high", "macro_pr_auc_low", "macro_pr_auc_high"}


def test_intervals_contain_the_point_estimates():
    truth, informative, _ = tagged_tracks(seed=3)
    point = tagging_metrics(informative, truth)
    result = bootstrap_tagging(informative, truth, resamples=RESAMPLES, seed=0)
    assert result["macro_roc_auc_low"] < point.macro_roc_auc < result["macro_roc_auc_high"]
    assert result["macro_pr_auc_low"] < point.macro_pr_auc < result["macro_pr_auc_high"]
    assert result["macro_roc_auc_high"] - result["macro_roc_auc_low"] < 0.3  # 80 tracks: informative, not vacuous


def test_model_against_itself_has_zero_difference_and_p_one():
    truth, informative, _ = tagged_tracks()
    result = bootstrap_tagging(informative, truth, resamples=RESAMPLES, seed=0, other=informative.copy())
    for name in ("macro_roc_auc", "macro_pr_auc"):
        assert result[f"{name}_difference"] == 0.0
        assert result[f"{name}_difference_low"] == 0.0
        assert result[f"{name}_difference_high"] == 0.0
        assert result[f"{name}_p"] == 1.0


def test_near_perfect_model_beats_random_scores():
    truth, _, random_scores = tagged_tracks(seed=4)
    near_perfect = truth + np.random.default_rng(5).normal(0.0, 0.05, truth.shape)
    result = bootstrap_tagging(near_perfect, truth, resamples=RESAMPLES, seed=0, other=random_scores)
    for name in ("macro_roc_auc", "macro_pr_auc"):
        assert result[f"{name}_difference"] > 0.3
        assert result[f"{name}_difference_low"] > 0
        assert result[f"{name}_p"] < 0.01
        assert result[f"{name}_p"] == pytest.approx(2 / (RESAMPLES + 1))  # no resample reverses the order
    # the p-value is symmetric: the random model against the near-perfect one
    reverse = bootstrap_tagging(random_scores, truth, resamples=RESAMPLES, seed=0, other=near_perfect)
    assert reverse["macro_roc_auc_difference"] == pytest.approx(-result["macro_roc_auc_difference"], abs=1e-12)
    assert reverse["macro_roc_auc_p"] == result["macro_roc_auc_p"]


@pytest.mark.parametrize("constant", [False, True], ids=["no_positive", "all_positive"])
def test_tag_without_both_classes_is_ignored(constant):
    truth, informative, random_scores = tagged_tracks(seed=6)
    rng = np.random.default_rng(8)
    with_tag = np.column_stack([truth[:, :2], np.full(N_TRACKS, constant), truth[:, 2:]])
    scores = np.column_stack([informative[:, :2], rng.random(N_TRACKS), informative[:, 2:]])
    other = np.column_stack([random_scores[:, :2], rng.random(N_TRACKS), random_scores[:, 2:]])
    expected = bootstrap_tagging(informative, truth, resamples=100, seed=3, other=random_scores)
    assert bootstrap_tagging(scores, with_tag, resamples=100, seed=3, other=other) == expected


def test_same_seed_same_output_and_another_seed_differs():
    truth, informative, random_scores = tagged_tracks(seed=9)
    first = bootstrap_tagging(informative, truth, resamples=100, seed=11, other=random_scores)
    assert bootstrap_tagging(informative, truth, resamples=100, seed=11, other=random_scores) == first
    other_seed = bootstrap_tagging(informative, truth, resamples=100, seed=12, other=random_scores)
    assert other_seed["macro_roc_auc_low"] != first["macro_roc_auc_low"]
    assert other_seed["macro_roc_auc_difference"] == first["macro_roc_auc_difference"]  # the point estimate


def test_no_tag_with_both_classes_is_an_error():
    truth = np.zeros((10, 2), dtype=bool)
    truth[:, 1] = True
    with pytest.raises(TaggingError, match="both positive and negative"):
        bootstrap_tagging(np.random.default_rng(0).random((10, 2)), truth, resamples=10)


def test_other_with_different_track_count_is_an_error():
    truth, informative, random_scores = tagged_tracks()
    with pytest.raises(TaggingError, match="tracks"):
        bootstrap_tagging(informative, truth, resamples=10, other=random_scores[:-1])


def test_other_with_different_tag_count_is_a_tagging_error():
    truth, informative, random_scores = tagged_tracks()
    with pytest.raises(TaggingError):
        bootstrap_tagging(informative, truth, resamples=10, other=random_scores[:, :-1])

"""Tests for tunespace.evaluation.probe.multilabel_probe_on_split: it decodes labels that are linear in the
features; the L2 weight is the grid value with the best validation macro ROC-AUC (recomputed here from one-value
grids), the smaller one on a tie; the logits match an independent numpy/scipy fit of the same objective (features
z-scored with train statistics, mean binary cross-entropy plus l2 * ||W||^2, bias unpenalised); labels are fitted
independently; and nothing about the validation or test rows (their features, or the test truth) leaks into the
fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, special

from tunespace.evaluation.probe import MultilabelProbe, multilabel_probe_on_split
from tunespace.evaluation.tagging import tagging_metrics

N_TRACKS, N_LABELS, N_NOISE = 480, 3, 2
TRAIN, VALIDATION, TEST = np.arange(0, 240), np.arange(240, 360), np.arange(360, 480)
GRID = (1e-4, 1e-3, 1e-2, 1e-1)
SHORT_GRID = (1e-3, 1e-1)  # where only the mechanics matter, two values keep the fits few


def linear_labels(seed: int = 0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Features (N_TRACKS, N_LABELS + N_NOISE); label j is positive when feature j plus noise is above 0.5
    (positives a minority); the last N_NOISE features carry nothing. Features get offsets and scales so that
    standardisation matters."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((N_TRACKS, N_LABELS + N_NOISE))
    truth = features[:, :N_LABELS] + noise * rng.standard_normal((N_TRACKS, N_LABELS)) > 0.5
    return features * rng.uniform(0.5, 20.0, N_LABELS + N_NOISE) + rng.uniform(-5, 5, N_LABELS + N_NOISE), truth


def separable_labels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label j is the sign of feature j, with a gap of 2 between the classes: every L2 ranks perfectly."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], (N_TRACKS, N_LABELS))
    return sign * (1.0 + np.abs(rng.standard_normal((N_TRACKS, N_LABELS)))), sign > 0


def reference_logits(features: np.ndarray, truth: np.ndarray, l2: float, rows: np.ndarray) -> np.ndarray:
    """The same objective minimised by scipy's L-BFGS-B with an analytic gradient, written from the definition."""
    mean, std = features[TRAIN].mean(axis=0), features[TRAIN].std(axis=0, ddof=1)
    x = (features - mean) / std
    x_train, y_train = x[TRAIN], truth[TRAIN].astype(np.float64)
    n, d = x_train.shape
    labels = truth.shape[1]

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = flat[: d * labels].reshape(d, labels), flat[d * labels:]
        logits = x_train @ weights + bias
        # binary cross-entropy with logits: log(1 + e^z) - y z
        loss = (np.logaddexp(0.0, logits) - y_train * logits).sum() / n + l2 * (weights ** 2).sum()
        residual = (special.expit(logits) - y_train) / n
        gradient = np.concatenate([(x_train.T @ residual + 2 * l2 * weights).ravel(), residual.sum(axis=0)])
        return loss, gradient

    solution = optimize.minimize(loss_and_gradient, np.zeros(d * labels + labels), jac=True, method="L-BFGS-B",
                                 options={"maxiter": 2000, "gtol": 1e-10, "ftol": 1e-15})
    weights, bias = solution.x[: d * labels].reshape(d, labels), solution.x[d * labels:]
    return x[rows] @ weights + bias


# ---------------------------------------------------------------- decoding and the returned values


def test_linear_labels_are_decoded_on_test():
    features, truth = linear_labels()
    probe = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=GRID)
    assert isinstance(probe, MultilabelProbe)
    assert probe.scores.shape == (len(TEST), N_LABELS)
    assert tagging_metrics(probe.scores, truth[TEST]).macro_roc_auc > 0.95
    assert probe.l2 in GRID
    assert 0.95 < probe.validation_macro_roc_auc <= 1.0


def test_scores_are_the_logits_of_the_regularised_fit():
    features, truth = linear_labels(seed=1)
    probe = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=(1e-2,))
    expected = reference_logits(features, truth, 1e-2, TEST)
    # torch's LBFGS stops on its loss-change tolerance (gradient about 1e-6), hence the tolerance on logits of size ~3
    np.testing.assert_allclose(probe.scores, expected, rtol=0, atol=2e-3)
    validation_auc = tagging_metrics(reference_logits(features, truth, 1e-2, VALIDATION),
                                     truth[VALIDATION]).macro_roc_auc
    assert probe.validation_macro_roc_auc == pytest.approx(validation_auc, abs=1e-3)


def test_labels_are_fitted_independently():
    # the joint loss is a sum of per-label losses, so fitting one label alone gives the same logits for it
    features, truth = linear_labels(seed=2)
    joint = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=(1e-2,))
    for label in range(N_LABELS):
        alone = multilabel_probe_on_split(features, truth[:, [label]], TRAIN, VALIDATION, TEST, l2_grid=(1e-2,))
        np.testing.assert_allclose(alone.scores[:, 0], joint.scores[:, label], rtol=0, atol=2e-3)


# ---------------------------------------------------------------- choice of L2


def test_chosen_l2_maximises_validation_macro_roc_auc():
    features, truth = linear_labels(seed=0, noise=0.6)
    probe = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=GRID)
    single = {l2: multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=(l2,))
              for l2 in GRID}
    best = max(single[l2].validation_macro_roc_auc for l2 in GRID)
    expected = min(l2 for l2 in GRID if single[l2].validation_macro_roc_auc == best)
    assert probe.l2 == expected
    assert probe.validation_macro_roc_auc == best
    np.testing.assert_array_equal(probe.scores, single[expected].scores)  # the test scores come from that fit


def test_tie_in_validation_auc_goes_to_the_smaller_l2():
    features, truth = separable_labels()
    unsorted_grid = (1e-1, 1e-3, 1.0, 1e-2)  # the smallest is neither first nor last
    for l2 in unsorted_grid:  # the tie is real: every value ranks validation perfectly
        single = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=(l2,))
        assert single.validation_macro_roc_auc == 1.0
    probe = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=unsorted_grid)
    assert probe.l2 == 1e-3
    assert probe.validation_macro_roc_auc == 1.0


# ---------------------------------------------------------------- no leak from validation or test rows


def test_a_test_row_does_not_affect_the_other_test_rows():
    features, truth = linear_labels(seed=3)
    probe = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=SHORT_GRID)
    changed = features.copy()
    changed[TEST[0]] = 1e6
    probe_changed = multilabel_probe_on_split(changed, truth, TRAIN, VALIDATION, TEST, l2_grid=SHORT_GRID)
    assert probe_changed.l2 == probe.l2
    assert probe_changed.validation_macro_roc_auc == probe.validation_macro_roc_auc
    np.testing.assert_allclose(probe_changed.scores[1:], probe.scores[1:], rtol=1e-12, atol=1e-12)
    assert np.abs(probe_changed.scores[0]).max() > 1e3  # the changed row itself did move


def test_validation_features_do_not_enter_the_fit():
    # with a one-value grid the validation rows only pick among one fit, so they cannot change the test scores
    features, truth = linear_labels(seed=4)
    probe = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=(1e-3,))
    changed = features.copy()
    changed[VALIDATION] = np.random.default_rng(5).standard_normal((len(VALIDATION), features.shape[1])) * 1e4
    probe_changed = multilabel_probe_on_split(changed, truth, TRAIN, VALIDATION, TEST, l2_grid=(1e-3,))
    np.testing.assert_allclose(probe_changed.scores, probe.scores, rtol=1e-12, atol=1e-12)


def test_test_truth_is_never_read():
    features, truth = linear_labels(seed=6)
    probe = multilabel_probe_on_split(features, truth, TRAIN, VALIDATION, TEST, l2_grid=SHORT_GRID)
    scrambled = truth.copy()
    scrambled[TEST] = ~scrambled[TEST]
    probe_scrambled = multilabel_probe_on_split(features, scrambled, TRAIN, VALIDATION, TEST, l2_grid=SHORT_GRID)
    assert probe_scrambled.l2 == probe.l2
    np.testing.assert_array_equal(probe_scrambled.scores, probe.scores)

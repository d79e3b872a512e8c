"""The linear probe decodes a linearly separable label and stays at chance on noise."""

from __future__ import annotations

import numpy as np

import pytest

from tunespace.evaluation.probe import linear_probe, macro_f1, probe_on_split, stratified_split


def test_stratified_split_keeps_class_proportions_and_is_disjoint():
    labels = np.array([0] * 10 + [1] * 20 + [2] * 3)
    train, test = stratified_split(labels, 0.3, seed=1)
    assert not set(train) & set(test) and len(train) + len(test) == len(labels)
    assert [int((labels[test] == c).sum()) for c in range(3)] == [3, 6, 1]


def test_separable_labels_are_decoded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    features = rng.standard_normal((300, 5))
    features[:, 0] += 4 * labels  # one informative direction
    result = linear_probe(features, labels, seed=0)
    assert result.accuracy > 0.95 and result.n_classes == 3
    assert result.chance < 0.5


def test_noise_stays_near_chance():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 400)
    result = linear_probe(rng.standard_normal((400, 10)), labels, seed=0)
    assert result.balanced_accuracy < 0.45  # four balanced classes: chance is 0.25


def test_macro_f1_by_hand():
    truth, predicted = np.array(["a", "a", "b", "c"]), np.array(["a", "b", "b", "b"])
    # a: tp 1, fp 0, fn 1 -> 2/3; b: tp 1, fp 2, fn 0 -> 1/2; c: tp 0, fn 1 -> 0
    assert macro_f1(truth, predicted) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert macro_f1(truth, truth) == 1.0


def test_probe_on_fixed_parts_counts_unseen_test_labels_as_errors():
    rng = np.random.default_rng(0)
    labels = np.array(["x", "y"] * 30 + ["z"] * 4)
    features = np.where((labels == "x")[:, None], 1.0, -1.0) * np.ones((64, 3)) + 0.05 * rng.normal(size=(64, 3))
    train, validation = np.arange(0, 40), np.arange(40, 50)
    test = np.arange(50, 64)  # 10 of x/y, then 4 of z, never seen in training
    result = probe_on_split(features, labels, train, validation, test, resamples=200)
    assert result.accuracy == pytest.approx(10 / 14)  # every x/y right, every z wrong
    assert result.n_classes == 2 and result.l2 in (1e-4, 1e-3, 1e-2, 1e-1)
    assert 0.0 <= result.accuracy_low <= result.accuracy <= result.accuracy_high <= 1.0
    assert 0.0 <= result.macro_f1_low <= result.macro_f1 <= result.macro_f1_high <= 1.0
    # the z items look like y and are called y: f1 of x 1, of y 2*5 / (2*5 + 4 false positives) , of z 0
    assert result.macro_f1 == pytest.approx((1 + 10 / 14 + 0) / 3)

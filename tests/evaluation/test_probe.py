"""The linear probe decodes a linearly separable label and stays at chance on noise."""

from __future__ import annotations

import numpy as np

from tunespace.evaluation.probe import linear_probe, stratified_split


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

"""InfoNCE and the distillation anchor: hand-computed values, symmetry, weights, temperature clamp, DDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tunespace.contrastive.losses import AnchorDistillation, InfoNCE


def reference_infonce(a: np.ndarray, b: np.ndarray, temperature: float) -> float:
    """Plain-Python symmetric InfoNCE on unit vectors."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    n = len(a)
    total = 0.0
    for i in range(n):
        row = [float(a[i] @ b[j]) / temperature for j in range(n)]
        col = [float(b[i] @ a[j]) / temperature for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


def test_two_pairs_by_hand():
    # orthogonal unit vectors, positives equal to anchors: logits diag 1/t, off-diagonal 0
    loss = InfoNCE(temperature=0.5)(torch.eye(2), torch.eye(2))
    expected = -2.0 + math.log(math.exp(2.0) + 1.0)
    assert loss["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert loss["accuracy"].item() == 1.0


def test_matches_a_plain_loop_and_is_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    module = InfoNCE(temperature=0.1)
    value = module(torch.tensor(a), torch.tensor(b))["loss"].item()
    assert value == pytest.approx(reference_infonce(a, b, 0.1), rel=1e-5)
    assert module(torch.tensor(b), torch.tensor(a))["loss"].item() == pytest.approx(value, rel=1e-6)


def test_weights_scale_pairs():
    rng = np.random.default_rng(1)
    a, b = torch.tensor(rng.normal(size=(4, 3))), torch.tensor(rng.normal(size=(4, 3)))
    module = InfoNCE(temperature=0.2)
    terms = module(a, b, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.2
    forward = F.cross_entropy(logits, torch.arange(4), reduction="none")[:2].mean()
    backward = F.cross_entropy(logits.T, torch.arange(4), reduction="none")[:2].mean()
    assert terms["loss"].item() == pytest.approx(((forward + backward) / 2).item(), rel=1e-6)


def test_temperature_is_learnable_and_clamped():
    module = InfoNCE(temperature=0.07, min_temperature=0.05)
    with torch.no_grad():
        module.log_temperature.fill_(math.log(1e-4))
    assert module.temperature.item() == pytest.approx(0.05)
    a = torch.randn(6, 4, requires_grad=True)
    module.log_temperature.data.fill_(math.log(0.07))
    module(a, torch.randn(6, 4))["loss"].backward()
    assert module.log_temperature.grad is not None and a.grad is not None


def test_distillation_is_zero_at_the_reference_and_grows_with_angle():
    anchor = AnchorDistillation()
    x = torch.randn(5, 8)
    assert anchor(x, x)["loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert anchor(x, -x)["loss"].item() == pytest.approx(2.0, abs=1e-6)

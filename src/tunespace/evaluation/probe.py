"""Linear probe: how linearly decodable is a label from a representation (multinomial logistic regression)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float
    balanced_accuracy: float
    chance: float  # accuracy of always answering the most frequent training class
    n_classes: int
    n_train: int
    n_test: int


def stratified_split(labels: np.ndarray, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the same proportion (at least one train item per class)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        n_test = min(int(round(test_share * len(members))), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def linear_probe(features: np.ndarray, labels: np.ndarray, test_share: float = 0.3, seed: int = 0,
                 l2: float = 1e-3, max_iter: int = 200) -> ProbeResult:
    """Fit on a stratified train part (features standardised with train statistics), score on the rest."""
    labels = np.asarray(labels)
    classes, codes = np.unique(labels, return_inverse=True)
    train, test = stratified_split(codes, test_share, seed)
    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    mean, std = x[train].mean(dim=0), x[train].std(dim=0).clamp_min(1e-12)
    x = (x - mean) / std
    y = torch.as_tensor(codes)
    weights = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[train] @ weights + bias, y[train]) + l2 * weights.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (x[test] @ weights + bias).argmax(dim=1).numpy()
    truth = codes[test]
    per_class = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
    majority = np.bincount(codes[train]).argmax()
    return ProbeResult(accuracy=float(np.mean(predicted == truth)), balanced_accuracy=float(np.mean(per_class)),
                       chance=float(np.mean(truth == majority)), n_classes=len(classes), n_train=len(train),
                       n_test=len(test))

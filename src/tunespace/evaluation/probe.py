"""Linear probe: how linearly decodable is a label from a representation (multinomial logistic regression)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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
    x = _standardised(features, train)
    y = torch.as_tensor(codes)
    weights, bias = _fit_probe(x[train], y[train], len(classes), l2, max_iter)
    with torch.no_grad():
        predicted = (x[test] @ weights + bias).argmax(dim=1).numpy()
    truth = codes[test]
    per_class = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
    majority = np.bincount(codes[train]).argmax()
    return ProbeResult(accuracy=float(np.mean(predicted == truth)), balanced_accuracy=float(np.mean(per_class)),
                       chance=float(np.mean(truth == majority)), n_classes=len(classes), n_train=len(train),
                       n_test=len(test))


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean over classes of F1, over every class that occurs in `truth` or in `predicted` (as
    scikit-learn's `f1_score(average="macro")`); a class never predicted and never true does not count."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    scores = []
    for value in np.union1d(truth, predicted):
        true_positive = np.sum((truth == value) & (predicted == value))
        false_positive = np.sum((truth != value) & (predicted == value))
        false_negative = np.sum((truth == value) & (predicted != value))
        denominator = 2 * true_positive + false_positive + false_negative
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return float(np.mean(scores)) if scores else 0.0


@dataclass(frozen=True)
class SplitProbeResult:
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    macro_f1: float
    macro_f1_low: float
    macro_f1_high: float
    chance: float  # accuracy of answering the most frequent training class
    l2: float  # chosen on the validation items
    n_classes: int
    n_train: int
    n_test: int


def _standardised(features: np.ndarray, train: np.ndarray) -> torch.Tensor:
    """float64 features z-scored with the train rows' mean and spread (no statistic from the scored rows)."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    mean, std = x[train].mean(dim=0), x[train].std(dim=0).clamp_min(1e-12)
    return (x - mean) / std


def _fit_probe(x: torch.Tensor, y: torch.Tensor, n_outputs: int, l2: float, max_iter: int,
               loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear model `x @ weights + bias` minimising `loss(logits, y) + l2 ||weights||^2` with LBFGS."""
    weights = torch.zeros(x.shape[1], n_outputs, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_outputs, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(x @ weights + bias, y) + l2 * weights.pow(2).sum()
        value.backward()
        return value

    optimizer.step(closure)
    return weights.detach(), bias.detach()


def probe_on_split(features: np.ndarray, labels: np.ndarray, train: np.ndarray, validation: np.ndarray,
                   test: np.ndarray, l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1), max_iter: int = 200,
                   resamples: int = 2000, seed: int = 0) -> SplitProbeResult:
    """A linear probe on fixed parts: fit on `train`, choose the L2 weight on `validation` accuracy (ties to the
    smaller), report `test` accuracy and macro-F1 with 95% percentile-bootstrap intervals over test items.

    Features are standardised with train statistics. A validation or test label never seen in train stays in the
    figures as an error (it cannot be predicted), rather than being dropped in the model's favour.
    """
    labels = np.asarray(labels).astype(str)
    classes = np.unique(labels[train])
    x = _standardised(features, train)
    y = torch.as_tensor(np.searchsorted(classes, labels[train]))

    def predict(l2: float, rows: np.ndarray) -> np.ndarray:
        weights, bias = fits[l2]
        return classes[(x[rows] @ weights + bias).argmax(dim=1).numpy()]

    fits = {l2: _fit_probe(x[train], y, len(classes), l2, max_iter) for l2 in l2_grid}
    chosen = max(l2_grid, key=lambda l2: (np.mean(predict(l2, validation) == labels[validation]), -l2))
    predicted, truth = predict(chosen, test), labels[test]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(test), size=(resamples, len(test)))
    accuracies = (predicted[draws] == truth[draws]).mean(axis=1)
    f1s = np.array([macro_f1(truth[row], predicted[row]) for row in draws])
    majority = classes[np.bincount(y.numpy()).argmax()]
    return SplitProbeResult(
        accuracy=float(np.mean(predicted == truth)), accuracy_low=float(np.quantile(accuracies, 0.025)),
        accuracy_high=float(np.quantile(accuracies, 0.975)), macro_f1=macro_f1(truth, predicted),
        macro_f1_low=float(np.quantile(f1s, 0.025)), macro_f1_high=float(np.quantile(f1s, 0.975)),
        chance=float(np.mean(truth == majority)), l2=float(chosen), n_classes=len(classes), n_train=len(train),
        n_test=len(test))


def _independent_logistic(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """One logistic loss per label, summed over labels and averaged over rows: the labels' fits are independent."""
    return F.binary_cross_entropy_with_logits(logits, truth, reduction="sum") / len(logits)


@dataclass(frozen=True)
class MultilabelProbe:
    scores: np.ndarray  # (len(test), n_labels) logits of the test rows
    l2: float
    validation_macro_roc_auc: float


def multilabel_probe_on_split(features: np.ndarray, truth: np.ndarray, train: np.ndarray, validation: np.ndarray,
                              test: np.ndarray, l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1),
                              max_iter: int = 200) -> MultilabelProbe:
    """A linear multi-label probe (independent logistic regressions on standardised features): fit on `train`,
    choose the L2 weight on the `validation` macro ROC-AUC (ties to the smaller), score `test` once."""
    from tunespace.evaluation.tagging import tagging_metrics

    truth = np.asarray(truth, dtype=bool)
    x = _standardised(features, train)
    y = torch.as_tensor(truth[train], dtype=torch.float64)
    fits = {l2: _fit_probe(x[train], y, y.shape[1], l2, max_iter, _independent_logistic) for l2 in l2_grid}

    def scores(l2: float, rows: np.ndarray) -> np.ndarray:
        weights, bias = fits[l2]
        return (x[rows] @ weights + bias).numpy()

    validation_auc = {l2: tagging_metrics(scores(l2, validation), truth[validation]).macro_roc_auc
                      for l2 in l2_grid}
    chosen = max(l2_grid, key=lambda l2: (validation_auc[l2], -l2))
    return MultilabelProbe(scores(chosen, test), float(chosen), float(validation_auc[chosen]))

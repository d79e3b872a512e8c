"""Zero-shot tagging: score each track against a text prompt per tag and measure how well that ranks the tagged tracks.

Score = cosine similarity of a track embedding with a tag-prompt embedding (both L2-normalised, so a dot product).
Per tag: ROC-AUC (probability that a random positive track outscores a random negative one, ties counting half)
and PR-AUC as average precision (sum over distinct score thresholds of the recall gained times the precision
there, the step definition without interpolation). A tag with no positive or no negative track has neither, so it
is skipped and reported. Macro averages are the mean over evaluated tags; micro averages pool every (track, tag)
cell of the whole matrix into one ranking, as if all tags were one binary problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tunespace.errors import TunespaceError


class TaggingError(TunespaceError, ValueError):
    """Embeddings, scores or labels cannot be evaluated as given (shape mismatch, NaN, non-binary labels)."""


def _labels(truth: np.ndarray, shape: tuple[int, ...], name: str = "truth") -> np.ndarray:
    truth = np.asarray(truth)
    if truth.shape != shape:
        raise TaggingError(f"{name} has shape {truth.shape}, expected {shape} to match the scores")
    if truth.dtype != bool and not np.isin(truth, (0, 1)).all():
        raise TaggingError(f"{name} must be binary (0/1 or bool)")
    return truth.astype(bool)


def _scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise TaggingError(f"{name} contain NaN")
    return scores


def _roc_auc_columns(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mann-Whitney U / (P N) per column, from ranks with ties averaged; NaN where a column lacks a class."""
    positives = truth.sum(axis=0).astype(np.float64)
    negatives = len(truth) - positives
    ranks = stats.rankdata(scores, method="average", axis=0)
    u = (ranks * truth).sum(axis=0) - positives * (positives + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((positives > 0) & (negatives > 0), u / (positives * negatives), np.nan)


def _average_precision_columns(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Average precision per column; tied scores form one threshold, so their order cannot matter."""
    n = len(scores)
    order = np.argsort(-scores, axis=0, kind="stable")
    ranked_scores = np.take_along_axis(scores, order, axis=0)
    ranked_truth = np.take_along_axis(truth, order, axis=0)
    true_positives = np.cumsum(ranked_truth, axis=0)
    # each item takes the precision at the end of its run of tied scores (the threshold that admits it)
    last_of_run = np.ones(scores.shape, dtype=bool)
    last_of_run[:-1] = ranked_scores[:-1] != ranked_scores[1:]
    run_end = np.where(last_of_run, np.arange(n)[:, None], n)
    run_end = np.minimum.accumulate(run_end[::-1], axis=0)[::-1]
    precision = np.take_along_axis(true_positives, run_end, axis=0) / (run_end + 1)
    positives = truth.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision * ranked_truth).sum(axis=0) / positives
    return np.where((positives > 0) & (positives < n), ap, np.nan)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC of one binary problem (ties count half); NaN when either class is absent."""
    scores = _scores(scores)
    if scores.ndim != 1:
        raise TaggingError(f"scores must be 1-D, got shape {scores.shape}")
    return float(_roc_auc_columns(scores[:, None], _labels(labels, scores.shape, "labels")[:, None])[0])


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision (step PR-AUC) of one binary problem; NaN when either class is absent."""
    scores = _scores(scores)
    if scores.ndim != 1:
        raise TaggingError(f"scores must be 1-D, got shape {scores.shape}")
    return float(_average_precision_columns(scores[:, None], _labels(labels, scores.shape, "labels")[:, None])[0])


@dataclass(frozen=True)
class TaggingResult:
    tags: tuple[str, ...]
    roc_auc: np.ndarray  # (n_tags,), NaN for skipped tags
    pr_auc: np.ndarray  # (n_tags,), NaN for skipped tags
    n_positive: np.ndarray  # (n_tags,)
    macro_roc_auc: float
    macro_pr_auc: float
    micro_roc_auc: float
    micro_pr_auc: float
    skipped: tuple[str, ...]  # tags with no positive or no negative track

    def per_tag(self) -> pd.DataFrame:
        """One row per tag (skipped ones included, with NaN), for tables."""
        return pd.DataFrame({"tag": self.tags, "positives": self.n_positive, "roc_auc": self.roc_auc,
                             "pr_auc": self.pr_auc})

    def summary(self) -> dict[str, float]:
        return {"macro_roc_auc": self.macro_roc_auc, "macro_pr_auc": self.macro_pr_auc,
                "micro_roc_auc": self.micro_roc_auc, "micro_pr_auc": self.micro_pr_auc}


def tagging_metrics(scores: np.ndarray, truth: np.ndarray, tags: Sequence[str] | None = None) -> TaggingResult:
    """Per-tag, macro and micro ROC-AUC and PR-AUC of a (n_tracks, n_tags) score matrix against binary truth."""
    scores = _scores(scores)
    if scores.ndim != 2:
        raise TaggingError(f"scores must be a (n_tracks, n_tags) matrix, got shape {scores.shape}")
    truth = _labels(truth, scores.shape)
    names = tuple(str(tag) for tag in tags) if tags is not None else tuple(str(i) for i in range(scores.shape[1]))
    if len(names) != scores.shape[1]:
        raise TaggingError(f"{len(names)} tag names for {scores.shape[1]} score columns")
    auc = _roc_auc_columns(scores, truth)
    ap = _average_precision_columns(scores, truth)
    evaluated = ~np.isnan(auc)
    if not evaluated.any():
        raise TaggingError("no tag has both positive and negative tracks, so nothing can be evaluated")
    micro_scores, micro_truth = scores.reshape(-1, 1), truth.reshape(-1, 1)
    return TaggingResult(
        tags=names, roc_auc=auc, pr_auc=ap, n_positive=truth.sum(axis=0),
        macro_roc_auc=float(auc[evaluated].mean()), macro_pr_auc=float(ap[evaluated].mean()),
        micro_roc_auc=float(_roc_auc_columns(micro_scores, micro_truth)[0]),
        micro_pr_auc=float(_average_precision_columns(micro_scores, micro_truth)[0]),
        skipped=tuple(name for name, ok in zip(names, evaluated) if not ok))


def zero_shot_tagging(tracks: np.ndarray, prompts: np.ndarray, truth: np.ndarray,
                      tags: Sequence[str] | None = None) -> TaggingResult:
    """Tag tracks with no training: score = cosine(track, prompt of the tag), then `tagging_metrics`.

    tracks (n_tracks, dim) and prompts (n_tags, dim) are expected L2-normalised; truth is (n_tracks, n_tags).
    """
    tracks, prompts = np.asarray(tracks, dtype=np.float64), np.asarray(prompts, dtype=np.float64)
    if tracks.ndim != 2 or prompts.ndim != 2 or tracks.shape[1] != prompts.shape[1]:
        raise TaggingError(f"tracks (n_tracks, dim) and prompts (n_tags, dim) must share dim, got tracks "
                           f"{tracks.shape} and prompts {prompts.shape}")
    return tagging_metrics(tracks @ prompts.T, truth, tags)


def _macro_over_draws(scores: np.ndarray, truth: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro ROC-AUC and PR-AUC of each resample (rows of `draws` index tracks), averaged over the tags that have
    both classes in that resample."""
    auc = np.empty(len(draws))
    ap = np.empty(len(draws))
    for row, drawn in enumerate(draws):
        auc[row] = np.nanmean(_roc_auc_columns(scores[drawn], truth[drawn]))
        ap[row] = np.nanmean(_average_precision_columns(scores[drawn], truth[drawn]))
    return auc, ap


def bootstrap_tagging(scores: np.ndarray, truth: np.ndarray, resamples: int = 1000, seed: int = 0,
                      other: np.ndarray | None = None) -> dict[str, float]:
    """95% percentile-bootstrap intervals over tracks for macro ROC-AUC and PR-AUC; with `other` (a second model's
    scores of the same tracks) also the paired difference (self - other) with its interval and a two-sided
    bootstrap p-value. Only tags with both classes over all tracks take part, as in `tagging_metrics`."""
    scores, truth = _scores(scores), _labels(truth, np.shape(scores))
    full_shape = scores.shape
    both = truth.any(axis=0) & ~truth.all(axis=0)
    if not both.any():
        raise TaggingError("no tag has both positive and negative tracks, so nothing can be evaluated")
    scores, truth = scores[:, both], truth[:, both]
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))
    auc, ap = _macro_over_draws(scores, truth, draws)
    out = {"macro_roc_auc_low": float(np.quantile(auc, 0.025)), "macro_roc_auc_high": float(np.quantile(auc, 0.975)),
           "macro_pr_auc_low": float(np.quantile(ap, 0.025)), "macro_pr_auc_high": float(np.quantile(ap, 0.975))}
    if other is not None:
        other = _scores(other, "other")
        if other.shape != full_shape:
            raise TaggingError(f"other has shape {other.shape}, expected {full_shape} (the same tracks and tags)")
        other = other[:, both]
        other_auc, other_ap = _macro_over_draws(other, truth, draws)
        for name, mine, theirs, per_tag in (("macro_roc_auc", auc, other_auc, _roc_auc_columns),
                                            ("macro_pr_auc", ap, other_ap, _average_precision_columns)):
            difference = mine - theirs
            # two-sided: how often the resampled difference lies on the far side of zero, doubled, (1 + n) / (B + 1)
            beyond = min(int((difference <= 0).sum()), int((difference >= 0).sum()))
            out[f"{name}_difference"] = float(np.nanmean(per_tag(scores, truth)) - np.nanmean(per_tag(other, truth)))
            out[f"{name}_difference_low"] = float(np.quantile(difference, 0.025))
            out[f"{name}_difference_high"] = float(np.quantile(difference, 0.975))
            out[f"{name}_p"] = float(min(1.0, 2 * (1 + beyond) / (resamples + 1)))
    return out

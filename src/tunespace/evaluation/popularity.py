"""Choosing the popularity weight beta of a "+pop" row (`recommenders.blend.PopularityBlend`) on validation users.

Why: a content embedding is judged by "content score + beta * popularity z" with beta chosen on validation users
only, so that a gain which a little popularity would also give is not credited to the embedding. The grid holds 0
(the raw model: "+pop" can never be worse on validation than the raw row) and log-spaced values from 1e-3 to 10,
wide enough for cosine-scale scores (knn, in [-1, 1]) and logit-scale ones (bert4rec). The rule: the best mean
validation NDCG@50, the mean over split seeds of each split seed's mean over its validation users; ties go to the
smaller beta (the smaller departure from the raw model).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tunespace.errors import TunespaceError
from tunespace.evaluation.evaluate import EvaluationResult

logger = logging.getLogger(__name__)

POPULARITY_WEIGHTS: tuple[float, ...] = (0.0, *(float(w) for w in 10 ** np.linspace(-3, 1, 17)))
"""The beta grid: 0, then 10**-3 .. 10**1 at four values per decade."""
TIE_TOLERANCE = 1e-12
"""Validation figures closer than this count as equal (float rounding of identical rankings)."""


class PopularityWeightError(TunespaceError, ValueError):
    """A beta cannot be chosen as asked (no grid, no validation figures)."""


@dataclass
class WeightChoice:
    """The chosen beta and every beta's figure. table: beta, validation_<metric> (mean over split seeds of the
    per-split-seed means over validation users), split_seeds, chosen (True on one row); rows in grid order."""

    beta: float
    table: pd.DataFrame


def choose_weight(figures: Mapping[float, Mapping[int, EvaluationResult]], metric: str = "ndcg@50") -> WeightChoice:
    """Apply the module's rule to `figures[beta][split_seed]`, the blend's result on that split seed's validation
    users (and on no other users: this is all the choice sees)."""
    if not figures:
        raise PopularityWeightError("no beta to choose from")
    rows = []
    for beta, per_seed in figures.items():
        if not per_seed:
            raise PopularityWeightError(f"beta {beta}: no validation figures")
        means = [float(result.per_user[metric].mean()) for result in per_seed.values()]
        rows.append({"beta": float(beta), f"validation_{metric}": float(np.mean(means)), "split_seeds": len(means)})
    table = pd.DataFrame(rows)
    values = table[f"validation_{metric}"].to_numpy()
    if not np.isfinite(values).any():
        raise PopularityWeightError(f"no finite validation {metric} to choose beta on")
    best = np.nanmax(values)
    tied = table[values >= best - TIE_TOLERANCE]
    beta = float(tied["beta"].min())
    table["chosen"] = table["beta"] == beta
    if len(table) > 1 and beta == float(table["beta"].max()):
        logger.warning("beta %.4g is the largest of the grid: at this scale the content score only breaks ties of "
                       "the popularity order (its cosines barely differ between items); the +pop row is in effect "
                       "popularity", beta)
    return WeightChoice(beta, table)


def weight_grid(weights: Sequence[float] = POPULARITY_WEIGHTS) -> tuple[float, ...]:
    """The grid as given, checked: distinct, non-negative, and containing 0 (the raw model)."""
    grid = tuple(float(w) for w in weights)
    if 0.0 not in grid or min(grid) < 0 or len(set(grid)) != len(grid):
        raise PopularityWeightError(f"a beta grid holds 0 and distinct non-negative values, got {list(grid)}")
    return grid

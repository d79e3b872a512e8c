"""Choosing a stage-2 run without looking at the test users or the semantic test tracks.

The rule `tunespace htcl evaluate` applies (the only one it offers):

- Candidates are the runs whose config learns preferences: a stage 2 with at least one preference source of
  weight > 0. Every other set is a fixed arm (stage 1, the control with preference weight 0, mfcc and other
  `--embeddings`): its place in the comparison was fixed before any figure was seen.
- Each candidate is scored on the validation users and on the semantic-validation half of the held-out tracks
  (text-to-audio R@10). The preference figure is the warm NDCG@50, averaged over split seeds, of the first content
  model given (by default knn) made popularity-aware, `knn+pop[run]`: content score + beta x the popularity
  z-score, beta chosen on the validation users (`evaluation.popularity`). That is the standard comparison: a gain
  that a little popularity gives any embedding is not credited to preference learning. The raw `knn[run]` figure
  is kept beside it.
- A candidate qualifies when its validation text-to-audio R@10 is at least (1 - tolerance) times the stage-1
  reference run's, tolerance 10 %: stage 2 "keeps the semantic space". The reference is the run named by
  `--stage1`, else the one run without preference sources.
- The chosen run is the qualifying candidate with the best validation NDCG@50 (the first given on a tie); when none
  qualifies, none is chosen, and that is reported, not papered over.

Only the chosen candidate and the fixed arms then get test figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tunespace.errors import TunespaceError

SEMANTIC_TOLERANCE = 0.10
SELECTION_COLUMNS = ("run", "role", "selected_on", "validation_ndcg@50", "validation_ndcg@50_split_sd",
                     "validation_ndcg@50_raw", "validation_t2a_R@10", "required_t2a_R@10", "qualified", "selected",
                     "reason")
"""`validation_ndcg@50` is the figure that chooses, `selected_on` says which it is; `validation_ndcg@50_raw` is the
raw content row's figure (NaN when not given)."""


class SelectionError(TunespaceError, ValueError):
    """The selection cannot be made as asked (no stage-1 reference, an unknown run, missing figures)."""


@dataclass
class Selection:
    table: pd.DataFrame  # SELECTION_COLUMNS, one row per candidate then per reference arm
    selected: str | None  # the chosen candidate, None when none qualified
    reference: str  # the stage-1 run the semantic criterion compares against


def select_run(validation: pd.DataFrame, candidates: Sequence[str], reference: str,
               metric: str = "ndcg@50", semantic: str = "t2a_R@10", tolerance: float = SEMANTIC_TOLERANCE,
               arms: Sequence[str] = (), raw: str | None = None, basis: str | None = None) -> Selection:
    """Apply the rule of the module docstring to `validation`: one row per run (`run` column) with `metric` (the
    validation preference figure, averaged over split seeds), optionally `<metric>_split_sd` (over split seeds), and
    `semantic` (on the semantic-validation tracks). `arms` (fixed arms besides the reference) are listed for
    context, never chosen. `raw` names a column carried along as `validation_ndcg@50_raw`; `basis` says in words
    what `metric` is (the `selected_on` column; default "validation <metric>")."""
    frame = validation.set_index("run")
    missing = [run for run in (*candidates, reference) if run not in frame.index]
    if missing:
        raise SelectionError(f"no validation figures for {', '.join(missing)}")
    if reference in candidates:
        raise SelectionError(f"{reference} learns preferences, so it cannot be the stage-1 reference")
    if not 0 <= tolerance < 1:
        raise SelectionError(f"tolerance must lie in [0, 1), got {tolerance}")
    basis = basis or f"validation {metric}"
    floor = (1 - tolerance) * float(frame.loc[reference, semantic])
    qualified = {run: bool(float(frame.loc[run, semantic]) >= floor) for run in candidates}
    scores = {run: float(frame.loc[run, metric]) for run in candidates}
    pool = [run for run in candidates if qualified[run] and np.isfinite(scores[run])]
    selected = max(pool, key=lambda run: scores[run]) if pool else None  # max keeps the first of equal scores
    rows = []
    for run in candidates:
        value, sem = scores[run], float(frame.loc[run, semantic])
        if not qualified[run]:
            reason = (f"excluded: validation {semantic} {sem:.3f} < {1 - tolerance:.2f} x {reference}'s "
                      f"{float(frame.loc[reference, semantic]):.3f} (does not keep the semantic space)")
        elif run == selected:
            reason = f"chosen: best {basis} ({value:.4f}) of {len(pool)} qualifying candidate(s)"
        else:
            reason = f"qualified, not chosen: {basis} {value:.4f} < {scores[selected]:.4f} ({selected})"
        rows.append(_row(frame, run, "candidate", metric, semantic, raw, basis, floor, qualified[run],
                         run == selected, reason))
    rows.append(_row(frame, reference, "stage-1 reference", metric, semantic, raw, basis, np.nan, None, False,
                     f"fixed arm: the semantic reference ({semantic} floor {floor:.3f})"))
    rows += [_row(frame, run, "fixed arm", metric, semantic, raw, basis, np.nan, None, False,
                  "fixed arm: not a candidate") for run in arms if run in frame.index and run != reference]
    return Selection(pd.DataFrame(rows, columns=list(SELECTION_COLUMNS)), selected, reference)


def _row(frame: pd.DataFrame, run: str, role: str, metric: str, semantic: str, raw: str | None, basis: str,
         floor: float, qualified: bool | None, selected: bool, reason: str) -> dict[str, object]:
    sd = frame.loc[run, f"{metric}_split_sd"] if f"{metric}_split_sd" in frame else np.nan
    return {"run": run, "role": role, "selected_on": basis, "validation_ndcg@50": float(frame.loc[run, metric]),
            "validation_ndcg@50_split_sd": float(sd),
            "validation_ndcg@50_raw": float(frame.loc[run, raw]) if raw is not None else np.nan,
            "validation_t2a_R@10": float(frame.loc[run, semantic]), "required_t2a_R@10": floor,
            "qualified": qualified, "selected": selected, "reason": reason}


def validation_figures(summary: pd.DataFrame, semantic: pd.DataFrame, model: str) -> pd.DataFrame:
    """The input of `select_run` for content model `model`: per run, `ndcg@50` and `ndcg@50_split_sd` of its
    popularity-aware row `<model>+pop[run]` (what chooses), `ndcg@50_raw` of its raw row `<model>[run]`, and
    `t2a_R@10`. `summary` holds the validation users' figures over split seeds (`model`, `ndcg@50`,
    `ndcg@50_split_sd` per row label), `semantic` the runs' semantic figures (`run`, `part`, `t2a_R@10`)."""

    def rows(prefix: str) -> pd.DataFrame:
        chosen = summary[summary["model"].str.startswith(f"{prefix}[")]
        return chosen.assign(run=chosen["model"].str.slice(len(prefix) + 1, -1))

    aware = rows(f"{model}+pop")[["run", "ndcg@50", "ndcg@50_split_sd"]]
    raw = rows(model)[["run", "ndcg@50"]].rename(columns={"ndcg@50": "ndcg@50_raw"})
    validation = semantic[semantic["part"] == "validation"][["run", "t2a_R@10"]]
    return aware.merge(raw, on="run", how="outer").merge(validation, on="run", how="outer")


def summary_line(selection: Selection) -> str:
    """One sentence for the console and the report."""
    table = selection.table[selection.table["role"] == "candidate"]
    if table.empty:
        return "no candidate: no run learns preferences, so nothing was selected"
    if selection.selected is None:
        return (f"no candidate selected: none of the {len(table)} candidate(s) kept validation text-to-audio R@10 "
                f"within {SEMANTIC_TOLERANCE:.0%} of {selection.reference}'s")
    row = table[table["run"] == selection.selected].iloc[0]
    raw = f" (raw {row['validation_ndcg@50_raw']:.4f})" if np.isfinite(row["validation_ndcg@50_raw"]) else ""
    return (f"selected {selection.selected} on validation figures only: {row['selected_on']} "
            f"{row['validation_ndcg@50']:.4f}{raw}, "
            f"text-to-audio R@10 {row['validation_t2a_R@10']:.3f} (floor {row['required_t2a_R@10']:.3f}, "
            f"{int(table['qualified'].sum())} of {len(table)} candidates qualified)")

"""Choosing a stage-2 run without looking at the test users or the semantic test tracks.

The rule `tunespace htcl evaluate` applies (the only one it offers):

- Candidates are the runs whose config learns preferences: a stage 2 with at least one preference source of
  weight > 0. Every other set is a fixed arm (stage 1, the control with preference weight 0, mfcc and other
  `--embeddings`): its place in the comparison was fixed before any figure was seen.
- Each candidate is scored on the validation users (warm content-model NDCG@50 of the first model given, by default
  knn, averaged over split seeds) and on the semantic-validation half of the held-out tracks (text-to-audio R@10).
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
SELECTION_COLUMNS = ("run", "role", "validation_ndcg@50", "validation_ndcg@50_split_sd", "validation_t2a_R@10",
                     "required_t2a_R@10", "qualified", "selected", "reason")


class SelectionError(TunespaceError, ValueError):
    """The selection cannot be made as asked (no stage-1 reference, an unknown run, missing figures)."""


@dataclass
class Selection:
    table: pd.DataFrame  # SELECTION_COLUMNS, one row per candidate then per reference arm
    selected: str | None  # the chosen candidate, None when none qualified
    reference: str  # the stage-1 run the semantic criterion compares against


def select_run(validation: pd.DataFrame, candidates: Sequence[str], reference: str,
               metric: str = "ndcg@50", semantic: str = "t2a_R@10", tolerance: float = SEMANTIC_TOLERANCE,
               arms: Sequence[str] = ()) -> Selection:
    """Apply the rule of the module docstring to `validation`: one row per run (`run` column) with `metric` (the
    validation preference figure, averaged over split seeds), optionally `<metric>_split_sd` (over split seeds), and
    `semantic` (on the semantic-validation tracks). `arms` (fixed arms besides the reference) are listed for
    context, never chosen."""
    frame = validation.set_index("run")
    missing = [run for run in (*candidates, reference) if run not in frame.index]
    if missing:
        raise SelectionError(f"no validation figures for {', '.join(missing)}")
    if reference in candidates:
        raise SelectionError(f"{reference} learns preferences, so it cannot be the stage-1 reference")
    if not 0 <= tolerance < 1:
        raise SelectionError(f"tolerance must lie in [0, 1), got {tolerance}")
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
            reason = f"chosen: best validation {metric} ({value:.4f}) of {len(pool)} qualifying candidate(s)"
        else:
            reason = f"qualified, not chosen: validation {metric} {value:.4f} < {scores[selected]:.4f} ({selected})"
        rows.append(_row(frame, run, "candidate", metric, semantic, floor, qualified[run], run == selected, reason))
    rows.append(_row(frame, reference, "stage-1 reference", metric, semantic, np.nan, None, False,
                     f"fixed arm: the semantic reference ({semantic} floor {floor:.3f})"))
    rows += [_row(frame, run, "fixed arm", metric, semantic, np.nan, None, False, "fixed arm: not a candidate")
             for run in arms if run in frame.index and run != reference]
    return Selection(pd.DataFrame(rows, columns=list(SELECTION_COLUMNS)), selected, reference)


def _row(frame: pd.DataFrame, run: str, role: str, metric: str, semantic: str, floor: float,
         qualified: bool | None, selected: bool, reason: str) -> dict[str, object]:
    sd = frame.loc[run, f"{metric}_split_sd"] if f"{metric}_split_sd" in frame else np.nan
    return {"run": run, "role": role, "validation_ndcg@50": float(frame.loc[run, metric]),
            "validation_ndcg@50_split_sd": float(sd), "validation_t2a_R@10": float(frame.loc[run, semantic]),
            "required_t2a_R@10": floor, "qualified": qualified, "selected": selected, "reason": reason}


def summary_line(selection: Selection) -> str:
    """One sentence for the console and the report."""
    table = selection.table[selection.table["role"] == "candidate"]
    if table.empty:
        return "no candidate: no run learns preferences, so nothing was selected"
    if selection.selected is None:
        return (f"no candidate selected: none of the {len(table)} candidate(s) kept validation text-to-audio R@10 "
                f"within {SEMANTIC_TOLERANCE:.0%} of {selection.reference}'s")
    row = table[table["run"] == selection.selected].iloc[0]
    return (f"selected {selection.selected} on validation figures only: NDCG@50 {row['validation_ndcg@50']:.4f}, "
            f"text-to-audio R@10 {row['validation_t2a_R@10']:.3f} (floor {row['required_t2a_R@10']:.3f}, "
            f"{int(table['qualified'].sum())} of {len(table)} candidates qualified)")

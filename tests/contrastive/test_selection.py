"""Choosing a stage-2 run on validation figures: a hand-made example whose right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunespace.contrastive.selection import SelectionError, select_run, summary_line, validation_figures


def frame(rows):
    return pd.DataFrame(rows, columns=["run", "ndcg@50", "t2a_R@10"])


VALIDATION = frame([
    ("s1", 0.040, 0.90),  # stage 1: the semantic floor is 0.9 * 0.90 = 0.81
    ("control", 0.044, 0.95),
    ("pa0", 0.090, 0.70),  # best NDCG, but lost the semantic space: excluded
    ("pa025", 0.066, 0.85),  # best of those that qualify
    ("pa05", 0.048, 0.81),  # exactly at the floor: qualifies
    ("pb1", 0.058, 0.95),
])


def test_the_best_qualifying_candidate_on_validation_is_chosen():
    selection = select_run(VALIDATION, ["pa0", "pa025", "pa05", "pb1"], "s1", arms=["control"])
    assert selection.selected == "pa025" and selection.reference == "s1"
    table = selection.table.set_index("run")
    assert table.loc[["pa0", "pa025", "pa05", "pb1"], "qualified"].tolist() == [False, True, True, True]
    assert table["selected"].sum() == 1 and bool(table.loc["pa025", "selected"])
    assert table.loc["pa025", "required_t2a_R@10"] == pytest.approx(0.81)
    assert table.loc["pa0", "reason"].startswith("excluded") and table.loc["pa025", "reason"].startswith("chosen")
    assert "pa025" in table.loc["pb1", "reason"]
    assert table.loc["s1", "role"] == "stage-1 reference" and table.loc["control", "role"] == "fixed arm"
    assert table.loc[["s1", "control"], "qualified"].isna().all()
    assert summary_line(selection).startswith("selected pa025 on validation figures only")


def test_ties_keep_the_first_and_nothing_qualifying_selects_nothing():
    tied = frame([("s1", 0.04, 0.9), ("a", 0.05, 0.9), ("b", 0.05, 0.9)])
    assert select_run(tied, ["a", "b"], "s1").selected == "a"
    assert select_run(tied, ["b", "a"], "s1").selected == "b"
    lost = frame([("s1", 0.04, 0.9), ("a", 0.09, 0.5), ("b", 0.08, 0.6)])
    selection = select_run(lost, ["a", "b"], "s1")
    assert selection.selected is None and not selection.table["selected"].any()
    assert "no candidate selected" in summary_line(selection)


def test_the_reference_and_figures_are_checked():
    with pytest.raises(SelectionError, match="no validation figures for zz"):
        select_run(VALIDATION, ["pa0", "zz"], "s1")
    with pytest.raises(SelectionError, match="cannot be the stage-1 reference"):
        select_run(VALIDATION, ["pa0", "s1"], "s1")
    nan = frame([("s1", 0.04, 0.9), ("a", np.nan, 0.9), ("b", 0.01, 0.9)])
    assert select_run(nan, ["a", "b"], "s1").selected == "b"  # a missing figure never wins


def test_the_popularity_aware_figure_chooses_and_the_raw_one_is_kept_beside_it():
    """Raw knn would choose b (0.070 > 0.050); popularity-aware, a wins (0.060 > 0.055): +pop decides."""
    summary = pd.DataFrame({"model": ["popularity", "knn[s1]", "knn+pop[s1]", "knn[a]", "knn+pop[a]", "knn[b]",
                                      "knn+pop[b]", "shallow+pop[a]"],
                            "ndcg@50": [0.08, 0.04, 0.045, 0.05, 0.06, 0.07, 0.055, 0.99],
                            "ndcg@50_split_sd": [0.0, 0.01, 0.01, 0.02, 0.002, 0.03, 0.003, 0.0]})
    semantic = pd.DataFrame({"run": ["s1", "a", "b", "a"], "part": ["validation", "validation", "validation", "test"],
                             "t2a_R@10": [0.9, 0.9, 0.9, 0.1]})
    frame = validation_figures(summary, semantic, "knn").set_index("run").sort_index()
    assert frame.loc[["a", "b", "s1"], "ndcg@50"].tolist() == [0.06, 0.055, 0.045]
    assert frame.loc[["a", "b", "s1"], "ndcg@50_raw"].tolist() == [0.05, 0.07, 0.04]
    assert frame.loc["a", "ndcg@50_split_sd"] == 0.002 and frame.loc["a", "t2a_R@10"] == 0.9
    selection = select_run(frame.reset_index(), ["a", "b"], "s1", raw="ndcg@50_raw", basis="validation knn+pop NDCG@50")
    assert selection.selected == "a"
    table = selection.table.set_index("run")
    assert table.loc["a", "validation_ndcg@50"] == 0.06 and table.loc["a", "validation_ndcg@50_raw"] == 0.05
    assert (table["selected_on"] == "validation knn+pop NDCG@50").all()
    assert "knn+pop" in table.loc["a", "reason"] and "(raw 0.0500)" in summary_line(selection)
    assert np.isnan(select_run(VALIDATION, ["pa0"], "s1").table["validation_ndcg@50_raw"]).all()

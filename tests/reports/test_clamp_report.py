"""`tunespace report --eval` on a `clamp evaluate` folder: every table it wrote is on the page with its intervals."""

from __future__ import annotations

import re

import pandas as pd

from tunespace.cli.main import main


def clamp_folder(folder):
    folder.mkdir()
    search = pd.DataFrame({
        "task": ["text->abc"] * 3 + ["text->midi"], "language": ["en", "de", "zh", "en"],
        "gallery": ["test", "test", "test", "catalogue"], "queries": 30, "targets": [10, 10, 10, 200],
        "MRR": [0.61, 0.58, 0.55, 0.12], "MRR_low": [0.5, 0.47, 0.44, 0.08], "MRR_high": [0.7, 0.68, 0.66, 0.16],
        "hit@1": 0.4, "hit@1_low": 0.3, "hit@1_high": 0.5, "hit@10": 1.0, "hit@10_low": 1.0, "hit@10_high": 1.0,
        "hit@100": [None, None, None, 0.9], "hit@100_low": [None, None, None, 0.8],
        "hit@100_high": [None, None, None, 0.95], "chance_MRR": 0.29, "run": "align"})
    search.to_csv(folder / "search.csv", index=False)
    pd.DataFrame({"task": ["abc->midi"], "language": [""], "gallery": ["test"], "method": [""], "queries": [10],
                  "targets": [10], "MRR": [0.345], "MRR_low": [0.25], "MRR_high": [0.44], "hit@1": [0.2],
                  "hit@1_low": [0.1], "hit@1_high": [0.3], "hit@10": [0.7], "hit@10_low": [0.6],
                  "hit@10_high": [0.8], "chance_MRR": [0.29], "run": ["align"]}).to_csv(folder / "cross_modal.csv",
                                                                                     index=False)
    pd.DataFrame({"task": ["text->abc"], "language": ["de"], "baseline": ["en"], "tunes": [10],
                  "mean_difference": [-0.03], "t_p": [0.4], "t_p_holm": [0.8], "run": ["align"]}).to_csv(
        folder / "language_gap.csv", index=False)
    pd.DataFrame({"representation": ["align abc", "tf-idf abc"], "label": ["dance_type"] * 2, "accuracy": [0.7, 0.8],
                  "accuracy_low": [0.6, 0.7], "accuracy_high": [0.8, 0.9], "macro_f1": [0.6, 0.75],
                  "macro_f1_low": [0.5, 0.6], "macro_f1_high": [0.7, 0.85], "chance": [0.2, 0.2], "l2": [0.01, 0.1],
                  "n_classes": [5, 5], "n_train": [90, 90], "n_test": [10, 10]}).to_csv(
        folder / "classification.csv", index=False)
    return folder


def test_clamp_folder_makes_a_page_with_every_table(tmp_path):
    folder = clamp_folder(tmp_path / "eval")
    assert main(["report", "--eval", str(folder), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    text = re.sub(r"<[^>]+>", " ", page)
    assert page.count("<table") == 5  # search, catalogue search, language gap, cross-modal, probes
    assert "0.610 (0.500-0.700)" in text and "0.345 (0.250-0.440)" in text
    assert "0.800 (0.700-0.900)" in text  # the TF-IDF probe with its interval
    assert page.count("data:image/png;base64,") == 1

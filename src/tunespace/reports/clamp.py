"""The report page of a `tunespace clamp evaluate` folder: text -> score search per language with the language gap,
score <-> score and audio <-> score retrieval, and the linear probes, each with its interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tunespace.reports.html import Heading, Paragraph, Plot, Section, Table, fold_intervals, write_html_report


def _folded(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    columns = [*[k for k in keys if k in frame], *[c for m in metrics if m in frame
                                                   for c in (m, f"{m}_low", f"{m}_high") if c in frame]]
    return fold_intervals(frame[columns].reset_index(drop=True)).frame


def search_figure(search: pd.DataFrame) -> Figure:
    """Text -> score MRR per query language, one panel per task, a bar per run, 95% intervals and chance."""
    tasks = list(dict.fromkeys(search["task"]))
    runs = list(dict.fromkeys(search["run"]))
    languages = list(dict.fromkeys(search["language"]))
    figure = Figure(figsize=(4.5 * len(tasks), 3.4), layout="constrained")
    width = 0.8 / max(1, len(runs))
    for axes, task in zip(figure.subplots(1, len(tasks), squeeze=False)[0], tasks):
        rows = search[search["task"] == task].set_index(["run", "language"])
        for offset, run in enumerate(runs):
            picked = rows.reindex([(run, language) for language in languages])
            positions = np.arange(len(languages)) + offset * width
            mean = picked["MRR"].to_numpy(float)
            errors = np.vstack([mean - picked["MRR_low"].to_numpy(float), picked["MRR_high"].to_numpy(float) - mean])
            axes.bar(positions, mean, width, yerr=errors, capsize=3, label=str(run))
        chance = float(search.loc[search["task"] == task, "chance_MRR"].mean())
        axes.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        axes.set_xticks(np.arange(len(languages)) + width * (len(runs) - 1) / 2, languages)
        axes.set_ylim(0, 1)
        axes.set_title(f"{task}: MRR by query language", fontsize=9)
    figure.axes[0].legend(fontsize=7)
    return figure


def clamp_report(folder: str | Path, out: str | Path) -> Path:
    folder = Path(folder)
    about = (folder / "about.txt").read_text().strip() if (folder / "about.txt").is_file() else ""
    search = pd.read_csv(folder / "search.csv")
    part = search[search["gallery"] != "catalogue"]
    catalogue = search[search["gallery"] == "catalogue"]
    hits = ["MRR", "hit@1", "hit@10"]
    sections: list[Section] = [
        Paragraph(f"CLaMP evaluation folder: {folder}. {about}"),
        Plot(search_figure(part), caption="each query language against the held-out tunes; bars are 95% "
                                          "bootstrap intervals over queries"),
        Heading("Text -> score search"),
        Table(_folded(part, ["run", "task", "language", "queries", "targets"], hits),
              caption="gallery: the held-out tunes; cells read mean (low-high), 95% bootstrap over queries; ties "
                      "never in the query's favour"),
    ]
    if not catalogue.empty:
        sections.append(Table(_folded(catalogue, ["run", "task", "language", "queries", "targets"],
                                      ["MRR", "hit@10", "hit@100"]),
                              caption="gallery: the whole catalogue (every tune a distractor)"))
    if (folder / "language_gap.csv").is_file():
        gap = pd.read_csv(folder / "language_gap.csv")
        sections += [Heading("Language gap"),
                     Table(gap, caption="per-tune MRR of a language minus English, paired t-test, Holm-corrected")]
    modal = pd.read_csv(folder / "cross_modal.csv")
    if not modal.empty:
        sections += [Heading("Score <-> score and audio <-> score"),
                     Table(_folded(modal, ["run", "task", "method", "queries", "targets"], hits),
                           caption="the same tune is the one relevant target")]
    if (folder / "classification.csv").is_file():
        probes = pd.read_csv(folder / "classification.csv")
        sections += [Heading("Linear probes"),
                     Table(_folded(probes, ["representation", "label", "n_classes", "n_test", "chance"],
                                   ["accuracy", "macro_f1"]),
                           caption="fit on training tunes, L2 chosen on validation tunes, test tunes scored once; "
                                   "95% bootstrap intervals over test tunes; chance: the majority class")]
    return write_html_report(out, "tunespace CLaMP report", sections)

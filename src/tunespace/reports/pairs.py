"""The pair study's outputs (`tunespace pretrain-pairs`): CSV and Markdown tables, one figure, and its report page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tunespace.io import atomic_path, write_text
from tunespace.reports.html import Heading, Paragraph, Plot, Table, write_html_report
from tunespace.reports.tables import to_markdown

TAGGING_COLUMNS = ("method", "representation", "macro_roc_auc", "macro_roc_auc_low", "macro_roc_auc_high",
                   "macro_pr_auc", "macro_pr_auc_low", "macro_pr_auc_high", "macro_roc_auc_difference",
                   "macro_roc_auc_p_holm", "macro_pr_auc_difference", "macro_pr_auc_p_holm")
SIMILARITY_COLUMNS = ("judgement", "representation", "queries", "ndcg@10", "ndcg@10_half_width", "ndcg@50",
                      "hit_rate@10", "hit_rate@50", "ndcg@10_difference", "ndcg@10_t_p_holm",
                      "ndcg@10_wilcoxon_p_holm", "ndcg@50_difference", "ndcg@50_t_p_holm")


def _shown(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame.columns]]


def write_study_tables(out: Path, tables: Mapping[str, pd.DataFrame], tags: Sequence[str]) -> None:
    """tagging.csv, similarity.csv, similarity_validation.csv (the choices' table), study.md and tags.txt."""
    for name, frame in tables.items():
        with atomic_path(out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    parts = ["# Pair study", "",
             ("Tagging: test tracks, macro over tags; intervals and the difference to artist pairs from a paired "
              "bootstrap over test tracks (Holm within each method)."), "",
             to_markdown(_shown(tables["tagging"], TAGGING_COLUMNS).round(4)), "",
             ("Similarity: each test track ranks the catalogue; relevant tracks share a playlist made after the "
              "cutoff (playlist) or the dance type and region (dance+region). Paired t and Wilcoxon tests over the "
              "same queries against artist pairs, Holm within each judgement."), "",
             to_markdown(_shown(tables["similarity"], SIMILARITY_COLUMNS).round(4)), ""]
    write_text("\n".join(parts), out / "study.md")
    write_text("\n".join(tags) + "\n", out / "tags.txt")


def _bars(axes, frame: pd.DataFrame, value: str, low: np.ndarray, high: np.ndarray, title: str) -> None:
    positions = np.arange(len(frame))
    values = frame[value].to_numpy(dtype=float)
    axes.barh(positions, values, xerr=np.vstack([values - low, high - values]), color="#4c72b0", capsize=3)
    axes.set_yticks(positions, frame["representation"].astype(str))
    axes.invert_yaxis()
    axes.set_title(title, fontsize=9)
    axes.set_xlim(max(0.0, float(np.nanmin(low)) - 0.05), min(1.0, float(np.nanmax(high)) + 0.05))


def study_figure(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Tagging macro ROC-AUC (probe and fine-tuning) and similarity NDCG@10 (each judgement), 95% intervals."""
    tagging, similarity = tables["tagging"], tables["similarity"]
    panels = [(f"tagging ({method}): macro ROC-AUC", group, "macro_roc_auc",
               group["macro_roc_auc_low"].to_numpy(float), group["macro_roc_auc_high"].to_numpy(float))
              for method, group in tagging.groupby("method", sort=False)]
    panels += [(f"similarity ({judgement}): NDCG@10", group, "ndcg@10",
                (group["ndcg@10"] - group["ndcg@10_half_width"]).to_numpy(float),
                (group["ndcg@10"] + group["ndcg@10_half_width"]).to_numpy(float))
               for judgement, group in similarity.groupby("judgement", sort=False)]
    figure = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    for axes, (title, group, value, low, high) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        _bars(axes, group, value, low, high, title)
    return figure


def study_plot(tables: Mapping[str, pd.DataFrame], path: Path) -> Path:
    figure = study_figure(tables)
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


def study_report(folder: str | Path, out: str | Path) -> Path:
    """The report page of a `pretrain-pairs` folder: the figure, both tables and the validation table."""
    folder = Path(folder)
    tables = {name: pd.read_csv(folder / f"{name}.csv") for name in ("tagging", "similarity")}
    sections = [Paragraph(f"Pair study folder: {folder}. Audio towers pretrained from scratch with one pair source "
                          "each (same steps, batch and seed), judged on held-out tracks only."),
                Plot(study_figure(tables), caption="test tracks; bars are 95% intervals"),
                Heading("Tagging"),
                Table(_shown(tables["tagging"], TAGGING_COLUMNS),
                      caption="macro over tags; bootstrap over test tracks; p: paired bootstrap against artist "
                              "pairs, Holm within each method"),
                Heading("Similarity"),
                Table(_shown(tables["similarity"], SIMILARITY_COLUMNS),
                      caption="mean over query tracks with the t half-width; p: paired tests against artist pairs, "
                              "Holm within each judgement")]
    validation = folder / "similarity_validation.csv"
    if validation.is_file():
        sections += [Heading("Similarity on validation tracks (what choices read)"),
                     Table(_shown(pd.read_csv(validation), SIMILARITY_COLUMNS))]
    return write_html_report(out, "tunespace pair study", sections)

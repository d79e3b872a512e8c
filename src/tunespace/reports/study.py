"""The study's Table 3 from seeded benchmark runs: mean over seeds with a 95% interval over users and the spread
over seeds, per-seed rows, paired tests against each row's baseline, and a bar chart.

Aggregation over seeds: each user's metric is averaged over the seeds first, then the table reports the mean over
users of those averages (equal to the mean over seeds of the per-seed means, as every seed ranks for the same
users), its Student-t interval over users, and the standard deviation over seeds of the per-seed means (ddof 1;
empty with one seed). The paired tests use the same seed-averaged per-user values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tunespace.evaluation.benchmark import BenchmarkRun, ModelSpec, SeededRuns
from tunespace.evaluation.evaluate import EvaluationResult
from tunespace.io import atomic_path, write_text
from tunespace.reports.tables import HEADLINE, results_frame, to_markdown

PARTS = ("results", "cold_results")


def _part(run: BenchmarkRun, part: str) -> dict[str, EvaluationResult]:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return getattr(run, part)


def seed_averaged(runs: Sequence[BenchmarkRun], part: str = "results") -> dict[str, EvaluationResult]:
    """Per row, every metric of every user averaged over the runs (users matched by id; coverage averaged)."""
    averaged = {}
    for label, first in _part(runs[0], part).items():
        results = [_part(run, part)[label] for run in runs]
        frames = [result.per_user.set_index("user_id") for result in results]
        if any(len(frame) != len(frames[0]) or not frame.index.isin(frames[0].index).all() for frame in frames):
            raise ValueError(f"{label}: the seeds were evaluated on different users")
        per_user = pd.concat(frames).groupby(level=0, sort=False).mean().loc[frames[0].index].reset_index()
        coverage = {key: float(np.mean([result.coverage[key] for result in results])) for key in first.coverage}
        averaged[label] = EvaluationResult(model=label, ks=first.ks, per_user=per_user, coverage=coverage)
    return averaged


def per_seed_frame(seeded: SeededRuns, part: str = "results", metrics: Sequence[str] = HEADLINE) -> pd.DataFrame:
    """One row per (model, seed): the mean over users of each metric, and the fit time of that seed's model
    (a deterministic model is fitted once, so its rows repeat one fit)."""
    rows = []
    for seed, run in zip(seeded.seeds, seeded.runs):
        for label, result in _part(run, part).items():
            row: dict[str, object] = {"model": label, "seed": seed, "seeded": seeded.seeded[label],
                                      "users": len(result.per_user)}
            row.update({metric: float(result.per_user[metric].mean()) for metric in metrics})
            row["fit_s"] = run.fit_seconds[label]
            rows.append(row)
    return pd.DataFrame(rows)


def study_frame(seeded: SeededRuns, specs: Sequence[ModelSpec], part: str = "results",
                metrics: Sequence[str] = HEADLINE, level: float = 0.95) -> pd.DataFrame:
    """Numeric table: model, family, variant, users, seeds, then per metric its mean, `_low`, `_high` (interval
    over users) and `_std` (over seeds; NaN with one seed and for deterministic models, which are fitted once),
    then the mean fit time in seconds."""
    frame = results_frame(seed_averaged(seeded.runs, part), metrics, level)
    if frame.empty:
        return frame
    per_seed = per_seed_frame(seeded, part, metrics)
    by_label = {spec.label: spec for spec in specs}
    frame.insert(1, "family", [by_label[label].family for label in frame["model"]])
    frame.insert(2, "variant", [by_label[label].variant for label in frame["model"]])
    frame.insert(4, "seeds", [len(seeded.seeds) if seeded.seeded[label] else 1 for label in frame["model"]])
    grouped = per_seed[per_seed["seeded"]].groupby("model", sort=False)
    for metric in metrics:
        position = frame.columns.get_loc(f"{metric}_high") + 1
        spread = grouped[metric].std(ddof=1)  # NaN for a single seed; deterministic rows are not in `grouped`
        frame.insert(position, f"{metric}_std", frame["model"].map(spread).to_numpy(dtype=float))
    grouped = per_seed.groupby("model", sort=False)
    frame["fit_s"] = frame["model"].map(grouped["fit_s"].mean()).to_numpy(dtype=float)
    return frame


def formatted_study(frame: pd.DataFrame, metrics: Sequence[str] = HEADLINE, digits: int = 4) -> pd.DataFrame:
    """`mean ± half-width` with `(sd x)` over seeds where there is more than one, for people."""
    out = frame[["model", "users"]].copy()
    for metric in metrics:
        half = (frame[f"{metric}_high"] - frame[f"{metric}_low"]) / 2
        cells = []
        for mean, h, std in zip(frame[metric], half, frame[f"{metric}_std"]):
            cell = f"{mean:.{digits}f} ± {h:.{digits}f}" if np.isfinite(h) else f"{mean:.{digits}f}"
            cells.append(cell + (f" (sd {std:.{digits}f})" if np.isfinite(std) else ""))
        out[metric] = cells
    out["fit_s"] = [f"{value:.1f}" for value in frame["fit_s"]]
    return out


def formatted_tests(tests: pd.DataFrame, notes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The columns people read (metric, model, baseline, difference, Holm-corrected p-values), rounded."""
    shown = tests[["metric", "model", "baseline", "mean_difference", "t_p_holm", "wilcoxon_p_holm"]].copy()
    shown["mean_difference"] = shown["mean_difference"].map(lambda v: f"{v:+.4f}")
    for column in ("t_p_holm", "wilcoxon_p_holm"):
        shown[column] = shown[column].map(lambda v: f"{v:.3g}")
    if notes:
        shown["note"] = [notes.get(model, "") for model in shown["model"]]
    return shown


VARIANT_COLOURS = {"reference": "#8c8c8c", "random init": "#c7c7c7"}


def study_chart(frame: pd.DataFrame, metric: str = "ndcg@50", title: str | None = None) -> Figure:
    """Bars of `metric` with their interval as error bars, grouped by model family, one colour per variant
    (backend, random init, reference)."""
    figure = Figure(figsize=(max(6.0, 0.45 * len(frame) + 2.5), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    families = list(dict.fromkeys(frame["family"]))
    variants = list(dict.fromkeys(frame["variant"]))
    palette = iter(f"C{i}" for i in range(10 * len(variants)))
    colours = {v: VARIANT_COLOURS.get(v) or next(palette) for v in variants}
    width, position, centres, drawn = 0.8, 0.0, [], set()
    for family in families:
        rows = frame[frame["family"] == family]
        slots = np.arange(len(rows)) * width + position
        centres.append(slots.mean())
        for x, (_, row) in zip(slots, rows.iterrows()):
            mean, low, high = float(row[metric]), float(row[f"{metric}_low"]), float(row[f"{metric}_high"])
            error = [[mean - low], [high - mean]] if np.isfinite(low) and np.isfinite(high) else None
            variant = row["variant"]
            axes.bar(x, mean, width * 0.9, yerr=error, capsize=3, color=colours[variant], edgecolor="black",
                     linewidth=0.5, label=None if variant in drawn else variant.replace("$", r"\$"))
            drawn.add(variant)
        position = slots[-1] + 2 * width
    axes.set_xticks(centres)
    axes.set_xticklabels([family.replace("$", r"\$") for family in families])
    axes.set_ylabel(metric)
    axes.set_title(title or f"{metric} by model and backend (95% intervals over users)")
    axes.legend(fontsize=8, frameon=False)
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_ylim(bottom=0)
    return figure


def write_png(figure: Figure, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def write_study_table(frame: pd.DataFrame, per_seed: pd.DataFrame, folder: str | Path, stem: str,
                      preamble: str = "", extra: str = "", metrics: Sequence[str] = HEADLINE,
                      extra_columns: Mapping[str, Sequence[str]] | None = None) -> tuple[Path, Path, Path]:
    """`<stem>.csv` (numbers), `<stem>_per_seed.csv` and `<stem>.md` (preamble, formatted table, then `extra`)."""
    folder = Path(folder)
    paths = folder / f"{stem}.csv", folder / f"{stem}_per_seed.csv", folder / f"{stem}.md"
    shown = formatted_study(frame, metrics)
    for column, values in (extra_columns or {}).items():
        shown[column] = list(values)
    write_text(frame.to_csv(index=False), paths[0])
    write_text(per_seed.to_csv(index=False), paths[1])
    write_text(preamble + to_markdown(shown) + extra, paths[2])
    return paths

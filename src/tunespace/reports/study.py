"""The study's Table 3 from seeded benchmark runs: mean over seeds with a 95% interval over users and the spread
over seeds, per-seed rows, paired tests against each row's baseline, and a bar chart.

Aggregation over seeds: each user's metric is averaged over the seeds first, then the table reports the mean over
users of those averages (equal to the mean over seeds of the per-seed means, as every seed ranks for the same
users), its Student-t interval over users, and the standard deviation over seeds of the per-seed means (ddof 1;
empty with one seed). The paired tests use the same seed-averaged per-user values.

Aggregation over split seeds (`--split-seeds`, see `tunespace.evaluation.seeds`): the table above is made for each
split seed, then `combine_split_seeds` averages every numeric column over the split seeds: a metric's value is the
mean over split seeds of the per-split-seed means, `_low`/`_high` the mean of the per-split-seed interval bounds
(so the half-width is the mean half-width of one split seed's interval over users, centred on that mean), `_std`
the mean over split seeds of the spread over training seeds; `_split_sd` is added, the standard deviation over
split seeds of the per-split-seed means (ddof 1; NaN with one split seed). Set beside the half-width it says whether
one partition's interval over users covers the partition-to-partition variation.
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
    return {label: mean_result([_part(run, part)[label] for run in runs], label) for label in _part(runs[0], part)}


def mean_result(results: Sequence[EvaluationResult], label: str) -> EvaluationResult:
    """One row's results over several training seeds as one: every metric of every user averaged over them (users
    matched by id, in the first result's order; coverage averaged). They must cover the same users."""
    first = results[0]
    frames = [result.per_user.set_index("user_id") for result in results]
    if any(len(frame) != len(frames[0]) or not frame.index.isin(frames[0].index).all() for frame in frames):
        raise ValueError(f"{label}: the seeds were evaluated on different users")
    per_user = pd.concat(frames).groupby(level=0, sort=False).mean().loc[frames[0].index].reset_index()
    coverage = {key: float(np.mean([result.coverage[key] for result in results])) for key in first.coverage}
    return EvaluationResult(model=label, ks=first.ks, per_user=per_user, coverage=coverage)


def per_seed_frame(seeded: SeededRuns, part: str = "results", metrics: Sequence[str] = HEADLINE,
                   split_seed: int | None = None) -> pd.DataFrame:
    """One row per (model, seed): the mean over users of each metric, the fit time of that seed's model (a
    deterministic model is fitted once, so its rows repeat one fit) and, for trained models, `epochs_run` and
    `best_epoch` (the epoch whose weights were kept; empty for other models). With `split_seed`, a `split_seed`
    column comes second."""
    rows = []
    for seed, run in zip(seeded.seeds, seeded.runs):
        for label, result in _part(run, part).items():
            row: dict[str, object] = {"model": label}
            if split_seed is not None:
                row["split_seed"] = split_seed
            row.update({"seed": seed, "seeded": seeded.seeded[label], "users": len(result.per_user)})
            row.update({metric: float(result.per_user[metric].mean()) for metric in metrics})
            row["fit_s"] = run.fit_seconds[label]
            training = run.training.get(label, {})
            row["epochs_run"] = training.get("epochs_run", np.nan)
            row["best_epoch"] = training.get("best_epoch", np.nan)
            rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("epochs_run", "best_epoch"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


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


def combine_split_seeds(frames: Mapping[int, pd.DataFrame], metrics: Sequence[str] = HEADLINE) -> pd.DataFrame:
    """One table from per-split-seed tables of the same rows (each from `study_frame` or `results_frame`): numeric
    columns averaged over split seeds, text columns from the first, `split_seeds` after `users`, and
    `<metric>_split_sd` (sd over split seeds of the per-split-seed means, ddof 1) after each metric's `_std` (or
    `_high`). With one split seed the table is unchanged but for those added columns."""
    frames = {seed: frame for seed, frame in frames.items() if not frame.empty}
    if not frames:
        return pd.DataFrame()
    first = next(iter(frames.values()))
    stacked = pd.concat(list(frames.values()), ignore_index=True)
    grouped = stacked.groupby("model", sort=False)
    numeric = [c for c in first.columns if c != "model" and pd.api.types.is_numeric_dtype(first[c])]
    text = [c for c in first.columns if c != "model" and c not in numeric]
    combined = pd.concat([grouped[text].first(), grouped[numeric].mean()], axis=1).reset_index()
    combined = combined[list(first.columns)]
    if len(frames) == 1:
        combined["users"] = first["users"].to_numpy()
    combined.insert(combined.columns.get_loc("users") + 1, "split_seeds",
                    combined["model"].map(grouped.size()).to_numpy())
    for metric in metrics:
        after = f"{metric}_std" if f"{metric}_std" in combined else f"{metric}_high"
        spread = grouped[metric].std(ddof=1)
        combined.insert(combined.columns.get_loc(after) + 1, f"{metric}_split_sd",
                        combined["model"].map(spread).to_numpy(dtype=float))
    return combined


def split_seed_results_table(per_seed: Mapping[int, Mapping[str, EvaluationResult]],
                             metrics: Sequence[str] = HEADLINE, level: float = 0.95) -> pd.DataFrame:
    """`results_frame` for each split seed's results (row label -> result, e.g. `SplitSeedRuns.averaged()`),
    combined over split seeds by `combine_split_seeds`: mean of the per-split-seed means, mean interval bounds,
    and the sd over split seeds."""
    return combine_split_seeds({seed: results_frame(results, metrics, level) for seed, results in per_seed.items()},
                               metrics)


def formatted_study(frame: pd.DataFrame, metrics: Sequence[str] = HEADLINE, digits: int = 4) -> pd.DataFrame:
    """`mean ± half-width` with `(sd x)` over training seeds and `split sd y` over split seeds where there is
    more than one, for people."""
    out = frame[["model", "users"]].copy()
    nan = pd.Series(np.nan, index=frame.index)
    for metric in metrics:
        half = (frame[f"{metric}_high"] - frame[f"{metric}_low"]) / 2
        cells = []
        for mean, h, std, split_sd in zip(frame[metric], half, frame.get(f"{metric}_std", nan),
                                          frame.get(f"{metric}_split_sd", nan)):
            cell = f"{mean:.{digits}f} ± {h:.{digits}f}" if np.isfinite(h) else f"{mean:.{digits}f}"
            spreads = ([f"sd {std:.{digits}f}"] if np.isfinite(std) else []) + (
                [f"split sd {split_sd:.{digits}f}"] if np.isfinite(split_sd) else [])
            cells.append(cell + (f" ({', '.join(spreads)})" if spreads else ""))
        out[metric] = cells
    out["fit_s"] = [f"{value:.1f}" for value in frame["fit_s"]]
    return out


def formatted_tests(tests: pd.DataFrame, notes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The columns people read (split seed and baseline kind where present, metric, model, baseline, difference,
    Holm-corrected p-values, sign agreement over split seeds where present), rounded."""
    columns = [c for c in ("split_seed", "baseline_kind", "metric", "model", "baseline", "mean_difference",
                           "t_p_holm", "wilcoxon_p_holm") if c in tests]
    shown = tests[columns].copy()
    shown["mean_difference"] = shown["mean_difference"].map(lambda v: f"{v:+.4f}")
    for column in ("t_p_holm", "wilcoxon_p_holm"):
        shown[column] = shown[column].map(lambda v: f"{v:.3g}")
    if "sign_agreement" in tests:
        shown["same sign"] = [f"{a} of {n}" for a, n in zip(tests["sign_agreement"], tests["split_seeds"])]
    if notes:  # notes explain a row's own baseline: not shown on its tests against the strongest reference
        kinds = tests["baseline_kind"] if "baseline_kind" in tests else pd.Series("", index=tests.index)
        shown["note"] = [notes.get(model, "") if kind != "reference" else ""
                         for model, kind in zip(shown["model"], kinds)]
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
                      extra_columns: Mapping[str, Sequence[str]] | None = None,
                      per_split_seed: pd.DataFrame | None = None) -> list[Path]:
    """`<stem>.csv` (numbers), `<stem>_per_seed.csv`, `<stem>.md` (preamble, formatted table, then `extra`) and,
    when given, `<stem>_per_split_seed.csv`."""
    folder = Path(folder)
    paths = [folder / f"{stem}.csv", folder / f"{stem}_per_seed.csv", folder / f"{stem}.md"]
    shown = formatted_study(frame, metrics)
    for column, values in (extra_columns or {}).items():
        shown[column] = list(values)
    write_text(frame.to_csv(index=False), paths[0])
    write_text(per_seed.to_csv(index=False), paths[1])
    write_text(preamble + to_markdown(shown) + extra, paths[2])
    if per_split_seed is not None:
        paths.append(folder / f"{stem}_per_split_seed.csv")
        write_text(per_split_seed.to_csv(index=False), paths[-1])
    return paths

"""One self-contained HTML page per report: headings, paragraphs, tables and figures, nothing fetched from elsewhere.

The page carries its own CSS and its figures as base64 PNG, so it can be mailed, archived or opened offline and
always shows the same thing. Every piece of text is HTML-escaped, so a model name or caption cannot break the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tunespace.errors import TunespaceError
from tunespace.io import write_text


class ReportError(TunespaceError, ValueError):
    """A report section cannot be rendered as asked (unknown section, missing column, bad option)."""


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""
    digits: int = 4
    best: Mapping[str, str] = field(default_factory=dict)  # column -> "max" or "min": that column's best in bold
    index: bool = False  # also show the frame's index as the first column


@dataclass(frozen=True)
class Plot:
    figure: Figure
    caption: str = ""
    dpi: int = 110


Section = Heading | Paragraph | Table | Plot | str | pd.DataFrame | Figure
"""A plain str is a paragraph, a DataFrame a table with default options, a Figure a plot without caption."""

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1, h2, h3, h4 { line-height: 1.2; }
div.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; max-width: 100%; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #d0d0d5; overflow-wrap: anywhere; }
th { background: #f2f2f5; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #f8f8fb; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-style: italic; font-size: 0.9rem; }
"""


def _number(value: object, digits: int) -> str | None:
    """Text of a numeric cell, or None when the value is not a number (bools are not numbers here)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        return None
    if isinstance(value, Integral):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "—"
    if value != 0 and abs(value) < 10.0**-digits:
        return f"{value:.{max(digits - 1, 0)}e}"
    return f"{value:.{digits}f}"


def _best_values(table: Table) -> dict[str, float]:
    best: dict[str, float] = {}
    for column, mode in table.best.items():
        if column not in table.frame.columns:
            raise ReportError(f"cannot bold the best of column {column!r}: the table has columns "
                              f"{', '.join(map(repr, table.frame.columns))}")
        if mode not in ("max", "min"):
            raise ReportError(f"best[{column!r}] must be 'max' or 'min', got {mode!r}")
        values = pd.to_numeric(table.frame[column], errors="coerce")
        if values.notna().any():
            best[column] = float(values.max() if mode == "max" else values.min())
    return best


def _table_html(table: Table) -> str:
    frame = table.frame.reset_index() if table.index else table.frame
    best = _best_values(table)
    lines = ['<div class="table-wrap"><table>']
    if table.caption:
        lines.append(f"<caption>{html.escape(table.caption)}</caption>")
    lines.append("<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns) + "</tr></thead>")
    lines.append("<tbody>")
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            number = _number(value, table.digits)
            if number is None:
                cells.append(f"<td>{html.escape(str(value))}</td>")
                continue
            text = html.escape(number)
            if column in best and not math.isnan(float(value)) and float(value) == best[column]:
                text = f"<strong>{text}</strong>"
            cells.append(f'<td class="num">{text}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _plot_html(plot: Plot) -> str:
    buffer = io.BytesIO()
    plot.figure.savefig(buffer, format="png", dpi=plot.dpi, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    caption = html.escape(plot.caption)
    parts = [f'<figure><img src="data:image/png;base64,{encoded}" alt="{caption}">']
    if plot.caption:
        parts.append(f"<figcaption>{caption}</figcaption>")
    parts.append("</figure>")
    return "".join(parts)


def _section_html(section: Section) -> str:
    if isinstance(section, str):
        section = Paragraph(section)
    elif isinstance(section, pd.DataFrame):
        section = Table(section)
    elif isinstance(section, Figure):
        section = Plot(section)
    if isinstance(section, Heading):
        if not 1 <= section.level <= 6:
            raise ReportError(f"heading level must be 1..6, got {section.level}")
        return f"<h{section.level}>{html.escape(section.text)}</h{section.level}>"
    if isinstance(section, Paragraph):
        return f"<p>{html.escape(section.text)}</p>"
    if isinstance(section, Table):
        return _table_html(section)
    if isinstance(section, Plot):
        return _plot_html(section)
    raise ReportError(f"cannot render a section of type {type(section).__name__}; use Heading, Paragraph, Table, "
                      "Plot, str, DataFrame or matplotlib Figure")


def render_html(title: str, sections: Sequence[Section]) -> str:
    """The page as a string (what `write_html_report` writes)."""
    body = "\n".join(_section_html(section) for section in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")


def write_html_report(path: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Write the report atomically (a crash leaves the previous page or none, never half of one)."""
    page = render_html(title, sections)
    path = Path(path)
    write_text(page, path)
    return path


def _plain(text: str) -> str:
    """Matplotlib reads text between dollar signs as math; escape them so labels print as written."""
    return text.replace("$", r"\$")


def tradeoff_plot(frame: pd.DataFrame, x: str, y: str, label: str, title: str | None = None) -> Figure:
    """Scatter of `y` against `x` with one point per row, joined by arrows in increasing `label` order.

    Made for ablations over a mixing weight: e.g. x = "t2a_R@10", y = "ndcg@50", label = "lambda" shows what
    semantic retrieval costs in recommendation quality (or the reverse) as lambda moves, each point annotated with
    its lambda. Rows with a missing x or y cannot be placed and are left out.
    """
    missing = [column for column in (x, y, label) if column not in frame.columns]
    if missing:
        raise ReportError(f"tradeoff_plot: column(s) {', '.join(map(repr, missing))} not in the frame, which has "
                          f"{', '.join(map(repr, frame.columns))}")
    points = frame[[x, y, label]].dropna(subset=[x, y]).sort_values(label, kind="stable")
    if points.empty:
        raise ReportError(f"tradeoff_plot: no row has both {x!r} and {y!r}")
    figure = Figure(figsize=(6.0, 4.5))
    FigureCanvasAgg(figure)
    _draw_tradeoff(figure.add_subplot(), points, x, y, label, title)
    return figure


def _draw_tradeoff(axes, points: pd.DataFrame, x: str, y: str, label: str, title: str | None) -> None:
    """Draw the trade-off of `tradeoff_plot` on `axes` (rows already filtered and sorted by `label`)."""
    xs, ys = points[x].to_numpy(dtype=float), points[y].to_numpy(dtype=float)
    axes.scatter(xs, ys, color="C0", zorder=3)
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:]):
        axes.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=2,
                      arrowprops={"arrowstyle": "->", "color": "C0", "alpha": 0.6, "shrinkA": 4, "shrinkB": 4})
    for xi, yi, value in zip(xs, ys, points[label]):
        text = f"{value:g}" if isinstance(value, Real) and not isinstance(value, bool) else str(value)
        axes.annotate(_plain(f"{label}={text}"), (xi, yi), xytext=(5, 5), textcoords="offset points", fontsize=8)
    axes.set_xlabel(_plain(x))
    axes.set_ylabel(_plain(y))
    axes.set_title(_plain(title if title is not None else f"{y} against {x} as {label} varies"))
    axes.grid(True, alpha=0.3)
    axes.margins(0.12)


# --- the page of an `htcl evaluate` folder: human headers, folded intervals, one figure ---------------------------

_PREFIXES = (("validation_", "validation "), ("chance_t2a_", "chance text->audio "), ("t2a_", "text->audio "),
             ("a2t_", "audio->text "))
_NAMES = {"hit_rate": "HR", "recall": "Recall", "ndcg": "NDCG", "median_rank": "median rank",
          "mean_rank": "mean rank", "tagging_macro_roc_auc": "tagging macro ROC-AUC",
          "tagging_macro_pr_auc": "tagging macro PR-AUC", "probe_family_accuracy": "probe family accuracy",
          "mean_difference": "mean difference", "t_p_holm": "t-test p (Holm)",
          "wilcoxon_p_holm": "Wilcoxon p (Holm)", "split_seed": "split seed", "held_out_tracks": "held-out tracks"}
_SUFFIXES = (("_split_sd", " sd over split seeds"), ("_raw", " (raw)"))
RANGED = ("hit_rate", "recall", "ndcg")  # metrics whose per-user values lie in [0, 1]


def human_header(column: str) -> str:
    """A column name for people: `t2a_R@1` -> "text->audio R@1", `hit_rate@50` -> "HR@50"."""
    text, suffix = str(column), ""
    for end, words in _SUFFIXES:
        if text.endswith(end):
            text, suffix = text[: -len(end)], words
    prefix = ""
    for start, words in _PREFIXES:
        if text.startswith(start):
            prefix, text = prefix + words, text[len(start):]
    name, at, cut = text.partition("@")
    return prefix + _NAMES.get(name, name.replace("_", " ")) + at + cut + suffix


def significant(value: object) -> str:
    """Three decimals below 1 (0.070), three significant digits from 1 up (2.00, 12.3, 1234); NaN as a dash."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    value = float(value)
    if math.isnan(value):
        return "—"
    if value == 0 or (abs(value) >= 1 and value.is_integer()):
        return str(int(value))
    if abs(value) < 1:
        return f"{value:.3f}" if abs(value) >= 0.001 else f"{value:.2e}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


def _interval_text(mean: float, low: float, high: float, marked: bool) -> str:
    if math.isnan(mean):
        return "—"
    if math.isnan(low) or math.isnan(high):
        return significant(mean)
    return f"{significant(mean)} ({significant(low)}-{significant(high)})" + (" *" if marked else "")


@dataclass(frozen=True)
class FoldedIntervals:
    frame: pd.DataFrame  # strings for people
    bounds: dict[str, pd.DataFrame]  # metric -> columns mean, low, high (numbers, for the figure)
    note: str  # which interval each metric shows


def fold_intervals(frame: pd.DataFrame) -> FoldedIntervals:
    """Fold `<metric>`, `<metric>_low`, `<metric>_high` into one "mean (low-high)" column under a human header.

    The folder keeps only each model's mean and per-user t-bounds. A hit rate is a 0/1 value per user, so its mean
    and the user count give the per-user values exactly (whenever mean x users is a whole number): its interval is
    recomputed as Wilson's, inside [0, 1]. Other metrics keep the t-interval of the CSV, unclipped; one that leaves
    [0, 1] is marked with *.
    """
    from tunespace.evaluation.significance import bounded_interval

    metrics = [c for c in frame.columns if f"{c}_low" in frame.columns and f"{c}_high" in frame.columns]
    out = pd.DataFrame(index=frame.index)
    bounds: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for column in frame.columns:
        if column in metrics:
            mean = frame[column].astype(float)
            low, high = frame[f"{column}_low"].astype(float), frame[f"{column}_high"].astype(float)
            wilson = 0
            if column.startswith("hit_rate") and "users" in frame.columns:
                low, high = low.copy(), high.copy()
                for row in frame.index:
                    users, rate = frame.at[row, "users"], mean[row]
                    hits = rate * users if not (pd.isna(users) or pd.isna(rate)) else float("nan")
                    if users >= 1 and abs(hits - round(hits)) < 1e-6:
                        values = np.r_[np.ones(int(round(hits))), np.zeros(int(users) - int(round(hits)))]
                        interval = bounded_interval(values, method="wilson")
                        low[row], high[row] = interval.low, interval.high
                        wilson += 1
            ranged = column.split("@")[0] in RANGED
            outside = ranged & ((low < 0) | (high > 1))
            out[human_header(column)] = [_interval_text(m, lo, hi, bool(o))
                                         for m, lo, hi, o in zip(mean, low, high, outside)]
            bounds[column] = pd.DataFrame({"mean": mean, "low": low, "high": high})
            shown = (f"Wilson 95% interval from the hit count ({wilson} of {len(frame)} rows; others the t-interval)"
                     if wilson and wilson < len(frame) else "Wilson 95% interval from the hit count"
                     if wilson else "per-user 95% t-interval as written by htcl evaluate")
            notes.append(f"{human_header(column)}: {shown}")
        elif not (column.endswith(("_low", "_high")) and column.rsplit("_", 1)[0] in metrics):
            out[human_header(column)] = frame[column].map(significant)
    note = "; ".join(notes)
    if notes:
        note = ("Cells read mean (low-high). " + note + ". Per-user values are not in the folder, so no other "
                "interval is recomputed; * marks a t-interval that leaves [0, 1], shown as computed, unclipped.")
    return FoldedIntervals(out, bounds, note)


def metric_figure(names: Sequence[str], bounds: Mapping[str, pd.DataFrame], tradeoff: pd.DataFrame | None = None,
                  x: str = "ndcg@50", y: str = "t2a_R@10", label: str = "lambda") -> Figure:
    """Horizontal bars of each metric per model with interval whiskers; a trade-off panel beside when given."""
    panels = 2 if tradeoff is not None else 1
    figure = Figure(figsize=(6.5 * panels, max(3.0, 0.45 * len(names) * max(len(bounds), 1) + 1.2)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, panels, 1)
    height = 0.8 / max(len(bounds), 1)
    positions = np.arange(len(names))
    for i, (metric, frame) in enumerate(bounds.items()):
        mean = frame["mean"].to_numpy(dtype=float)
        errors = np.vstack([mean - frame["low"].to_numpy(dtype=float), frame["high"].to_numpy(dtype=float) - mean])
        axes.barh(positions + i * height, mean, height=height, xerr=np.clip(np.nan_to_num(errors), 0, None), capsize=3,
                  color=f"C{i}", label=_plain(human_header(metric)))
    axes.set_yticks(positions + height * (len(bounds) - 1) / 2, [_plain(_short(str(n))) for n in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("mean over test users (whiskers: the interval in the table)")
    axes.set_title("recommendation metrics per model (test users)")
    axes.grid(True, axis="x", alpha=0.3)
    if bounds:
        axes.legend(fontsize=8, loc="lower right")
    if tradeoff is not None:
        points = tradeoff[[x, y, label]].dropna(subset=[x, y]).sort_values(label, kind="stable")
        right = figure.add_subplot(1, 2, 2)
        _draw_tradeoff(right, points, x, y, label, "stage 2 candidates on validation figures")
        right.set_xlabel(_plain(f"knn {human_header(x)}"))
        right.set_ylabel(_plain(human_header(y)))
    figure.tight_layout()
    return figure


def _short(name: str, width: int = 32) -> str:
    """A tick label that leaves room for the bars: long names keep their start and end."""
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2 - 1):]


def evaluation_report(evaluation: str | Path, out: str | Path) -> Path:
    """One page from a `tunespace htcl evaluate` folder: selection, semantic and preference tables with human headers
    and folded intervals, and a figure (metric bars per model; the lambda trade-off when 2+ distinct lambdas)."""
    evaluation = Path(evaluation)
    semantic = pd.read_csv(evaluation / "semantic.csv")
    if "part" not in semantic:
        semantic = semantic.assign(part="test")
    preference = pd.read_csv(evaluation / "preference.csv")
    knn = preference[preference["model"].str.startswith("knn[")].assign(
        run=lambda f: f["model"].str.slice(4, -1))[["run", "ndcg@50"]]
    merged = semantic[semantic["part"] == "test"].merge(knn, on="run", how="left")
    semantic_columns = [c for c in ["run", "status", "lambda", "mu", "t2a_R@1", "t2a_R@5", "t2a_R@10",
                                    "chance_t2a_R@10", "t2a_median_rank", "a2t_R@10", "tagging_macro_roc_auc",
                                    "probe_family_accuracy", "ndcg@50"] if c in merged]
    folded = fold_intervals(preference.drop(columns=[c for c in ("split_seeds",) if c in preference]))
    selection = pd.read_csv(evaluation / "selection.csv") if (evaluation / "selection.csv").exists() else None
    if selection is not None:
        staged = selection[selection["role"] == "candidate"].dropna(subset=["lambda"]).rename(
            columns={"validation_ndcg@50": "ndcg@50", "validation_t2a_R@10": "t2a_R@10"})
    else:
        staged = merged.dropna(subset=["lambda"]) if "lambda" in merged else merged.iloc[:0]
    lambdas = staged["lambda"].nunique() if "lambda" in staged else 0
    tradeoff = staged if lambdas >= 2 and {"ndcg@50", "t2a_R@10"} <= set(staged.columns) else None
    shown = {m: f for m, f in folded.bounds.items() if m.split("@")[0] in RANGED}
    figure = metric_figure(list(preference["model"]), shown, tradeoff)
    why = ("" if tradeoff is not None else
           f" The lambda trade-off panel is absent: it needs stage-2 candidates at two or more distinct lambdas, "
           f"and this folder has {lambdas}.")
    sections: list[Section] = [
        Paragraph(f"Evaluation folder: {evaluation}. Runs are chosen on validation figures only; test figures are "
                  "for the selected candidate and the fixed arms. Semantic metrics are on held-out tracks never "
                  "trained on; recommendation metrics use the temporal protocol (full ranking, seen items removed)."),
        Plot(figure, caption="left: each model's test metrics with the intervals of the preference table; right "
                             "(when present): each stage-2 candidate on validation figures as lambda moves." + why),
    ]
    if tradeoff is None:
        sections.append(Paragraph(why.strip()))
    if selection is not None:
        columns = [c for c in ["run", "role", "lambda", "mu", "beta", "validation_ndcg@50",
                               "validation_ndcg@50_split_sd", "validation_t2a_R@10", "required_t2a_R@10",
                               "qualified", "selected", "reason"] if c in selection]
        sections += [Heading("Selection (validation figures only)"),
                     Table(_human(selection[columns]), caption="every candidate's validation figures, whether it "
                           "keeps the semantic space (text->audio R@10 within 10 % of stage 1's) and which was chosen")]
    sections += [
        Heading("Semantic space (test half of the held-out tracks)"),
        Table(_human(merged[semantic_columns]), caption="retrieval, zero-shot tagging, probe; knn NDCG@50 for "
                                                         "reference"),
        Heading("Preference space (test users)"),
        Paragraph(folded.note),
        Table(folded.frame, caption="content recommenders over each embedding set"),
    ]
    if (evaluation / "cold.csv").exists():
        cold = pd.read_csv(evaluation / "cold.csv")
        sections.append(Table(fold_intervals(cold.drop(columns=[c for c in ("split_seeds",) if c in cold])).frame,
                              caption="the same on the cold items (tracks first played after the cutoff)"))
    if (evaluation / "significance.csv").exists():
        tests = pd.read_csv(evaluation / "significance.csv")
        columns = [c for c in ["part", "split_seed", "family", "model", "baseline", "mean_difference", "t_p_holm",
                               "wilcoxon_p_holm"] if c in tests]
        sections.append(Table(_human(tests[columns]), caption="NDCG@50 paired tests over users per split seed, "
                                                              "Holm-corrected within each part, seed and family"))
    return write_html_report(out, "tunespace HTCL report", sections)


def _human(frame: pd.DataFrame) -> pd.DataFrame:
    """Human headers and `significant` cells."""
    return pd.DataFrame({human_header(c): frame[c].map(significant) for c in frame.columns})


def per_user_intervals(per_user: pd.DataFrame, metrics: Sequence[str], level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> dict[str, pd.DataFrame]:
    """Metric -> model-indexed mean, low, high from per-user values, inside [0, 1] by construction.

    A benchmark's figure is the mean over its (split seed, training seed) groups of each group's mean over users.
    The same user sits in several groups, so the interval is a percentile bootstrap that resamples users (not rows)
    and recomputes every group's mean from the resampled users, averaged as the figure is. With one group a hit rate
    (0 or 1 per user) gets Wilson's interval instead.
    """
    from tunespace.evaluation.significance import bounded_interval

    groups = [c for c in ("split_seed", "seed") if c in per_user.columns]
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    out: dict[str, pd.DataFrame] = {}
    for metric in metrics:
        rows = {}
        for model, frame in per_user.groupby("model", sort=False):
            keys = frame[groups].astype(str).agg("/".join, axis=1) if groups else pd.Series("all", frame.index)
            table = frame.assign(group=keys.to_numpy()).pivot_table(index="user_id", columns="group", values=metric,
                                                                    aggfunc="mean")
            values = table.to_numpy(dtype=float)  # users x groups, NaN where a user is not in a group
            present = ~np.isnan(values)
            mean = float(np.nanmean(values, axis=0).mean())
            if values.shape[1] == 1 and metric.startswith("hit_rate"):
                interval = bounded_interval(values[present[:, 0], 0], method="wilson", level=level)
                rows[model] = (mean, interval.low, interval.high)
                continue
            users = values.shape[0]
            counts = rng.multinomial(users, np.full(users, 1.0 / users), size=resamples).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                group_means = (counts @ np.nan_to_num(values)) / (counts @ present)
            draws = np.nanmean(group_means, axis=1)
            rows[model] = (mean, float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail)))
        out[metric] = pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "low", "high"])
    return out


def _interval_columns(frame: pd.DataFrame, bounds: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """model plus one "mean (low-high)" column per metric under a human header."""
    out = pd.DataFrame({"model": frame["model"].astype(str)})
    for metric, interval in bounds.items():
        rows = interval.reindex(frame["model"])
        out[human_header(metric)] = [_interval_text(m, lo, hi, False) for m, lo, hi in
                                     zip(rows["mean"], rows["low"], rows["high"])]
    return out


def _preamble(markdown: Path) -> str:
    """The protocol paragraph that `evaluate` and `benchmark recsys` write under the title of results.md."""
    if not markdown.is_file():
        return ""
    paragraphs = [p.strip() for p in markdown.read_text(encoding="utf-8").split("\n\n")]
    return next((p for p in paragraphs if p and not p.startswith(("#", "|"))), "")


def results_report(folder: str | Path, out: str | Path) -> Path:
    """One page from a folder written by `tunespace evaluate`, `benchmark recsys` or the demo: the protocol, a figure
    of each model's headline metrics with intervals, the table, and the paired tests of the headline metric."""
    folder = Path(folder)
    frame = pd.read_csv(folder / "results.csv")
    metrics = [c for c in frame.columns if f"{c}_low" in frame.columns and c.split("@")[0] in RANGED]
    largest = max((int(m.split("@")[1]) for m in metrics), default=0)
    shown = [m for m in metrics if m.endswith(f"@{largest}")]
    per_user_path = folder / "per_user.parquet"
    per_user = pd.read_parquet(per_user_path) if per_user_path.is_file() else None
    if per_user is not None and set(frame["model"].astype(str)) <= set(per_user["model"].astype(str)):
        bounds = per_user_intervals(per_user, metrics)
        table = _interval_columns(frame, bounds)
        note = ("Cells read mean (low-high): a 95% percentile bootstrap over test users (each resample recomputes "
                "every split and training seed's mean from the drawn users; Wilson's interval for a hit rate from "
                "one group), so no bound leaves [0, 1].")
    else:
        folded = fold_intervals(frame[["model", "users", *[c for m in metrics for c in (m, f"{m}_low", f"{m}_high")]]])
        bounds, table, note = folded.bounds, folded.frame, folded.note
        for metric in bounds:
            bounds[metric] = bounds[metric].set_axis(frame["model"].astype(str))
    extra = [c for c in ("users", "beta", "fit_s") if c in frame.columns and human_header(c) not in table.columns]
    for column in extra:
        table[human_header(column)] = frame[column].map(significant).to_numpy()
    names = list(frame["model"].astype(str))
    figure = metric_figure(names, {m: bounds[m].reindex(names) for m in shown})
    sections: list[Section] = [
        Paragraph(f"Results folder: {folder}. " + _preamble(folder / "results.md")),
        Plot(figure, caption=f"each model's test metrics at k={largest} with the intervals of the table"),
        Heading("Results (test users)"),
        Paragraph(note),
        Table(table, caption="every model, every cut-off"),
    ]
    if (folder / "cold.csv").is_file():
        cold = pd.read_csv(folder / "cold.csv")
        cold_metrics = [c for c in cold.columns if f"{c}_low" in cold.columns]
        kept = ["model", *(["users"] if "users" in cold else []),
                *[c for m in cold_metrics for c in (m, f"{m}_low", f"{m}_high")]]
        sections.append(Table(fold_intervals(cold[kept]).frame,
                              caption="cold items (first played after the cutoff), t-intervals as written"))
    if (folder / "significance.csv").is_file():
        tests = pd.read_csv(folder / "significance.csv")
        headline = f"ndcg@{largest}"
        if "metric" in tests:
            tests = tests[tests["metric"] == headline]
        columns = [c for c in ["baseline_kind", "model", "baseline", "mean_difference", "t_p_holm",
                               "wilcoxon_p_holm"] if c in tests]
        sections += [Heading(f"Paired tests on {human_header(headline)}"),
                     Table(_human(tests[columns]), caption="paired over test users, Holm-corrected")]
    return write_html_report(out, "tunespace results report", sections)

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
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #d0d0d5; }
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
    lines = ["<table>"]
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
    lines.append("</tbody></table>")
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
    axes = figure.add_subplot()
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
    return figure

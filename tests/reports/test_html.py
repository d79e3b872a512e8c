"""Tests for tunespace.reports.html: one self-contained page, escaped text, formatted tables, embedded figures."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tunespace.reports.html import (
    Heading,
    Paragraph,
    Plot,
    ReportError,
    Table,
    render_html,
    tradeoff_plot,
    write_html_report,
)

HOSTILE = "<script>alert('x')</script> & \"quotes\""


class Page(HTMLParser):
    """Collects what the tests look at: start tags with attributes, table cells, bold cells, all text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[list[list[str]]] = []
        self.bold: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_bold = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "strong":
            self._in_bold = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "strong":
            self._in_bold = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_bold:
            self.bold.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def ablation() -> pd.DataFrame:
    # rows deliberately out of lambda order
    return pd.DataFrame({"lambda": [0.5, 0.0, 1.0, 0.25], "t2a_R@10": [0.30, 0.05, 0.42, 0.20],
                         "ndcg@50": [0.21, 0.25, 0.12, 0.24]})


def sections():
    results = pd.DataFrame({"model": ["mf", HOSTILE, "tunespace"], "users": [100, 100, 100],
                            "ndcg@50": [0.123456, 0.2, np.nan], "median_rank": [12.0, 3.5, 3.5]})
    return [
        Heading("Section <1> & more"),
        Paragraph(HOSTILE),
        "a plain string is a paragraph",
        Table(results, caption="caption <b>not bold</b>", best={"ndcg@50": "max", "median_rank": "min"}),
        ablation(),
        Plot(tradeoff_plot(ablation(), "t2a_R@10", "ndcg@50", "lambda"), caption="trade-off <fig>"),
        tradeoff_plot(ablation(), "t2a_R@10", "ndcg@50", "lambda"),
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[str, Page]:
    folder = tmp_path_factory.mktemp("report")
    path = write_html_report(folder / "report.html", f"Report {HOSTILE}", sections())
    assert [p.name for p in folder.iterdir()] == ["report.html"]  # the temporary file was renamed away
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_text_is_escaped(page):
    text, parsed = page
    assert not parsed.named("script")  # the hostile string stayed text
    assert not any(name == "b" for name, _ in parsed.tags)
    assert HOSTILE in "".join(parsed.text)
    assert "Section <1> & more" in parsed.text
    assert "&lt;script&gt;" in text


def test_page_is_self_contained(page):
    text, parsed = page
    assert not parsed.named("link") and not parsed.named("script")
    for _, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value.lower().startswith(("http:", "https:", "//")), value
    assert "http://" not in text and "https://" not in text
    assert len(parsed.named("style")) == 1


def test_figures_are_embedded_png(page):
    _, parsed = page
    images = parsed.named("img")
    assert len(images) == 2
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        assert base64.b64decode(attrs["src"][len(prefix):]).startswith(b"\x89PNG\r\n\x1a\n")
    assert images[0]["alt"] == "trade-off <fig>"


def test_tables_are_formatted(page):
    _, parsed = page
    assert len(parsed.tables) == 2
    header, *rows = parsed.tables[0]
    assert header == ["model", "users", "ndcg@50", "median_rank"]
    assert rows[0] == ["mf", "100", "0.1235", "12.0000"]
    assert rows[1][0] == HOSTILE
    assert rows[2][2] == "—"  # NaN
    # the best ndcg (max) is bold, and both tied best median ranks (min)
    assert sorted(parsed.bold) == ["0.2000", "3.5000", "3.5000"]
    ablation_header, *ablation_rows = parsed.tables[1]
    assert ablation_header == ["lambda", "t2a_R@10", "ndcg@50"]
    assert len(ablation_rows) == 4


def test_render_options():
    frame = pd.DataFrame({"x": [1e-7, 2.0], "flag": [True, False]}, index=pd.Index(["a", "b"], name="run"))
    parsed = Page(render_html("t", [Table(frame, digits=2, index=True), Heading("deep", level=4)]))
    assert parsed.tables[0] == [["run", "x", "flag"], ["a", "1.0e-07", "True"], ["b", "2.00", "False"]]
    assert parsed.named("h4")


def test_bad_sections_raise():
    with pytest.raises(ReportError, match="type int"):
        render_html("t", [3])
    with pytest.raises(ReportError, match="'nope'"):
        render_html("t", [Table(ablation(), best={"nope": "max"})])
    with pytest.raises(ReportError, match="'max' or 'min'"):
        render_html("t", [Table(ablation(), best={"lambda": "largest"})])
    with pytest.raises(ReportError, match="level"):
        render_html("t", [Heading("h", level=7)])


def test_tradeoff_plot_follows_lambda_order():
    frame = ablation()
    figure = tradeoff_plot(frame, "t2a_R@10", "ndcg@50", "lambda")
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    labels = [t.get_text() for t in axes.texts if t.get_text()]
    assert labels == ["lambda=0", "lambda=0.25", "lambda=0.5", "lambda=1"]
    ordered = frame.sort_values("lambda")
    points = list(zip(ordered["t2a_R@10"], ordered["ndcg@50"]))
    arrows = [t for t in axes.texts if not t.get_text()]
    assert [(a.xyann, a.xy) for a in arrows] == list(zip(points[:-1], points[1:]))
    assert axes.get_xlabel() == "t2a_R@10" and axes.get_ylabel() == "ndcg@50"


def test_tradeoff_plot_errors_and_missing_values():
    with pytest.raises(ReportError, match="'recall'"):
        tradeoff_plot(ablation(), "recall", "ndcg@50", "lambda")
    frame = ablation()
    frame.loc[0, "ndcg@50"] = np.nan
    labels = [t.get_text() for t in tradeoff_plot(frame, "t2a_R@10", "ndcg@50", "lambda").axes[0].texts]
    assert "lambda=0.5" not in labels
    with pytest.raises(ReportError, match="no row"):
        tradeoff_plot(frame.assign(**{"ndcg@50": np.nan}), "t2a_R@10", "ndcg@50", "lambda")

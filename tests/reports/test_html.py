"""Tests for tunespace.reports.html: one self-contained page, escaped text, formatted tables, embedded figures."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tunespace.evaluation.significance import SignificanceError, bounded_interval
from tunespace.reports.html import (
    Heading,
    Paragraph,
    Plot,
    ReportError,
    Table,
    evaluation_report,
    human_header,
    per_user_intervals,
    render_html,
    results_report,
    significant,
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


def test_bounded_interval_wilson_known_answers():
    # hand-computed, z = 1.959964: 5 hits of 10 -> 0.5 -/+ 0.263407; 0 of 10 -> [0, 2 * 0.138767]
    half = bounded_interval(np.r_[np.ones(5), np.zeros(5)])
    assert (half.mean, half.low, half.high, half.n) == (0.5, pytest.approx(0.236593, abs=1e-6),
                                                       pytest.approx(0.763407, abs=1e-6), 10)
    none = bounded_interval(np.zeros(10))
    assert none.low == 0.0 and none.high == pytest.approx(0.277533, abs=1e-6)
    every = bounded_interval(np.ones(10))
    assert every.low == pytest.approx(0.722467, abs=1e-6) and every.high <= 1.0
    # a 0/10 range scales the same way; 1 hit in 50 stays above 0 where a t-interval would not
    assert bounded_interval(np.zeros(10) + 10, low=0, high=10).low == pytest.approx(7.22467, abs=1e-5)
    assert bounded_interval(np.r_[1.0, np.zeros(49)]).low > 0


def test_bounded_interval_bootstrap_stays_in_range():
    for values in (np.zeros(20), np.ones(20)):
        interval = bounded_interval(values, method="bootstrap")
        assert interval.low == interval.high == values[0]
    values = np.r_[np.zeros(40), np.full(2, 0.9)]
    first, again = (bounded_interval(values, method="bootstrap", seed=3) for _ in range(2))
    assert first == again and 0.0 <= first.low <= first.mean <= first.high <= 1.0
    with pytest.raises(SignificanceError, match="all 0"):
        bounded_interval(values)  # Wilson needs hits
    with pytest.raises(SignificanceError, match="outside"):
        bounded_interval(np.r_[0.5, 1.5], method="bootstrap")
    with pytest.raises(SignificanceError, match="unknown method"):
        bounded_interval(values, method="t")


def test_human_headers_and_digits():
    assert human_header("t2a_R@1") == "text->audio R@1"
    assert human_header("hit_rate@50") == "HR@50"
    assert human_header("validation_ndcg@50_split_sd") == "validation NDCG@50 sd over split seeds"
    assert human_header("a2t_median_rank") == "audio->text median rank"
    assert [significant(v) for v in (0.0704, 2.0, 12.345, 1234.0, 9.0, np.nan, 0.0001234, "x")] == \
        ["0.070", "2", "12.3", "1234", "9", "—", "1.23e-04", "x"]
    assert significant(2.5) == "2.50"


def evaluation_folder(path, lambdas):
    """A small synthetic `htcl evaluate` folder: 1 hit in 50 users has a t-interval below 0."""
    path.mkdir()
    runs = ["s1", "control"] + [f"s2-{i}" for i in range(len(lambdas))]
    rows = []
    for part in ("validation", "test"):
        for i, run in enumerate(runs):
            rows.append({"run": run, "status": "fixed arm" if i < 2 else "candidate", "part": part,
                         "lambda": np.nan if i < 2 else lambdas[i - 2], "mu": 0.0, "t2a_R@1": 0.1 * i,
                         "t2a_R@10": 0.2 + 0.1 * i, "a2t_R@10": 0.3})
    pd.DataFrame(rows).to_csv(path / "semantic.csv", index=False)
    long_name = "knn[" + "a-very-long-embedding-set-name-" * 4 + "]"
    models = ["popularity"] + [f"knn[{run}]" for run in runs] + [long_name]
    n = len(models)
    frame = pd.DataFrame({"model": models, "users": [50.0] * n, "split_seeds": [1] * n,
                          "hit_rate@50": [0.02] * n, "hit_rate@50_low": [-0.0025] * n,
                          "hit_rate@50_high": [0.0395] * n, "ndcg@50": [0.01] * n,
                          "ndcg@50_low": [-0.004] * n, "ndcg@50_high": [0.024] * n, "status": ["fixed arm"] * n})
    frame.to_csv(path / "preference.csv", index=False)
    frame.to_csv(path / "cold.csv", index=False)
    pd.DataFrame({"run": runs[2:], "role": "candidate", "lambda": lambdas, "validation_ndcg@50": 0.05,
                  "validation_t2a_R@10": 0.4, "qualified": True, "selected": [True] + [False] * (len(lambdas) - 1)}
                 ).to_csv(path / "selection.csv", index=False)
    return path


def test_evaluation_report_one_lambda(tmp_path):
    folder = evaluation_folder(tmp_path / "eval", [0.5, 0.5])
    parsed = Page(evaluation_report(folder, tmp_path / "report.html").read_text())
    text = "".join(parsed.text)
    assert len(parsed.named("img")) == 1 and parsed.named("img")[0]["src"].startswith("data:image/png;base64,")
    assert "trade-off panel is absent" in text and "has 1" in text
    header, first, *_ = parsed.tables[2]  # selection, semantic, preference
    assert header == ["model", "users", "HR@50", "NDCG@50", "status"]
    # Wilson for 1 hit in 50 users (hand-computed: 0.00354, 0.10501), in place of the CSV's -0.0025..0.0395
    assert first[2] == "0.020 (0.004-0.105)"
    assert first[3] == "0.010 (-0.004-0.024) *"  # the t-interval is shown as computed, and marked
    assert "HR@50: Wilson 95% interval" in text and "NDCG@50: per-user 95% t-interval" in text
    assert "text->audio R@1" in parsed.tables[1][0]


def test_evaluation_report_lambda_curve(tmp_path):
    folder = evaluation_folder(tmp_path / "eval", [0.0, 0.5, 1.0])
    text = evaluation_report(folder, tmp_path / "report.html").read_text()
    assert "panel is absent" not in text and len(Page(text).named("img")) == 1


def test_page_fits_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium)")
    folder = evaluation_folder(tmp_path / "eval", [0.0, 0.5, 1.0])
    page = evaluation_report(folder, tmp_path / "report.html")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"]
    shot = tmp_path / "shot.png"
    subprocess.run([*args, f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # the page has no script of its own: a copy with a measuring one reports scrollWidth in the dumped DOM
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<script>window.addEventListener('load', () => "
                     "document.body.setAttribute('data-fit', document.querySelectorAll('figure img').length + ' ' + "
                     "document.documentElement.scrollWidth + ' ' + window.innerWidth));</script></body>"))
    dom = subprocess.run([*args, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    images, scroll, width = map(int, re.search(r'data-fit="(\d+) (\d+) (\d+)"', dom).groups())
    assert images == 1 and 0 < scroll <= width, (scroll, width)


def per_user_frame() -> pd.DataFrame:
    """Two models, two split seeds of 4 users each (hand-made values)."""
    rows = []
    for seed, hits, ndcg in ((42, [1, 0, 0, 0], [0.5, 0.0, 0.0, 0.1]), (43, [1, 1, 0, 0], [0.3, 0.2, 0.0, 0.0])):
        for user, (hit, gain) in enumerate(zip(hits, ndcg)):
            rows.append({"user_id": f"u{user}", "model": "a", "split_seed": seed, "seed": 0,
                         "hit_rate@50": float(hit), "ndcg@50": gain})
            rows.append({"user_id": f"u{user}", "model": "b", "split_seed": seed, "seed": 0,
                         "hit_rate@50": 1.0, "ndcg@50": 1.0})
    return pd.DataFrame(rows)


def test_per_user_intervals_average_group_means_and_stay_in_range():
    bounds = per_user_intervals(per_user_frame(), ["hit_rate@50", "ndcg@50"])
    a = bounds["hit_rate@50"].loc["a"]
    assert a["mean"] == pytest.approx((0.25 + 0.5) / 2)  # the mean of the split seeds' means
    assert 0.0 <= a["low"] <= a["mean"] <= a["high"] <= 1.0
    assert bounds["ndcg@50"].loc["a", "mean"] == pytest.approx((0.15 + 0.125) / 2)
    assert tuple(bounds["ndcg@50"].loc["b"]) == (1.0, 1.0, 1.0)  # every resample of all-ones is 1


def test_per_user_intervals_one_group_hit_rate_is_wilson():
    frame = per_user_frame()
    one = frame[frame["split_seed"] == 42]
    a = per_user_intervals(one, ["hit_rate@50"])["hit_rate@50"].loc["a"]
    expected = bounded_interval(np.array([1.0, 0, 0, 0]), method="wilson")
    assert (a["low"], a["high"]) == pytest.approx((expected.low, expected.high))


def test_results_report_from_an_evaluate_folder(tmp_path):
    per_user = per_user_frame()
    summary = per_user_intervals(per_user, ["hit_rate@50", "ndcg@50"])
    table = pd.DataFrame({"model": ["a", "b"], "users": [4, 4]})
    for metric, frame in summary.items():  # the CSV carries t-bounds; the page recomputes bounded ones
        table[metric] = frame["mean"].to_numpy()
        table[f"{metric}_low"], table[f"{metric}_high"] = table[metric] - 0.3, table[metric] + 0.3
    table.to_csv(tmp_path / "results.csv", index=False)
    per_user.to_parquet(tmp_path / "per_user.parquet")
    (tmp_path / "results.md").write_text("# evaluate\n\nProtocol: a hand-made folder.\n\n| model |\n|---|\n")
    parsed = Page(results_report(tmp_path, tmp_path / "report.html").read_text())
    text = "".join(parsed.text)
    assert len(parsed.named("img")) == 1 and "Protocol: a hand-made folder." in text
    header, first, second = parsed.tables[0]
    assert header[:3] == ["model", "HR@50", "NDCG@50"] and second[1:3] == ["1 (1-1)", "1 (1-1)"]
    low, high = (float(x) for x in first[1].split("(")[1].rstrip(")").split("-"))
    assert 0.0 <= low < high <= 1.0  # not the CSV's -0.3 offsets

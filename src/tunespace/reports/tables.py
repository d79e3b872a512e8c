"""Result tables: one row per model, each metric as mean with its 95% confidence interval; CSV and Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from tunespace.evaluation.evaluate import EvaluationResult
from tunespace.io import write_text

HEADLINE = ("hit_rate@50", "recall@50", "ndcg@50")


def results_frame(results: Mapping[str, EvaluationResult], metrics: Sequence[str] = HEADLINE,
                  level: float = 0.95) -> pd.DataFrame:
    """Numeric table: model, users, then `<metric>`, `<metric>_low`, `<metric>_high` for each metric."""
    rows = []
    for label, result in results.items():
        summary = result.summary(level).set_index("metric")
        row: dict[str, object] = {"model": label, "users": len(result.per_user)}
        for metric in metrics:
            row[metric] = summary.loc[metric, "mean"]
            row[f"{metric}_low"] = summary.loc[metric, "low"]
            row[f"{metric}_high"] = summary.loc[metric, "high"]
        rows.append(row)
    return pd.DataFrame(rows)


def formatted(frame: pd.DataFrame, metrics: Sequence[str] = HEADLINE, digits: int = 4) -> pd.DataFrame:
    """`mean ± half-width` strings for people (CSV keeps the numbers)."""
    out = frame[["model", "users"]].copy()
    for metric in metrics:
        half = (frame[f"{metric}_high"] - frame[f"{metric}_low"]) / 2
        out[metric] = [f"{m:.{digits}f} ± {h:.{digits}f}" for m, h in zip(frame[metric], half)]
    return out


def to_markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_results(frame: pd.DataFrame, folder: str | Path, stem: str = "results",
                  metrics: Sequence[str] = HEADLINE, preamble: str = "") -> tuple[Path, Path]:
    """Write `<stem>.csv` (numbers) and `<stem>.md` (formatted, with an optional preamble) atomically."""
    folder = Path(folder)
    csv_path, md_path = folder / f"{stem}.csv", folder / f"{stem}.md"
    write_text(frame.to_csv(index=False), csv_path)
    write_text(preamble + to_markdown(formatted(frame, metrics)), md_path)
    return csv_path, md_path

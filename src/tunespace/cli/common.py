"""What every CLI command module shares (the console, tables, `key=value` options, embedding inputs), public so
that `tunespace htcl` and the main app use one copy without importing each other's private helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunespace.data.embeddings import ItemEmbeddings

console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI: do not squeeze tables to 80


def show(frame: pd.DataFrame, title: str) -> None:
    """A frame as a terminal table, its cells as plain text (labels such as knn[mfcc] are not markup)."""
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="left" if column == "model" else "right", no_wrap=True)
    for row in frame.itertuples(index=False):
        table.add_row(*(escape(str(v)) for v in row))
    console.print(table)


def show_tests(tests: pd.DataFrame, title: str) -> None:
    """A paired-tests table in the terminal, numbers to 3 significant digits."""
    columns = [c for c in ("part", "model", "baseline", "mean_difference", "t_p_holm", "wilcoxon_p_holm") if c in tests]
    shown = tests[columns].copy()
    for column in ("mean_difference", "t_p_holm", "wilcoxon_p_holm"):
        shown[column] = shown[column].map(lambda v: f"{v:.3g}")
    show(shown, title)


def embedding_sets(paths: Sequence[Path]) -> dict[str, ItemEmbeddings]:
    """Load embedding files or `tunespace embed` folders, labelled by backend (from the manifest) or file stem."""
    sets: dict[str, ItemEmbeddings] = {}
    for path in paths:
        manifest = path / "manifest.json" if path.is_dir() else None
        label = json.loads(manifest.read_text())["backend"] if manifest and manifest.exists() else path.stem
        while label in sets:
            label += "'"
        sets[label] = ItemEmbeddings.load(path)
    return sets


def parse_options(pairs: Sequence[str]) -> dict[str, object]:
    """`key=value` pairs; values that read as int, float or bool become one."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    continue
        options[key] = value
    return options

"""What every CLI command module shares (the console, tables, `key=value` options, embedding inputs), public so
that `tunespace htcl` and the main app use one copy without importing each other's private helpers."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tunespace.data.embeddings import ItemEmbeddings

console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI: do not squeeze tables to 80

# The temporal protocol's options, as `tunespace split` and `tunespace split-log` both take them.
CutoffOption = Annotated[str, typer.Option(help="Train ends before this date (ISO, UTC).")]
SplitOutOption = Annotated[Path, typer.Option(help="Folder to write the split to.")]
TrainStartOption = Annotated[str | None, typer.Option(help="Train window starts at this date.")]
TestStartOption = Annotated[str | None, typer.Option(help="Test window start (default: the cutoff).")]
TestEndOption = Annotated[str | None, typer.Option(help="Test window end (exclusive).")]
ValidationRatioOption = Annotated[float, typer.Option(help="Share of test users used for validation.")]
SplitSeedOption = Annotated[int, typer.Option(help="Seed of the validation/test user partition.")]
TRAIN_LOG_SECONDS = 60.0  # without a terminal, a training run prints a line this often


@contextlib.contextmanager
def training_progress(name: str, total: int, enabled: bool = True) -> Iterator[Callable[[int, dict], None]]:
    """A step callback for the training loop: a progress bar with the loss on a terminal; elsewhere (job logs, CI)
    a line every TRAIN_LOG_SECONDS and at the end, so a long run is never silent."""
    if not console.is_terminal:
        last = [time.monotonic()]

        def log_line(step: int, values: dict) -> None:
            if enabled and (step == total or time.monotonic() - last[0] >= TRAIN_LOG_SECONDS):
                last[0] = time.monotonic()
                console.print(f"training {name}: step {step}/{total}, loss {values.get('loss', float('nan')):.3f}",
                              highlight=False)

        yield log_line
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=True,
                  disable=not enabled) as progress:
        task = progress.add_task(f"training {name}", total=total, info="")

        def advance(step: int, values: dict) -> None:
            progress.update(task, completed=step, info=f"loss {values.get('loss', float('nan')):.3f}")

        yield advance


def parse_ks(values: str) -> list[int]:
    """`--k 10,50` -> [10, 50]; a value that is not an integer is a usage error naming it."""
    ks = []
    for value in values.split(","):
        if not value.strip():
            continue
        try:
            ks.append(int(value))
        except ValueError as error:
            raise typer.BadParameter(f"--k takes comma-separated integers such as 10,50; {value.strip()!r} in "
                                     f"{values!r} is not one") from error
    return ks


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
    """Load embedding files or `tunespace embed` folders, labelled `NAME=PATH` as given, else by backend (from the
    manifest) or file stem; a repeated label gets a prime."""
    sets: dict[str, ItemEmbeddings] = {}
    for given in paths:
        label, sep, rest = str(given).partition("=")
        if sep and label and "/" not in label and not Path(given).exists():
            path = Path(rest)
        else:
            path, label = Path(given), ""
        if not label:
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

"""Fit time and peak memory of recommenders against EASE on the same data, in one run.

Each model is fitted in its own fresh process (so one model's allocations never count toward another's) on the same
temporal split: the process loads the data, resets the kernel's peak-RSS mark (`/proc/self/clear_refs`, Linux),
fits, and reports the wall time and the peak resident memory reached during the fit above the memory held before it.

    python bench/recommender_cost.py --dataset folder --data corpus-medium --cutoff 2025-01-01 --test-start 2025-01-01 \
        --models popularity,ease,ease-content,knn,shallow,shallow-hybrid,bert4rec,bert4rec-hybrid \
        --embeddings corpus-medium/emb/musicnn-msd [--epochs 8]

Prints a table with each model's time and memory as a ratio to EASE's and writes a provenance record to
bench/results/recommender_cost-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULT_TAG = "RECOMMENDER_COST "


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def fit_one(args: argparse.Namespace) -> None:
    """Child process: load, split, fit one model; print its cost as one tagged JSON line."""
    import torch

    from tunespace.cli.common import embedding_sets
    from tunespace.data.splits import SplitConfig, temporal_split
    from tunespace.evaluation.benchmark import accepts
    from tunespace.recommenders import get_recommender
    from tunespace.sources import load_source

    torch.set_num_threads(args.threads)
    source = load_source(args.dataset, args.data, cutoff=args.cutoff)
    split = temporal_split(source.dataset.interactions, SplitConfig(cutoff=args.cutoff, test_start=args.test_start,
                                                                     seed=42))
    train = split.train_matrix()
    model_class = get_recommender(args.fit)
    options: dict = {"device": "cpu"}
    if model_class.needs_embeddings:
        sets = source.embeddings if args.embeddings is None else embedding_sets([Path(args.embeddings)])
        if not sets:
            raise SystemExit(f"{args.fit} needs --embeddings: {args.dataset} brings none")
        options["embeddings"] = next(iter(sets.values()))
    if args.epochs is not None and accepts(args.fit, "epochs"):
        options["epochs"] = args.epochs
    model = model_class(**options)
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS mark restarts from the current RSS
    before = _rss_kib("VmRSS")
    started = time.perf_counter()
    model.fit(train, validation=split.validation if model.uses_validation else None)
    seconds = time.perf_counter() - started
    peak = _rss_kib("VmHWM")
    print(RESULT_TAG + json.dumps({"model": args.fit, "fit_s": seconds, "peak_fit_mib": (peak - before) / 1024,
                                   "rss_before_mib": before / 1024, "train_items": train.n_items,
                                   "train_users": train.n_users, "epochs_run": getattr(model, "epochs_run", None)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("--test-start")
    parser.add_argument("--models", default="popularity,ease,ease-content,ease-mapped,knn,shallow,shallow-hybrid,"
                                            "bert4rec,bert4rec-hybrid")
    parser.add_argument("--embeddings", help="NAME=PATH or PATH: the content of every content model (default: the "
                                             "dataset's own first set)")
    parser.add_argument("--epochs", type=int, help="cap on the trained models' epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fit", help=argparse.SUPPRESS)  # internal: the child process fits this model
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    if args.fit:
        fit_one(args)
        return

    import pandas as pd

    from tunespace.provenance import bench_record_path, recorded_run

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if "ease" not in models:
        models.insert(0, "ease")
    rows = []
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
                if key not in ("fit", "results")}
    with recorded_run(bench_record_path(__file__, args.results), extra={"settings": settings}) as record:
        for model in models:
            command = [sys.executable, __file__, *sys.argv[1:], "--fit", model]
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ}, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
            if done.returncode != 0 or not lines:
                raise SystemExit(f"{model} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(lines[-1][len(RESULT_TAG):]))
        table = pd.DataFrame(rows)
        ease = table.set_index("model").loc["ease"]
        table["time_x_ease"] = table["fit_s"] / ease["fit_s"]
        table["memory_x_ease"] = table["peak_fit_mib"] / ease["peak_fit_mib"]
        record["figures"] = table.to_dict(orient="records")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()

"""The `tunespace` command: a thin layer over the library that shows progress and tables.

`main(argv)` takes a list of arguments so tests call the CLI in-process.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import asdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tunespace.cli.common import (CutoffOption, SplitOutOption, SplitSeedOption, TestEndOption, TestStartOption,
                                   TrainStartOption, ValidationRatioOption, console)
from tunespace.cli.common import embedding_sets as _embedding_sets
from tunespace.cli.common import parse_ks as _ks
from tunespace.cli.common import parse_options as _parse_options
from tunespace.cli.common import show as _show
from tunespace.cli.common import show_tests as _show_tests
from tunespace.cli.clamp import clamp_app
from tunespace.cli.htcl import htcl_app
from tunespace.data.embeddings import ItemEmbeddings, expected_shards
from tunespace.data.splits import Split, SplitConfig, temporal_split
from tunespace.encoders.extract import DEFAULT_MIN_SECONDS, ExtractionConfig
from tunespace.encoders.ray_extract import RayConfig, RayExtractor
from tunespace.errors import EvaluationFolderError, SplitError, TunespaceError
from tunespace.evaluation.benchmark import BenchmarkRun, ModelSpec, SeededRuns, accepts, model_specs, run_benchmark
from tunespace.evaluation.seeds import SplitSeedRuns
from tunespace.evaluation.evaluate import compare
from tunespace.extras import missing_extra, needs_extra
from tunespace.io import write_text
from tunespace.reports.tables import HEADLINE, formatted, results_frame, to_markdown, write_results

app = typer.Typer(help="tunespace: music representations for recommendation and search.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
benchmark_app = typer.Typer(help="Benchmarks that reproduce published protocols.", no_args_is_help=True)
app.add_typer(benchmark_app, name="benchmark")

DEFAULT_MODELS = "popularity,itemknn,ease,knn"
COLLABORATIVE_MODELS = "popularity,itemknn,ease"
DEMO_BACKENDS = ("mfcc", "musicnn-msd")
EMBED_LOG_TRACKS = 100  # `tunespace embed` without a terminal: a log line every this many tracks...
EMBED_LOG_SECONDS = 30.0  # ...or this many seconds


def _progress_factory(progress: Progress) -> Callable[[str, int], Callable[[int], None]]:
    def start(label: str, total: int) -> Callable[[int], None]:
        task = progress.add_task(f"evaluating {label}", total=total)
        return lambda done: progress.advance(task, done)

    return start


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _report(run: BenchmarkRun, out: Path | None, title: str, preamble: str, baseline: str | None,
            settings: dict[str, object] | None = None) -> dict[str, object]:
    """Print and (with `out`) write one run's table at every cut-off it was evaluated at, the paired tests of
    every row against `baseline` on NDCG at the largest cut-off, per-user metrics and `settings.json` (the given
    settings plus each row's resolved parameters). Returns the headline figures, for a provenance record."""
    from tunespace.evaluation.evaluate import headline_metric, headline_metrics

    ks = sorted({k for result in run.results.values() for k in result.ks})
    metrics, headline = headline_metrics(ks), headline_metric(ks)
    frame = results_frame(run.results, metrics)
    frame["fit_s"] = [round(run.fit_seconds[m], 2) for m in frame["model"]]
    _show(formatted(frame, metrics).assign(fit_s=frame["fit_s"]), title)
    tests = None
    if baseline in run.results and len(run.results) > 1:
        tests = compare(run.results, baseline, headline)
        _show_tests(tests, f"{headline} against {baseline}: paired tests, Holm-corrected")
    settings = {**(settings or {}), "ks": ks, "headline_metric": headline,
                "models": {label: {"params": params} for label, params in run.params.items()}}
    if out is not None:
        settings_md = _settings_markdown(settings)
        csv_path, md_path = write_results(frame, out, metrics=metrics, preamble=f"# {title}\n\n{preamble}\n\n")
        write_text(md_path.read_text(encoding="utf-8") + settings_md, md_path)
        per_user = pd.concat([r.per_user.assign(model=label) for label, r in run.results.items()])
        per_user.to_parquet(out / "per_user.parquet", index=False)
        if tests is not None:
            tests.to_csv(out / "significance.csv", index=False)
        write_text(json.dumps(settings, indent=2, default=str) + "\n", out / "settings.json")
        console.print(f"wrote {csv_path}, {md_path}, settings.json and per-user metrics to {out / 'per_user.parquet'}")
    return _figures(frame, metrics)


def _figures(frame: pd.DataFrame, metrics: Sequence[str]) -> dict[str, object]:
    """Row -> metric -> mean, with the half-width of its interval (and its spreads where the table has them)."""
    figures: dict[str, object] = {}
    for _, row in frame.iterrows():
        entry: dict[str, float | None] = {}
        for metric in metrics:
            entry[metric] = float(row[metric])
            entry[f"{metric}_half_width"] = float((row[f"{metric}_high"] - row[f"{metric}_low"]) / 2)
            for suffix in ("_std", "_split_sd"):
                if f"{metric}{suffix}" in row:
                    entry[f"{metric}{suffix}"] = float(row[f"{metric}{suffix}"])
        figures[str(row["model"])] = {key: (None if value != value else value) for key, value in entry.items()}
    return figures


def _settings_markdown(settings: dict[str, object]) -> str:
    """The settings section of a results.md: the run-wide settings as a list, then each row's parameters."""
    lines = ["", "## Settings", ""]
    for key, value in settings.items():
        if key not in ("models", "backends"):
            lines.append(f"- {key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")
    for name, info in (settings.get("backends") or {}).items():  # type: ignore[union-attr]
        lines.append(f"- backend {name}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    models = settings.get("models") or {}
    if models:
        lines += ["", "Every parameter of every row, defaults included (training seeds are listed above):", ""]
        rows = []
        for label, info in models.items():  # type: ignore[union-attr]
            params = ", ".join(f"{k}={v}" for k, v in info.get("params", {}).items()) or "(none)"
            rows.append({"row": label, **{k: ("" if v is None else v) for k, v in info.items() if k != "params"},
                         "parameters": params})
        lines.append(to_markdown(pd.DataFrame(rows)).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _study(dataset: str, data: Path | None, config: SplitConfig, models: str, backends: str | None, ks: str,
           part: str, out: Path | None, title: str, embeddings: Sequence[Path] = (), text_encoder: str | None = None,
           seeds: Sequence[int] = (0,), params: dict[str, dict[str, object]] | None = None,
           split_seeds: Sequence[int] | None = None, popularity_aware: bool = True,
           cold_ranking: str = "mixed") -> SplitSeedRuns:
    """The study's Table 3 on one dataset: every content model x backend, the random-init rows, popularity and
    EASE, over training `seeds` and `split_seeds` (validation/test partitions; default the config's seed alone);
    with `popularity_aware`, each content row also popularity-aware ("+pop", beta chosen on validation users);
    the warm table at every k with paired tests and a bar chart, the cold-start table, settings.json, and with
    `out` a provenance record of the whole run."""
    import contextlib

    from tunespace.provenance import recorded_run

    with recorded_run(out) if out is not None else contextlib.nullcontext({}) as record:
        runs, settings, figures, written = _study_run(dataset, data, config, models, backends, ks, part, out, title,
                                                      embeddings, text_encoder, seeds, params, split_seeds,
                                                      popularity_aware, cold_ranking)
        record.update(settings=settings, figures=figures, outputs=written)
    return runs


def _study_run(dataset: str, data: Path | None, config: SplitConfig, models: str, backends: str | None, ks: str,
               part: str, out: Path | None, title: str, embeddings: Sequence[Path], text_encoder: str | None,
               seeds: Sequence[int], params: dict[str, dict[str, object]] | None,
               split_seeds: Sequence[int] | None,
               popularity_aware: bool = True,
               cold_ranking: str = "mixed") -> tuple[SplitSeedRuns, dict, dict, list[str]]:
    """The body of `_study`: returns the runs, the settings, the headline figures and the files written."""
    from tunespace.evaluation.benchmark import (popularity_pairs, popularity_specs, reference_pairs, study_baselines,
                                                study_specs)
    from tunespace.evaluation.evaluate import headline_metric, headline_metrics
    from tunespace.evaluation.popularity import POPULARITY_WEIGHTS
    from tunespace.evaluation.seeds import compare_each_split_seed, compare_split_seeds, run_split_seeds
    from tunespace.reports.study import (combine_split_seeds, formatted_study, formatted_tests, per_seed_frame,
                                         study_chart, study_frame, write_png, write_study_table)
    from tunespace.sources import load_source

    cutoffs = sorted(set(_ks(ks)))
    if not cutoffs or min(cutoffs) < 1:
        raise typer.BadParameter(f"--k needs positive cut-offs, got {ks!r}")
    metrics, headline = headline_metrics(cutoffs), headline_metric(cutoffs)
    split_seeds = list(split_seeds or [config.seed])
    with console.status(f"loading {dataset}"):
        source = load_source(dataset, data, cutoff=config.cutoff, seed=config.seed, text_encoder=text_encoder)
    console.print(f"[bold]{dataset}[/]: {source.note}")
    console.print(source.dataset.summary())
    split = temporal_split(source.dataset.interactions, config)
    console.print({key: value for key, value in split.stats.items()})
    vectors = _study_embeddings(source.embeddings, embeddings, backends, data)
    specs = study_specs([m.strip() for m in models.split(",") if m.strip()], vectors, params)
    if popularity_aware:
        specs = popularity_specs(specs)
    cold_part = f"cold_{part}"
    with _progress() as progress:
        runs = run_split_seeds(split, specs, split_seeds, list(seeds), ks=cutoffs, part=part,
                               progress=_progress_factory(progress), cold_part=cold_part,
                               popularity_weights=POPULARITY_WEIGHTS, cold_ranking=cold_ranking)
    several = len(split_seeds) > 1
    first = runs.seeded[split_seeds[0]]

    frames = {s: _with_betas(study_frame(runs.seeded[s], specs, metrics=metrics), runs.betas) for s in split_seeds}
    frame = combine_split_seeds(frames, metrics)
    per_split = pd.concat([f.assign(split_seed=s) for s, f in frames.items()], ignore_index=True)
    per_split.insert(1, "split_seed", per_split.pop("split_seed"))
    per_seed = pd.concat([per_seed_frame(runs.seeded[s], metrics=metrics, split_seed=s) for s in split_seeds],
                         ignore_index=True)

    # paired tests: each row against its own baseline (random-init twin; popularity for knn), every row against
    # the strongest reference (EASE), and each +pop row against popularity and against its raw row; each (family,
    # metric) is its own Holm family
    twins, references = list(study_baselines(specs).items()), reference_pairs(specs)
    families = [(kind, pairs) for kind, pairs in (("random-init", twins), ("reference", references),
                                                  *popularity_pairs(specs).items()) if pairs]
    averaged = runs.averaged()

    def tests_of(compare_fn) -> pd.DataFrame | None:  # noqa: ANN001 - one of the two comparisons
        frames_ = [compare_fn(averaged, pairs, metric).assign(baseline_kind=kind)
                   for kind, pairs in families for metric in metrics]
        if not frames_:
            return None
        tests_ = pd.concat(frames_, ignore_index=True)
        tests_.insert(0, "baseline_kind", tests_.pop("baseline_kind"))
        return tests_

    tests = tests_of(compare_split_seeds)
    tests_per_split = tests_of(compare_each_split_seed) if several else None
    reference = references[0][1] if references else None
    unpaired = [spec for spec in specs if dict(twins).get(spec.label) == "popularity"]  # knn: no random-init row
    test_notes = {spec.label: "no random-init row: against popularity" for spec in unpaired}
    unpaired_text = (f" {', '.join(dict.fromkeys(spec.family for spec in unpaired))} has no random-init "
                     "counterpart: its rows are tested against popularity" + (
                         " (its +pop rows in the popularity family)" if runs.betas else "") + "." if unpaired else "")
    aware = [spec for spec in specs if spec.popularity_of is not None]

    fixed = [spec.label for spec in specs if not first.seeded[spec.label]]
    seed_text = (f"seed {seeds[0]}" if len(seeds) == 1 else
                 f"seeds {seeds[0]}..{seeds[-1]} (mean over seeds; sd = standard deviation of the per-seed means)")
    split_text = (f"split seed {split_seeds[0]}" if not several else
                  f"split seeds {split_seeds[0]}..{split_seeds[-1]}: each re-partitions the test-window users into "
                  "validation and test; a figure is the mean over split seeds of the per-split-seed means, ± the "
                  "mean over split seeds of the per-user 95% half-width, and split sd is the standard deviation over "
                  "split seeds of the per-split-seed means. Models that do not early-stop on validation"
                  + (f" ({', '.join(runs.shared)})" if runs.shared else "") + " are fitted once and their per-user "
                  "results sliced per split seed; early-stopping models are refitted per split seed")
    preamble = (f"# {title}\n\nDataset: {source.note}. Protocol: train [{config.train_start or 'start'}, "
                f"{config.cutoff}), test pairs first seen in [{config.test_start or config.cutoff}, "
                f"{config.test_end or 'end'}), {part} users (validation ratio {config.validation_ratio}, "
                f"{split_text}); full ranking over the {split.n_warm_items} train items with seen items removed; mean "
                f"± 95% t-interval half-width over users at every k requested ({', '.join(map(str, cutoffs))}). "
                f"Training {seed_text}: a seed sets a trained model's initialisation, negative sampling and masking "
                "within a fixed validation/test partition, so the sd measures training variance only"
                + (f"; {', '.join(fixed)} are deterministic and fitted once" if fixed else "") + ". "
                "fit_s: mean fit time in seconds (early-stopping models include their per-epoch validation). "
                + ("Rows m+pop[set] are the content rows m[set] made popularity-aware, with beta chosen on the "
                   "validation users (see Popularity-aware rows below). " if aware else "")
                + "Every setting, defaults included, is listed under Settings below and in settings.json.\n\n")
    _show(formatted_study(frame, metrics), title)
    notes = ""
    if tests is not None:
        _show(formatted_tests(tests[tests["metric"] == headline], test_notes).drop(columns="metric"),
              f"{headline}: paired tests, Holm-corrected per family" + (" (across split seeds)" if several else ""))
        across = ("over the test users' values averaged over the training seeds" + (
            " and over the split seeds in which the user was a test user (every user tested in at least one split "
            "seed counts once); same sign: in how many split seeds the row's mean difference had the sign of the "
            "across-split-seed difference; the tests within each split seed are in significance_per_split_seed.csv"
            if several else ""))
        kinds = {kind for kind, _ in families}
        notes = (f"\n## Paired tests\n\n{len(families)} families (baseline_kind), t-test and Wilcoxon signed-rank "
                 f"{across}. random-init: each content row" + (" (raw and +pop)" if aware else "")
                 + " against the random-init row of the same model." + unpaired_text
                 + (f" reference: every row against {reference}, the strongest reference in the run." if reference
                    else "")
                 + (" popularity: each popularity-aware (+pop) row against popularity." if "popularity" in kinds
                    else "")
                 + (" raw: each +pop row against its raw row (what the popularity term adds)." if "raw" in kinds
                    else "")
                 + " Each test's p-values are Holm-corrected within a family and metric; the headline for the "
                 f"terminal and the chart is {headline} (NDCG at the largest k requested).\n\n"
                 + to_markdown(formatted_tests(tests, test_notes)))
    training = per_seed.dropna(subset=["epochs_run"])
    training = training[~training["model"].isin([spec.label for spec in aware])]  # a +pop row re-scores its raw one
    if not training.empty:
        columns = ["model", *(["split_seed"] if several else []), "seed", "epochs_run", "best_epoch"]
        notes += ("\n## Epochs\n\nEpochs each trained model ran (its cap and patience are under Settings) and the "
                  "epoch whose weights it kept (best validation " + f"NDCG@{_validation_k(first)}" + ").\n\n"
                  + to_markdown(training[columns]))
    if not runs.weights.empty:
        _show(_popularity_table(runs, aware), "popularity weight beta of each +pop row, chosen on the validation "
                                              "users (every beta in popularity_weights.csv)")
        notes += _popularity_notes(runs, aware, part)

    # the cold items: who could place how many
    cold_ids = split.items.ids[split.n_warm_items:]
    backend_cover = {name: {"items": len(emb.ids), "dim": int(emb.vectors.shape[1]),
                            "cold_items_with_vector": int(np.isin(cold_ids, emb.ids).sum()),
                            "cold_items": len(cold_ids)} for name, emb in vectors.items()}
    cold_runs = {s: runs.seeded[s] for s in split_seeds if runs.seeded[s].runs[0].cold_results}
    cold = cold_per_split = None
    placed_cells: list[str] = []
    handling: list[str] = []
    if cold_runs:
        cold_frames = {s: _with_betas(study_frame(r, specs, part="cold_results", metrics=metrics), runs.betas)
                       for s, r in cold_runs.items()}
        cold = combine_split_seeds(cold_frames, metrics)
        cold_per_split = pd.concat([f.assign(split_seed=s) for s, f in cold_frames.items()], ignore_index=True)
        cold_per_split.insert(1, "split_seed", cold_per_split.pop("split_seed"))
        base_run = next(iter(cold_runs.values())).runs[0]
        handling = [base_run.cold_handling[label] for label in cold["model"]]
        by_label = {spec.label: spec for spec in specs}
        for label in cold["model"]:
            placed, total = base_run.cold_counts[label]
            reason = ""
            if by_label[label].embeddings is not None and placed < total:
                reason = " (no embedding)" if placed == 0 else " (the others have no embedding)"
            placed_cells.append(f"{placed} of {total}{reason}")
        cold.insert(cold.columns.get_loc("users") + 1, "cold_items_placed",
                    [base_run.cold_counts[label][0] for label in cold["model"]])
        among = (f"ranked among the {len(cold_ids)} cold items alone" if cold_ranking == "new" else
                 f"ranked among all {len(split.items)} items")
        _show(formatted_study(cold, metrics), f"cold items ({cold_part}): {among}")
        _show(pd.DataFrame({"model": cold["model"], "cold items placed": placed_cells, "cold items": handling}),
              "how each model scores cold items")

    settings = _study_settings(dataset, data, config, part, split, split_seeds, seeds, cutoffs, headline, specs,
                               runs, backend_cover, text_encoder, POPULARITY_WEIGHTS, cold_ranking)
    notes += _settings_markdown(settings)
    written: list[str] = []
    if out is not None:
        split.save(out / "split")
        paths = write_study_table(frame, per_seed, out, "results", preamble, notes, metrics,
                                  extra_columns=_beta_column(frame), per_split_seed=per_split)
        per_user = pd.concat([result.per_user.assign(model=label, split_seed=s, seed=seed)
                              for s in split_seeds for seed, run in zip(seeds, runs.seeded[s].runs)
                              for label, result in run.results.items()])
        per_user.to_parquet(out / "per_user.parquet", index=False)
        chart = f"{headline.replace('@', '')}.png"
        write_png(study_chart(frame, headline), out / chart)
        written = [p.name for p in paths] + ["per_user.parquet", chart]
        if tests is not None:
            write_text(tests.to_csv(index=False), out / "significance.csv")
            written.append("significance.csv")
        if tests_per_split is not None:
            write_text(tests_per_split.to_csv(index=False), out / "significance_per_split_seed.csv")
            written.append("significance_per_split_seed.csv")
        if not runs.weights.empty:
            write_text(runs.weights.to_csv(index=False), out / "popularity_weights.csv")
            written.append("popularity_weights.csv")
        if cold is not None and cold_per_split is not None:
            truth = split.part(cold_part)
            placing = [f"{label} ({cell})" for label, cell in zip(cold["model"], placed_cells)
                       if not cell.startswith("0 of")]
            blind = [label for label, cell in zip(cold["model"], placed_cells) if cell.startswith("0 of")]
            cover = "; ".join(f"{name} {info['cold_items_with_vector']} of {info['cold_items']}"
                              for name, info in backend_cover.items())
            cold_preamble = (
                f"# {title}: cold items\n\nThe same fitted models on the {cold_part} pairs: {len(truth)} pairs of "
                f"{truth['user_id'].nunique()} users (split seed {split_seeds[0]}) with items unseen in training, "
                + (f"ranked among the {len(cold_ids)} cold items alone (train items are never recommended: what a "
                   "model knows about new items, whatever it does to warm ones); " if cold_ranking == "new" else
                   f"ranked among the whole catalogue ({split.n_warm_items} train + {len(cold_ids)} cold items) with "
                   "seen items removed (a model that lifts every new item above the warm ones scores well here "
                   "whatever its content; --cold-ranking new ranks them alone); ")
                + f"{seed_text}"
                + (f"; mean over split seeds {split_seeds[0]}..{split_seeds[-1]} with split sd" if several else "")
                + ". " + (f"Cold items with a vector, per embedding set: {cover}. " if cover else "")
                + (f"Rows that placed cold items (gave them a finite score): {', '.join(placing)}. " if placing else
                   "No row placed a single cold item: no model here could score an item unseen in training. ")
                + (f"Rows that placed none ({', '.join(blind)}) score every cold item -inf, so they never recommend "
                   "one and their cold HR, Recall and NDCG are 0 by construction. " if blind else "")
                + ("A +pop row adds beta x the popularity z-score of an item without train plays to every cold "
                   "item, as the blend does; its figures are reported as they come. " if aware else "")
                + "The last two columns say how many cold items each row placed and how its model scores them.\n\n")
            paths = write_study_table(cold, pd.concat([per_seed_frame(r, "cold_results", metrics, split_seed=s)
                                                       for s, r in cold_runs.items()], ignore_index=True),
                                      out, "cold", cold_preamble, metrics=metrics,
                                      extra_columns={**_beta_column(cold), "cold items placed": placed_cells,
                                                     "cold items": handling},
                                      per_split_seed=cold_per_split if several else None)
            cold_per_user = pd.concat([result.per_user.assign(model=label, split_seed=s, seed=seed)
                                       for s, seeded_runs in cold_runs.items()
                                       for seed, run in zip(seeds, seeded_runs.runs)
                                       for label, result in run.cold_results.items()])
            cold_per_user.to_parquet(out / "cold_per_user.parquet", index=False)
            written += [p.name for p in paths] + ["cold_per_user.parquet"]
        write_text(json.dumps(settings, indent=2, default=str) + "\n", out / "settings.json")
        written += ["settings.json", "provenance.json"]
        console.print(f"wrote {', '.join(written)} and the split to {out}", soft_wrap=True)
    figures = _figures(frame, metrics)
    if tests is not None:
        figures["tests"] = tests[tests["metric"] == headline].to_dict(orient="records")
    if runs.betas:
        figures["popularity_betas"] = dict(runs.betas)
    return runs, settings, figures, written


def _with_betas(frame: pd.DataFrame, betas: dict[str, float]) -> pd.DataFrame:
    """A study table with a `beta` column after `variant` (each +pop row's popularity weight; empty for the
    others) when the run has popularity-aware rows."""
    if betas and not frame.empty:
        frame.insert(frame.columns.get_loc("variant") + 1, "beta", frame["model"].map(betas).to_numpy(dtype=float))
    return frame


def _beta_column(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The `beta` column of a results.md or cold.md table, where the table has one."""
    if "beta" not in frame:
        return {}
    return {"beta": ["" if pd.isna(value) else f"{value:.4g}" for value in frame["beta"]]}


def _popularity_table(runs: SplitSeedRuns, aware: Sequence[ModelSpec]) -> pd.DataFrame:
    """Each +pop row: the row it re-scores, its chosen beta and the validation figure at beta 0 and at that beta."""
    weights = runs.weights
    metric = next(c for c in weights.columns if c.startswith("validation_"))
    raw = weights[weights["beta"] == 0].set_index("row")[metric]
    chosen = weights[weights["chosen"]].set_index("row")
    origin = {spec.label: spec.popularity_of for spec in aware}
    return pd.DataFrame({"row": chosen.index, "re-scores": chosen.index.map(origin),
                         "beta": chosen["beta"].map(lambda v: f"{v:.4g}").to_numpy(),
                         f"{metric} at beta 0": raw.loc[chosen.index].map(lambda v: f"{v:.4f}").to_numpy(),
                         f"{metric} at beta": chosen[metric].map(lambda v: f"{v:.4f}").to_numpy()})


def _popularity_notes(runs: SplitSeedRuns, aware: Sequence[ModelSpec], part: str) -> str:
    """The "Popularity-aware rows" section of results.md: how +pop rows are made and each row's chosen beta."""
    weights = runs.weights
    metric = next(c for c in weights.columns if c.startswith("validation_"))
    table = _popularity_table(runs, aware)
    grid = sorted(set(weights["beta"]))
    values = ", ".join(f"{v:g}" for v in grid) if len(grid) <= 3 else f"{grid[0]:g}, {grid[1]:g} .. {grid[-1]:g}"
    caveat = (" The reported users are the validation users beta was chosen on, so the +pop figures are optimistic."
              if part == "validation" else "")
    return ("\n## Popularity-aware rows\n\nEach content row m[set] is also reported popularity-aware as m+pop[set]: "
            "the same fitted model, not refitted, ranking by its score + beta x z, where z is the z-score over the "
            "train items of log(1 + train plays) (an item without train plays, such as a cold item, gets the z of "
            f"0 plays). Beta is chosen per row from {len(grid)} values ({values}; 0 is the raw row) on the "
            f"validation users alone, by {metric.removeprefix('validation_')}: each split seed's validation users, "
            "their values averaged over the training seeds, then the mean over split seeds; ties go to the smaller "
            f"beta. The chosen beta is applied unchanged to the {part} users and to the cold pairs.{caveat} Every "
            "beta's validation figure is in popularity_weights.csv.\n\n" + to_markdown(table))


def _validation_k(seeded: SeededRuns) -> str:
    """The validation cut-off of the trained rows (as their parameters say), for the text of results.md."""
    values = {params.get("validation_k") for params in seeded.runs[0].params.values() if "validation_k" in params}
    return ", ".join(map(str, sorted(values))) or "50"


def _study_settings(dataset: str, data: Path | None, config: SplitConfig, part: str, split: Split,
                    split_seeds: Sequence[int], seeds: Sequence[int], ks: Sequence[int], headline: str,
                    specs: Sequence[ModelSpec], runs: SplitSeedRuns, backends: dict[str, dict[str, int]],
                    text_encoder: str | None, weights: Sequence[float] = (),
                    cold_ranking: str = "mixed") -> dict[str, object]:
    """Every setting that shaped a number of `benchmark recsys`: data, split, seeds, cut-offs, the popularity
    weights and chosen betas and, per row, the model's resolved parameters (defaults included; the seed is the
    training seed; a +pop row's weight is its beta) and how often it was fitted."""
    from tunespace.evaluation.benchmark import uses_validation

    first = runs.seeded[split_seeds[0]]
    models: dict[str, dict[str, object]] = {}
    for spec in specs:
        seeded, early = first.seeded[spec.label], uses_validation(spec)
        params = {k: v for k, v in first.runs[0].params.get(spec.label, {}).items() if not (seeded and k == "seed")}
        per = (["split seed"] if early and len(split_seeds) > 1 else []) + (["training seed"] if seeded else [])
        fitted = "once per " + " and ".join(per) if per else "once"
        if spec.popularity_of is not None:
            fitted = f"with {spec.popularity_of} (re-scored at beta, not refitted)"
        models[spec.label] = {"model": spec.name, "backend": spec.backend, "seeded": seeded,
                              "early_stopping": early, "fitted": fitted, "params": params}
        if runs.betas:
            models[spec.label]["popularity_beta"] = runs.betas.get(spec.label)
    popularity = {"enabled": bool(runs.betas), "weights": list(weights), "chosen_on": f"validation {headline}",
                  "betas": dict(runs.betas)} if runs.betas else {"enabled": False}
    return {
        "command": "benchmark recsys", "dataset": dataset, "data": None if data is None else str(data),
        "text_encoder": text_encoder, "part": part,
        "split": {"cutoff": config.cutoff, "train_start": config.train_start,
                  "test_start": config.test_start or config.cutoff, "test_end": config.test_end,
                  "validation_ratio": config.validation_ratio, "split_seed": config.seed},
        "split_seeds": list(split_seeds), "training_seeds": list(seeds), "ks": list(ks), "headline_metric": headline,
        "split_stats": dict(split.stats), "backends": backends, "popularity_aware": popularity,
        "cold_ranking": cold_ranking, "models": models,
    }


def _study_embeddings(loaded: dict[str, ItemEmbeddings], paths: Sequence[Path], backends: str | None,
                      data: Path | None) -> dict[str, ItemEmbeddings]:
    """Embedding sets by backend. Without `backends`: the dataset's own and every --embeddings path. With it:
    exactly those backends, each from a --embeddings path (or the dataset) labelled so, else from
    DATA/emb/<name>, the folder `tunespace embed --out DATA/emb/<name>` writes."""
    sets = {**loaded, **_embedding_sets(paths)}
    if backends is None:
        return sets
    chosen = {}
    for name in (b.strip() for b in backends.split(",")):
        if name:
            chosen[name] = sets[name] if name in sets else _backend_embeddings(name, data)
    return chosen


def _backend_embeddings(name: str, data: Path | None) -> ItemEmbeddings:
    """DATA/emb/<name> as `tunespace embed` wrote it; a missing, foreign or unfinished folder is an error that
    gives the command to make (or resume) it."""
    folder = data / "emb" / name if data is not None else None
    command = (f"tunespace embed --backend {shlex.quote(name)} --data {shlex.quote(str(data or 'DATA'))} "
               f"--out {shlex.quote(str(folder or Path('DATA', 'emb', name)))}")
    shards = [] if folder is None else [p for p in folder.glob("shard-*.parquet")
                                        if not p.name.endswith(".skipped.parquet")]
    if not shards:
        where = f"at {folder}" if folder is not None else "(no --data folder to look in, nor an --embeddings path)"
        raise TunespaceError(f"no embeddings for backend {name!r} {where}; make them with: {command}")
    assert folder is not None
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("backend") != name:
            raise TunespaceError(f"{folder} holds {manifest.get('backend')!r} embeddings, not {name!r}; make them "
                                 f"with: {command}")
        if manifest.get("shards") or (manifest.get("tracks") and manifest.get("shard_size")):
            expected = expected_shards(manifest)
            if len(shards) < expected:
                raise TunespaceError(f"the {name!r} embeddings at {folder} are unfinished ({len(shards)} of "
                                     f"{expected} shards); finish them with: {command} (it resumes)")
    return ItemEmbeddings.load(folder)


@app.command()
def embed(
    backend: Annotated[str, typer.Option(help="Backend name (see --list).")] = "mfcc",
    data: Annotated[Path | None, typer.Option(help="Data-model folder with tracks.parquet (audio_path).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder of embedding shards (resumes if present).")] = None,
    pooling: Annotated[str, typer.Option(help="mean, or mean+std of the frames.")] = "mean",
    option: Annotated[list[str] | None, typer.Option(help="Backend option key=value (layer, weights...).")] = None,
    batch_size: Annotated[int, typer.Option(help="Segments per forward pass.")] = 16,
    shard_size: Annotated[int, typer.Option(help="Tracks per output shard.")] = 256,
    min_seconds: Annotated[float, typer.Option(
        help="Skip (and record) tracks shorter than this; the backend's own minimum applies if larger.")]
    = DEFAULT_MIN_SECONDS,
    decoder: Annotated[str, typer.Option(help="auto (PyAV for compressed files when the decode extra is installed, "
                                              "else soundfile), soundfile or av.")] = "auto",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    worker: Annotated[int, typer.Option(help="This worker's index in a distributed run.")] = 0,
    workers: Annotated[int, typer.Option(help="Number of workers sharing the shards.")] = 1,
    engine: Annotated[str, typer.Option(help="local (this process), or ray: decoding in Ray tasks, the backend in a "
                                             "pool of Ray actors (the distributed extra).")] = "local",
    address: Annotated[str | None, typer.Option(help="--engine ray: a running cluster's address (host:port, "
                                                     "ray://host:port or auto); default: Ray on this machine.")]
    = None,
    actors: Annotated[int | None, typer.Option(help="--engine ray: encoder actors (default: one per GPU, else "
                                                    "half the cluster's CPUs).")] = None,
    list_backends: Annotated[bool, typer.Option("--list", help="List the backends and exit.")] = False,
) -> None:
    """Embed every track's audio with a frozen backend: time-averaged vectors in resumable Parquet shards."""
    from tunespace.devices import resolve_device
    from tunespace.encoders.base import backend_names

    if list_backends:
        console.print(", ".join(backend_names()) + "; from scores: clamp-abc, clamp-midi (--option run=CLAMP_RUN)")
        return
    if data is None or out is None:
        raise typer.BadParameter("--data and --out are required")
    if backend.startswith("clamp-"):  # scores, not audio: a `clamp train` run's music tower
        _embed_scores(backend, data, out, _parse_options(option or []))
        return
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, got {engine!r}")
    if engine == "local" and (address is not None or actors is not None):
        raise typer.BadParameter("--address and --actors are for --engine ray")
    if engine == "ray" and (worker, workers) != (0, 1):
        raise typer.BadParameter("--engine ray shares the shards across its cluster; --worker/--workers split them "
                                 "between local engines")
    device = str(resolve_device(device or "auto"))
    config = ExtractionConfig(backend=backend, options=_parse_options(option or []), pooling=pooling,
                              batch_size=batch_size, shard_size=shard_size, device=device,
                              min_seconds=min_seconds, decoder=decoder)
    with needs_extra():  # a backend's optional package (transformers, musicnn...) -> what to install
        if engine == "ray":
            run_extraction(config, data, out, ray=RayConfig(address=address, actors=actors))
        else:
            run_extraction(config, data, out, worker, workers)


def _embed_scores(backend: str, data: Path, out: Path, options: dict[str, object]) -> None:
    """`--backend clamp-abc|clamp-midi --option run=RUN`: the corpus's scores in a CLaMP run's space."""
    from tunespace.contrastive.clamp import write_score_embeddings

    if "run" not in options:
        raise typer.BadParameter(f"--backend {backend} needs --option run=RUN (a `tunespace clamp train` folder)")
    from tunespace.provenance import recorded_run

    out.mkdir(parents=True, exist_ok=True)
    with needs_extra(), recorded_run(out / "provenance.json") as record:
        record["settings"] = {"backend": backend, "run": str(options["run"]), "data": str(data)}
        embedded, skipped = write_score_embeddings(Path(str(options["run"])), data, backend, out)
        record["figures"] = {"embedded": embedded, "skipped": skipped}
    console.print(f"{embedded} tracks embedded from their scores into {out}; {skipped} without one (listed in "
                  f"{out / 'shard-00000.skipped.parquet'})", soft_wrap=True)


def run_extraction(config: ExtractionConfig, data: Path, out: Path, worker: int = 0, workers: int = 1,
                   ray: RayConfig | None = None) -> None:
    """Run an extraction with a progress bar in audio minutes per second (a log line every EMBED_LOG_TRACKS tracks
    or EMBED_LOG_SECONDS seconds when stdout is not a terminal), then summarise what was skipped. With `ray`, on
    Ray Data (`tunespace.encoders.ray_extract`): the same shards and records."""
    import contextlib

    from tunespace.data.dataset import Dataset
    from tunespace.encoders.extract import Extractor, load_skipped
    from tunespace.provenance import recorded_run

    tracks = Dataset.load_tracks(data)
    extractor = Extractor(config) if ray is None else RayExtractor(config, ray)
    terminal = console.is_terminal
    bar = (Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), console=console, transient=True)
           if terminal else contextlib.nullcontext())
    with bar as progress:
        task = progress.add_task(f"embedding with {config.backend}", total=len(tracks), speed="") if terminal else 0
        started, audio, done, logged = time.perf_counter(), [0.0], [0], [0, time.perf_counter()]

        def advance(tracks_done: int, seconds: float) -> None:
            audio[0] += seconds
            done[0] += tracks_done
            now = time.perf_counter()
            if terminal:
                rate = audio[0] / 60 / max(now - started, 1e-9)
                progress.update(task, advance=tracks_done, speed=f"{rate:.2f} audio min/s")
            elif (done[0] - logged[0] >= EMBED_LOG_TRACKS or now - logged[1] >= EMBED_LOG_SECONDS
                  or done[0] == len(tracks)):
                logged[:] = [done[0], now]
                console.print(f"embedded {done[0]}/{len(tracks)} tracks, {audio[0] / 60:.1f} audio min, "
                              f"{extractor.skipped_so_far} skipped, {now - started:.0f} s",
                              soft_wrap=True, highlight=False, markup=False)

        record_name = "provenance.json" if workers == 1 else f"provenance-worker-{worker}.json"
        with recorded_run(out / record_name) as record:
            record["settings"] = {**asdict(config), "data": str(data), "worker": worker, "workers": workers,
                                  "engine": "local" if ray is None else "ray",
                                  **({"ray": asdict(ray)} if ray is not None else {})}
            report = extractor.run(tracks, data, out, worker=worker, workers=workers, progress=advance)
            record["figures"] = {**asdict(report), "audio_minutes_per_second": report.audio_minutes_per_second}
    skipped = load_skipped(out)
    console.print(f"{config.backend} ({extractor.output_dim}-d, {config.pooling}) -> {out}: {report.embedded} "
                  f"tracks embedded, {report.skipped} skipped, {report.shards_written} shards written, "
                  f"{report.shards_reused} reused; {report.audio_seconds / 60:.1f} audio minutes in "
                  f"{report.seconds:.1f} s ({report.audio_minutes_per_second:.2f} audio min/s)", soft_wrap=True)
    if len(skipped):
        counts = skipped["kind"].value_counts()
        # the title on its own line: as a table title it would wrap into the narrow two-column width
        console.print(f"skipped tracks (all {len(skipped)} with reasons in {out}/shard-*.skipped.parquet)",
                      soft_wrap=True, highlight=False, markup=False)
        _show(pd.DataFrame({"reason": counts.index, "tracks": counts.to_numpy()}), "")


corpus_app = typer.Typer(help="The built-in corpus of real tunes.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(htcl_app, name="htcl")
app.add_typer(clamp_app, name="clamp")


def _build_corpus(size: str, out: Path, workers: int, seed: int, tracks: int | None = None,
                  listeners: int | None = None, listener: dict[str, object] | None = None) -> dict:
    from tunespace.corpus.build import CorpusConfig, build_corpus

    config = CorpusConfig(size=size, seed=seed, workers=workers, tracks=tracks, listeners=listeners,
                          listener=listener or {})
    if config.listener:
        changed = ", ".join(f"{k}={v}" for k, v in config.listener.items())
        console.print(f"listener parameters changed from the defaults: {changed} (all of them in build.json)")
    from tunespace.provenance import recorded_run

    with recorded_run(out / "provenance.json") as record, _progress() as progress:
        record["settings"] = {"size": size, "seed": seed, "workers": workers, "tracks": tracks,
                              "listeners": listeners, "listener": config.listener}
        report = build_corpus(out, config, progress=_progress_factory(progress))
        record["figures"] = report
    timings = ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in report["timings"].items())
    speed = report["audio_minutes_rendered_per_second"]
    console.print(f"corpus [bold]{size}[/] -> {out}: {report['tracks']} tracks ({report['audio_minutes']:.0f} audio "
                  f"minutes, {report['rendered_now']} rendered now"
                  + (f" at {speed:.1f} audio minutes/s" if speed else "") + f"), {report['skipped']} skipped, "
                  f"{report['users']} listeners, {report['interactions']} interactions, {report['playlists']} "
                  f"playlists; {timings}", soft_wrap=True)
    return report


# the listener options of `corpus build` and `corpus relisten`
SemanticWeight = Annotated[float | None, typer.Option(help="Listener weight a on the semantic match (default 1.5).")]
LatentWeight = Annotated[float | None, typer.Option(
    help="Listener weight b on the latent (note-statistics) match (default 1.0).")]
ZipfExponent = Annotated[float | None, typer.Option(
    help="Popularity exponent s: popularity = rank ** -s (default 0.8).")]
Temperature = Annotated[float | None, typer.Option(help="Divides the listeners' utility (default 1.0).")]
StyleContinuity = Annotated[float | None, typer.Option(
    help="Utility bonus for keeping the previous track's style (default 1.0).")]
RegionContinuity = Annotated[float | None, typer.Option(
    help="Utility bonus for keeping the previous track's region (default 0.7).")]
RepeatWeight = Annotated[float | None, typer.Option(
    help="Probability factor of a repeat within a session (default 0.15).")]
ListenerOption = Annotated[list[str] | None, typer.Option(
    help="Any other listener parameter as key=value (favoured_values, dirichlet_alpha, playlist_share, "
         "mean_sessions_per_user, ...; see tunespace.corpus.listeners.ListenerConfig).")]


def _listener_parameters(listener_option: list[str] | None, **named: float | None) -> dict[str, object]:
    """The listener parameters `corpus build` and `corpus relisten` take: --listener-option key=value pairs plus
    the named options given; one parameter given both ways is a usage error."""
    listener = {key.replace("-", "_"): value for key, value in _parse_options(listener_option or []).items()}
    for key, value in named.items():
        if value is not None:
            if key in listener:
                raise typer.BadParameter(f"{key} given both as --{key.replace('_', '-')} and in --listener-option")
            listener[key] = value
    return listener


@corpus_app.command("build")
def corpus_build(
    size: Annotated[str, typer.Option(help="small (300 tracks), medium (2000) or full (every tune).")] = "small",
    out: Annotated[Path, typer.Option(help="Folder to write the corpus to.")] = Path("corpus"),
    workers: Annotated[int, typer.Option(help="Parallel rendering processes.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of tune selection, performances and listeners.")] = 0,
    tracks: Annotated[int | None, typer.Option(help="Override the size's number of tracks.")] = None,
    listeners: Annotated[int | None, typer.Option(help="Override the size's number of listeners.")] = None,
    semantic_weight: SemanticWeight = None,
    latent_weight: LatentWeight = None,
    zipf_exponent: ZipfExponent = None,
    temperature: Temperature = None,
    style_continuity: StyleContinuity = None,
    region_continuity: RegionContinuity = None,
    repeat_weight: RepeatWeight = None,
    listener_option: ListenerOption = None,
) -> None:
    """Render real tunes from the music21 corpus to audio, describe them, and simulate their listeners.

    Listener parameters left out keep their defaults; build.json records every one the simulation ran with.
    """
    listener = _listener_parameters(
        listener_option, semantic_weight=semantic_weight, latent_weight=latent_weight, zipf_exponent=zipf_exponent,
        temperature=temperature, style_continuity=style_continuity, region_continuity=region_continuity,
        repeat_weight=repeat_weight)
    _build_corpus(size, out, workers, seed, tracks, listeners, listener)


@corpus_app.command("relisten")
def corpus_relisten(
    source: Annotated[Path, typer.Argument(help="A corpus folder made by `corpus build` (or `corpus relisten`).")],
    out: Annotated[Path, typer.Option(help="New folder for the relistened corpus (absent or empty).")],
    seed: Annotated[int | None, typer.Option(
        help="Seed of the listeners (default: the source's, so that only the changed parameters differ).")] = None,
    semantic_weight: SemanticWeight = None,
    latent_weight: LatentWeight = None,
    zipf_exponent: ZipfExponent = None,
    temperature: Temperature = None,
    style_continuity: StyleContinuity = None,
    region_continuity: RegionContinuity = None,
    repeat_weight: RepeatWeight = None,
    listener_option: ListenerOption = None,
) -> None:
    """Simulate a built corpus's listeners again under other listener parameters, into a new folder.

    Tracks, captions and audio stay the source's (audio, abc, midi and emb are symlinked, not copied); a parameter
    left out keeps the source's value, not the default its option names; build.json records every parameter and
    the source it came from.
    """
    from tunespace.corpus.build import relisten_corpus
    from tunespace.provenance import recorded_run

    listener = _listener_parameters(
        listener_option, semantic_weight=semantic_weight, latent_weight=latent_weight, zipf_exponent=zipf_exponent,
        temperature=temperature, style_continuity=style_continuity, region_continuity=region_continuity,
        repeat_weight=repeat_weight)
    report = relisten_corpus(source, out, listener, seed=seed)
    # the record is written once `out` exists: relisten_corpus refuses a non-empty folder
    with recorded_run(out / "provenance.json") as record:
        record["settings"] = {"source": str(source), "seed": seed, "listener": listener}
        record["figures"] = report
    before, after = report["relistened_from"]["listener_config"], report["listener_config"]
    changed = ", ".join(f"{key} {before.get(key)} -> {value}" for key, value in after.items()
                        if before.get(key) != value) or "none (the source's log again)"
    console.print(f"relistened [bold]{escape(str(source))}[/] -> {escape(str(out))}: {report['users']} listeners, "
                  f"{report['interactions']} interactions, {report['playlists']} playlists; changed: {changed}",
                  soft_wrap=True)


@app.command()
def demo(out: Annotated[Path, typer.Option(help="Where to write the corpus and results.")] = Path("demo-results"),
         size: Annotated[str, typer.Option(help="Corpus size.")] = "small") -> None:
    """Build the small built-in corpus, embed its audio (MFCC statistics, and MusiCNN when its weights are
    installed), and run the recommenders on it."""
    from tunespace.data.dataset import Dataset
    from tunespace.encoders.base import BackendUnavailableError
    from tunespace.evaluation.probe import linear_probe

    with needs_extra("corpus"):
        from tunespace.corpus.build import CUTOFF

    console.rule("tunespace demo: the built-in corpus of real tunes")
    _build_corpus(size, out / "corpus", workers=2, seed=0)
    dataset = Dataset.load(out / "corpus")
    assert dataset.tracks is not None
    embeddings: dict[str, ItemEmbeddings] = {}
    for backend in DEMO_BACKENDS:
        # DATA/emb/<backend>: where `benchmark recsys --backends` and the next commands look for them
        try:
            run_extraction(ExtractionConfig(backend), out / "corpus", out / "corpus" / "emb" / backend)
        except BackendUnavailableError as error:
            console.print(f"[yellow]skipping {backend}:[/] {error}", soft_wrap=True)
            continue
        vectors = embeddings[backend] = ItemEmbeddings.load(out / "corpus" / "emb" / backend)
        families = dataset.tracks.set_index("track_id").loc[vectors.ids, "instrument_family"].to_numpy()
        probe = linear_probe(vectors.vectors, families, seed=0)
        console.print(f"linear probe, instrument family from {backend}: accuracy {probe.accuracy:.3f} "
                      f"(balanced {probe.balanced_accuracy:.3f}; chance {probe.chance:.3f}, {probe.n_classes} "
                      f"families, {probe.n_test} test tracks)", soft_wrap=True)
    config = SplitConfig(cutoff=CUTOFF, seed=42)
    split = temporal_split(dataset.interactions, config)
    console.print(split.stats, soft_wrap=True)
    specs = model_specs(DEFAULT_MODELS.split(","), embeddings)
    with _progress() as progress:
        run = run_benchmark(split, specs, ks=(10, 50), part="test", progress=_progress_factory(progress))
    preamble = (f"Built-in corpus ({size}); train before {CUTOFF}, test pairs first seen after it, test users "
                "(seed 42); full ranking with seen items removed; mean ± 95% t-interval half-width.")
    _report(run, out, "Demo: built-in corpus, temporal protocol", preamble, baseline="popularity")
    from tunespace.reports.html import results_report

    console.print(f"wrote {results_report(out, out / 'report.html')} (open it in a browser)", soft_wrap=True)
    console.print(_demo_next_steps(out, list(embeddings), CUTOFF), soft_wrap=True, highlight=False)


def _demo_next_steps(out: Path, backends: Sequence[str], cutoff: str) -> str:
    """The commands to try after the demo, on the folders it wrote: so the demo leads into the real workflow."""
    corpus = shlex.quote(str(out / "corpus"))
    stage1, evaluation = shlex.quote(str(out / "htcl-stage1")), shlex.quote(str(out / "htcl-eval"))
    backend_option = f" --backends {','.join(backends)}" if backends else ""
    models = "" if backends else f" --models {COLLABORATIVE_MODELS}"
    return "\n".join([
        "next, try:",
        (f"  tunespace benchmark recsys --dataset folder --data {corpus}{backend_option}{models} --cutoff {cutoff} "
         f"--test-start {cutoff} --out {shlex.quote(str(out / 'benchmark'))}"),
        f"  tunespace htcl pretrain --data {corpus} --out {stage1} --config tiny",
        f"  tunespace htcl evaluate --data {corpus} --run {stage1} --out {evaluation}",
        f"  tunespace report --eval {evaluation} --out {shlex.quote(str(out / 'htcl-report.html'))}",
    ])


@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="Data-model folder (interactions.parquet, tracks.parquet).")],
    model: Annotated[str, typer.Option(help="A registered recommender: popularity, ease, itemknn, knn, ...")],
    out: Annotated[Path, typer.Option(help="Folder to save the fitted model into (model.json, state.npz).")],
    before: Annotated[str | None, typer.Option(help="Fit on events before this date only (default: all).")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="Embedding folder for a content model (knn, ...).")]
    = None,
    param: Annotated[list[str] | None, typer.Option(help="Model parameter key=value (repeat).")] = None,
) -> None:
    """Fit one recommender on a data folder's listening log and save it, for `search --user --model` and
    `serve --model`."""
    from tunespace.data.catalog import IdMap
    from tunespace.data.dataset import Dataset
    from tunespace.data.interactions import InteractionMatrix
    from tunespace.recommenders import get_recommender

    dataset = Dataset.load(data)
    events = dataset.interactions
    if before is not None:
        events = events[events["timestamp"] < pd.Timestamp(before, tz="UTC")]
    if events.empty:
        raise SplitError(f"{data}: no listening events{' before ' + before if before else ''} to fit on")
    cls = get_recommender(model)
    options: dict[str, object] = dict(_parse_options(param or []))
    if cls.needs_embeddings:
        if embeddings is None:
            raise typer.BadParameter(f"{model} ranks by content: give --embeddings (a `tunespace embed` folder)")
        options["embeddings"] = ItemEmbeddings.load(embeddings)
    users, items = IdMap.from_values(events["user_id"], "user_id"), IdMap.from_values(events["track_id"], "track_id")
    fitted = cls(**options).fit(InteractionMatrix.from_frame(events, users, items))
    fitted.save(out)
    console.print(f"{model} fitted on {len(events):,} events of {len(users):,} listeners and {len(items):,} tracks "
                  f"-> {out}; try: tunespace search --user {escape(str(users.ids[0]))} --model {out}",
                  soft_wrap=True, highlight=False)


@app.command("import-log")
def import_log(
    log: Annotated[Path, typer.Argument(help="The listening log: a .csv or .parquet file, one row per listen.")],
    out: Annotated[Path, typer.Option(help="New data-model folder for interactions.parquet and tracks.parquet.")],
    user: Annotated[str, typer.Option(help="The log's column of user ids.")],
    track: Annotated[str, typer.Option(help="The log's column of track ids.")],
    time: Annotated[str, typer.Option(help="The log's column of listening times.")],
    weight: Annotated[str | None, typer.Option(help="The log's column of non-negative weights (play counts); "
                                                    "default: 1 per row.")] = None,
    time_format: Annotated[str, typer.Option(help="unix (seconds), iso (ISO-8601) or auto (unix when every "
                                                  "cell is a number).")] = "auto",
    tracks: Annotated[Path | None, typer.Option(help="A track table (.parquet or .csv, track_id and any metadata) "
                                                     "every logged track must be in; default: the distinct ids.")]
    = None,
) -> None:
    """Turn your own listening log into a data-model folder, so `benchmark recsys --dataset folder` runs on it
    without any Python."""
    from tunespace.data.log_import import import_log as _import_log

    dataset = _import_log(log, out, user=user, track=track, time=time, weight=weight, time_format=time_format,
                          tracks=tracks)
    summary = dataset.summary()
    first, last = dataset.interactions["timestamp"].min(), dataset.interactions["timestamp"].max()
    console.print(f"imported {escape(str(log))} -> {escape(str(out))}: {summary['users']} users, "
                  f"{summary['tracks']} tracks, {summary['interactions']} interactions from {first:%Y-%m-%d} to "
                  f"{last:%Y-%m-%d}", soft_wrap=True, highlight=False)
    console.print(f"next: tunespace benchmark recsys --dataset folder --data {shlex.quote(str(out))} --models "
                  f"{COLLABORATIVE_MODELS} --cutoff YYYY-MM-DD --test-start YYYY-MM-DD", soft_wrap=True,
                  highlight=False)


@app.command()
def report(
    evaluation: Annotated[Path, typer.Option("--eval", help="A folder written by `tunespace htcl evaluate`, "
                                                            "`tunespace evaluate`, `benchmark recsys`, the demo, "
                                                            "`pretrain-pairs` or `clamp evaluate`.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
) -> None:
    """One self-contained HTML page with a figure of every model's metrics, the tables and the paired tests."""
    from tunespace.reports.clamp import clamp_report
    from tunespace.reports.html import evaluation_report, results_report
    from tunespace.reports.pairs import study_report

    writers = {"htcl": evaluation_report, "results": results_report, "pairs": study_report, "clamp": clamp_report}
    write = writers[_report_kind(evaluation)]
    console.print(f"wrote {write(evaluation, out)}")


HTCL_REPORT_INPUTS = ("semantic.csv", "preference.csv")  # what `htcl evaluate --out FOLDER` writes
# the other kinds, each recognised by files its command always writes
REPORT_INPUTS = {"results": ("results.csv",),  # `evaluate`, `benchmark recsys` and the demo
                 "pairs": ("tagging.csv", "similarity.csv"),  # `pretrain-pairs`
                 "clamp": ("search.csv", "cross_modal.csv")}  # `clamp evaluate`


def _report_kind(folder: Path) -> str:
    """"htcl", "results", "pairs" or "clamp" by the files in the folder; a folder of no kind names the commands
    that write one."""
    expected = ("expected a folder written by `tunespace htcl evaluate --out FOLDER`, `tunespace evaluate --out "
                "FOLDER`, `tunespace benchmark recsys --out FOLDER`, `tunespace demo --out FOLDER`, `tunespace "
                "pretrain-pairs --out FOLDER` or `tunespace clamp evaluate --out FOLDER`")
    if not folder.is_dir():
        raise EvaluationFolderError(f"{folder}: no such folder; {expected}")
    htcl = [name for name in HTCL_REPORT_INPUTS if (folder / name).is_file()]
    if len(htcl) == len(HTCL_REPORT_INPUTS):
        return "htcl"
    if htcl:
        missing = [name for name in HTCL_REPORT_INPUTS if name not in htcl]
        raise EvaluationFolderError(f"{folder}: no {' or '.join(missing)}; {expected}")
    for kind, inputs in REPORT_INPUTS.items():
        if all((folder / name).is_file() for name in inputs):
            return kind
    raise EvaluationFolderError(f"{folder}: no results.csv, semantic.csv, preference.csv, tagging.csv or search.csv; "
                                f"{expected}")


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="Data-model folder (interactions.parquet, ...).")],
    cutoff: CutoffOption,
    out: SplitOutOption,
    train_start: TrainStartOption = None,
    test_start: TestStartOption = None,
    test_end: TestEndOption = None,
    validation_ratio: ValidationRatioOption = 0.5,
    seed: SplitSeedOption = 42,
) -> None:
    """Apply the temporal protocol to a data-model folder and save the split."""
    from tunespace.data.dataset import Dataset

    dataset = Dataset.load(data)
    config = SplitConfig(cutoff=cutoff, train_start=train_start, test_start=test_start, test_end=test_end,
                         validation_ratio=validation_ratio, seed=seed)
    result = temporal_split(dataset.interactions, config)
    result.save(out)
    _show(pd.DataFrame({"part": list(result.stats), "count": list(result.stats.values())}), f"split -> {out}")


@app.command()
def evaluate(
    split_dir: Annotated[Path, typer.Argument(help="A folder written by `tunespace split`.")],
    models: Annotated[str, typer.Option(help="Comma-separated recommender names (knn needs --embeddings).")] = (
        COLLABORATIVE_MODELS),
    embeddings: Annotated[list[Path] | None, typer.Option(
        help="Item embeddings (Parquet file or `tunespace embed` folder) for content models; repeatable.")] = None,
    ks: Annotated[str, typer.Option("--k", help="Comma-separated cut-offs.")] = "10,50",
    part: Annotated[str, typer.Option(help="validation or test.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Folder for CSV, Markdown and per-user metrics.")] = None,
) -> None:
    """Fit recommenders on a saved split's train part and evaluate them by full ranking."""
    import contextlib
    from dataclasses import asdict

    from tunespace.provenance import recorded_run

    cutoffs = sorted(set(_ks(ks)))
    if not cutoffs or min(cutoffs) < 1:
        raise typer.BadParameter(f"--k needs positive cut-offs, got {ks!r}")
    with recorded_run(out) if out is not None else contextlib.nullcontext({}) as record:
        loaded = Split.load(split_dir)
        vectors = _embedding_sets(embeddings or [])
        specs = model_specs([m.strip() for m in models.split(",") if m.strip()], vectors)
        with _progress() as progress:
            run = run_benchmark(loaded, specs, ks=cutoffs, part=part, progress=_progress_factory(progress))
        settings: dict[str, object] = {"command": "evaluate", "split_dir": str(split_dir), "part": part,
                                       "split": asdict(loaded.config), "split_stats": dict(loaded.stats),
                                       "embeddings": [str(path) for path in embeddings or []]}
        record["figures"] = _report(run, out, f"{split_dir} ({part})", "", baseline="popularity", settings=settings)
        record["settings"] = {**settings, "ks": cutoffs,
                              "models": {label: {"params": params} for label, params in run.params.items()}}


@benchmark_app.command("recsys")
def benchmark_recsys(
    dataset: Annotated[str, typer.Option(
        help="synthetic, hetrec, movielens-100k or folder (required: no default reaches for files outside the "
             "project; the demo's corpus is --dataset folder --data demo-results/corpus).")],
    data: Annotated[Path | None, typer.Option(
        help="The dataset's files (hetrec: the .dat folder; folder: a data-model folder).")] = None,
    cutoff: Annotated[str, typer.Option(help="Train ends before this date.")] = "2010-01-01",
    train_start: Annotated[str | None, typer.Option(help="Train window start.")] = None,
    test_start: Annotated[str | None, typer.Option(help="Test window start.")] = "2010-07-01",
    test_end: Annotated[str | None, typer.Option(help="Test window end (exclusive).")] = None,
    validation_ratio: Annotated[float, typer.Option(help="Share of test users used for validation.")] = 0.5,
    split_seed: Annotated[int, typer.Option(
        help="Seed of the validation/test user partition (the first, with --split-seeds) and of generated content "
             "features; the same for every training seed.")] = 42,
    split_seeds: Annotated[int, typer.Option(
        help="Number of split seeds, split-seed .. split-seed+N-1: the test-window users are re-partitioned into "
             "validation and test by each; tables report the mean over split seeds and their sd beside the "
             "per-user intervals, and paired tests run per split seed and across them. Models that do not "
             "early-stop on validation are fitted once and sliced.")] = 1,
    seed: Annotated[int, typer.Option(
        help="First training seed (initialisation, negative sampling, masking of the trained models).")] = 0,
    seeds: Annotated[int, typer.Option(
        help="Number of training seeds, seed .. seed+seeds-1: the tables report the mean and sd over them.")] = 1,
    models: Annotated[str, typer.Option(
        help="Comma-separated recommender names; popularity and EASE are always added, and each content model "
             "brings its random-init row (shallow-random, bert4rec-random).")] = DEFAULT_MODELS,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated embedding backends for the content models, each from an --embeddings path of that "
             "backend or else DATA/emb/<name> (what `tunespace embed --out DATA/emb/<name>` writes).")] = None,
    ks: Annotated[str, typer.Option("--k", help="Comma-separated cut-offs, each a column of every table; NDCG at the "
                                                "largest is the headline of the tests shown and the chart.")] = "10,50",
    part: Annotated[str, typer.Option(help="validation or test.")] = "test",
    out: Annotated[Path | None, typer.Option(
        help="Folder for the tables (CSV, Markdown, per seed, per split seed), significance.csv, the chart, "
             "settings.json, provenance.json and the split.")] = None,
    embeddings: Annotated[list[Path] | None, typer.Option(
        help="Item embeddings (Parquet file or `tunespace embed` folder) for content models, labelled by backend or "
             "file name, or NAME=PATH to name them; repeatable.")] = None,
    text_encoder: Annotated[str | None, typer.Option(
        help="hetrec: also embed the tag text with this sentence encoder (minilm or a local folder).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Cap the epochs of every trained model (shallow, bert4rec and their random-init rows); default: "
             "each model's own (100, 200), with early stopping on validation NDCG@50.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        help="Model parameter MODEL.KEY=VALUE, repeatable (bert4rec.hidden=32); a content model's parameters "
             "also apply to its random-init row unless given for that row.")] = None,
    popularity_aware: Annotated[bool, typer.Option(
        help="Also report every content row popularity-aware (knn+pop[set]: the same fitted model's score + beta x "
             "the popularity z-score, beta chosen on the validation users), tested against popularity and its raw "
             "row; popularity_weights.csv holds every beta's validation figure.")] = True,
    cold_ranking: Annotated[str, typer.Option(
        help="How the cold-item pairs are ranked: mixed (among every train and new item) or new (among the new "
             "items alone, so that lifting every new item above the warm ones earns nothing).")] = "mixed",
) -> None:
    """The study's Table 3 (Tamm and Aljanaki's temporal protocol): every content model x backend, the random-init
    rows, popularity and EASE; HR/Recall/NDCG at every --k with confidence intervals (and spreads over training and
    split seeds), paired tests against the random-init row of the same model and against EASE, a bar chart, the
    same models on the cold-item pairs, settings.json and provenance.json. Every content row is also reported
    popularity-aware (+pop) unless --no-popularity-aware."""
    from tunespace.evaluation.benchmark import COLD_RANKINGS
    from tunespace.evaluation.seeds import split_seed_list

    if seeds < 1:
        raise typer.BadParameter("--seeds must be at least 1")
    if split_seeds < 1:
        raise typer.BadParameter("--split-seeds must be at least 1")
    if cold_ranking not in COLD_RANKINGS:
        raise typer.BadParameter(f"--cold-ranking must be one of {', '.join(COLD_RANKINGS)}, got {cold_ranking!r}")
    config = SplitConfig(cutoff=cutoff, train_start=train_start, test_start=test_start, test_end=test_end,
                         validation_ratio=validation_ratio, seed=split_seed)
    params = _model_params(param or [], epochs, [m.strip() for m in models.split(",") if m.strip()])
    _study(dataset, data, config, models, backends, ks, part, out, f"benchmark recsys: {dataset}",
           embeddings or [], text_encoder, seeds=list(range(seed, seed + seeds)), params=params,
           split_seeds=split_seed_list(split_seed, split_seeds), popularity_aware=popularity_aware,
           cold_ranking=cold_ranking)


def _model_params(pairs: Sequence[str], epochs: int | None, models: Sequence[str]) -> dict[str, dict[str, object]]:
    """MODEL.KEY=VALUE pairs by model, plus `epochs` for every model (and random-init row) that trains by epochs."""
    from tunespace.evaluation.benchmark import random_init_of

    params: dict[str, dict[str, object]] = {}
    for pair in pairs:
        model, dot, rest = pair.partition(".")
        if not dot or not model:
            raise typer.BadParameter(f"expected MODEL.KEY=VALUE, got {pair!r}")
        params.setdefault(model, {}).update(_parse_options([rest]))
    if epochs is not None:
        names = [*models, *(r for m in models if (r := random_init_of(m)))]
        for name in names:
            if accepts(name, "epochs"):
                params.setdefault(name, {})["epochs"] = epochs
    return params


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code. Library errors become one clear line, not a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        # standalone_mode=False: typer returns (does not raise) the code of an Exit, and turns Ctrl-C into Exit(130)
        code = app(args=args, standalone_mode=False)
    except TunespaceError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True, highlight=False)
        return 1
    except typer.Exit as done:
        code = done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = INTERRUPTED
    except ImportError as error:  # an optional package no command wrapped: name its extra, else it is a bug
        named = missing_extra(error)
        if named is None:
            raise
        console.print(f"[red]error:[/] {escape(str(named))}", soft_wrap=True, highlight=False)
        return 1
    except typer.exceptions.TyperException as error:  # usage errors: unknown option, bad value
        console.print(f"[red]usage error:[/] {escape(error.format_message())}", soft_wrap=True, highlight=False)
        return error.exit_code
    if code == INTERRUPTED:
        console.print(f"[red]interrupted:[/] {_resume_hint(args)}", soft_wrap=True, highlight=False)
    return code if isinstance(code, int) else 0


INTERRUPTED = 130  # the shell's code for Ctrl-C (128 + SIGINT)


def _resume_hint(args: Sequence[str]) -> str:
    """What to do after Ctrl-C: embedding keeps its finished shards, so the same command resumes it."""
    if args and args[0] == "embed":
        return ("rerun the same command to resume: `tunespace embed` keeps the shards it finished and embeds only "
                "the rest")
    return "nothing was reported; rerun the same command to run it again"


__all__ = ["app", "main", "HEADLINE"]

# Commands that live in their own files, registered last (they import this module's console and helpers).
from tunespace.cli.catalogue import catalogue
from tunespace.cli.pairs import pretrain_pairs
from tunespace.cli.search import index_app, search
from tunespace.cli.serve import serve

app.command(name="catalogue")(catalogue)
app.add_typer(index_app, name="index")
app.command(name="search")(search)
app.command(name="serve")(serve)
app.command(name="pretrain-pairs")(pretrain_pairs)
from tunespace.cli.scale import evaluate_log, split_log, synth_log

app.command(name="synth-log")(synth_log)
app.command(name="split-log")(split_log)
app.command(name="evaluate-log")(evaluate_log)

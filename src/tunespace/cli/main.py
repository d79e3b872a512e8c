"""The `tunespace` command: a thin layer over the library that shows progress and tables.

`main(argv)` takes a list of arguments so tests call the CLI in-process.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tunespace.cli.htcl import htcl_app
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.splits import Split, SplitConfig, temporal_split
from tunespace.encoders.extract import ExtractionConfig
from tunespace.errors import TunespaceError
from tunespace.evaluation.benchmark import BenchmarkRun, SeededRuns, accepts, model_specs, run_benchmark
from tunespace.evaluation.evaluate import compare, compare_pairs
from tunespace.io import write_text
from tunespace.reports.tables import HEADLINE, formatted, results_frame, to_markdown, write_results

app = typer.Typer(help="tunespace: music representations for recommendation and search.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
benchmark_app = typer.Typer(help="Benchmarks that reproduce published protocols.", no_args_is_help=True)
app.add_typer(benchmark_app, name="benchmark")
console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI: do not squeeze tables to 80

DEFAULT_MODELS = "popularity,itemknn,ease,knn"
COLLABORATIVE_MODELS = "popularity,itemknn,ease"
DEMO_BACKENDS = ("mfcc", "musicnn-msd")


def _ks(values: str) -> list[int]:
    return [int(v) for v in values.split(",") if v.strip()]


def _progress_factory(progress: Progress) -> Callable[[str, int], Callable[[int], None]]:
    def start(label: str, total: int) -> Callable[[int], None]:
        task = progress.add_task(f"evaluating {label}", total=total)
        return lambda done: progress.advance(task, done)

    return start


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _show(frame: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="left" if column == "model" else "right", no_wrap=True)
    for row in frame.itertuples(index=False):
        table.add_row(*(escape(str(v)) for v in row))  # labels such as knn[mfcc] are not markup
    console.print(table)


def _show_tests(tests: pd.DataFrame, title: str) -> None:
    """A paired-tests table in the terminal, numbers to 3 significant digits."""
    columns = [c for c in ("part", "model", "baseline", "mean_difference", "t_p_holm", "wilcoxon_p_holm") if c in tests]
    shown = tests[columns].copy()
    for column in ("mean_difference", "t_p_holm", "wilcoxon_p_holm"):
        shown[column] = shown[column].map(lambda v: f"{v:.3g}")
    _show(shown, title)


def _report(run: BenchmarkRun, out: Path | None, title: str, preamble: str, baseline: str | None) -> None:
    frame = results_frame(run.results)
    frame["fit_s"] = [round(run.fit_seconds[m], 2) for m in frame["model"]]
    _show(formatted(frame).assign(fit_s=frame["fit_s"]), title)
    tests = None
    if baseline in run.results and len(run.results) > 1:
        tests = compare(run.results, baseline, "ndcg@50")
        _show_tests(tests, f"NDCG@50 against {baseline}: paired tests, Holm-corrected")
    if out is not None:
        csv_path, md_path = write_results(frame, out, preamble=f"# {title}\n\n{preamble}\n\n")
        per_user = pd.concat([r.per_user.assign(model=label) for label, r in run.results.items()])
        per_user.to_parquet(out / "per_user.parquet", index=False)
        if tests is not None:
            tests.to_csv(out / "significance.csv", index=False)
        console.print(f"wrote {csv_path}, {md_path} and per-user metrics to {out / 'per_user.parquet'}")


def _study(dataset: str, data: Path | None, config: SplitConfig, models: str, backends: str | None, ks: str,
           part: str, out: Path | None, title: str, embeddings: Sequence[Path] = (), text_encoder: str | None = None,
           seeds: Sequence[int] = (0,), params: dict[str, dict[str, object]] | None = None) -> SeededRuns:
    """The study's Table 3 on one dataset: every content model x backend, the random-init rows, popularity and
    EASE, over `seeds`; the warm table with paired tests and a bar chart, and the cold-start table."""
    from tunespace.data.sources import load_source
    from tunespace.evaluation.benchmark import run_seeds, study_baselines, study_specs
    from tunespace.reports.study import (formatted_study, formatted_tests, per_seed_frame, seed_averaged,
                                         study_chart, study_frame, write_png, write_study_table)

    with console.status(f"loading {dataset}"):
        source = load_source(dataset, data, cutoff=config.cutoff, seed=config.seed, text_encoder=text_encoder)
    console.print(f"[bold]{dataset}[/]: {source.note}")
    console.print(source.dataset.summary())
    split = temporal_split(source.dataset.interactions, config)
    console.print({key: value for key, value in split.stats.items()})
    vectors = _study_embeddings(source.embeddings, embeddings, backends, data)
    specs = study_specs([m.strip() for m in models.split(",") if m.strip()], vectors, params)
    cold_part = f"cold_{part}"
    with _progress() as progress:
        seeded = run_seeds(split, specs, list(seeds), ks=_ks(ks), part=part, progress=_progress_factory(progress),
                           cold_part=cold_part)

    frame = study_frame(seeded, specs)
    baselines = study_baselines(specs)
    averaged = seed_averaged(seeded.runs)
    tests = pd.concat([compare_pairs(averaged, list(baselines.items()), metric) for metric in HEADLINE],
                      ignore_index=True) if baselines else None
    unpaired = [spec for spec in specs if baselines.get(spec.label) == "popularity"]  # knn: no random-init row
    test_notes = {spec.label: "no random-init row: against popularity" for spec in unpaired}
    unpaired_text = (f" {', '.join(dict.fromkeys(spec.family for spec in unpaired))} has no random-init "
                     "counterpart: its rows are tested against popularity." if unpaired else "")
    fixed = [spec.label for spec in specs if not seeded.seeded[spec.label]]
    given = "; ".join(f"{spec.label} " + ", ".join(f"{key}={value}" for key, value in spec.params.items())
                      for spec in specs if spec.params)
    seed_text = (f"seed {seeds[0]}" if len(seeds) == 1 else
                 f"seeds {seeds[0]}..{seeds[-1]} (mean over seeds; sd = standard deviation of the per-seed means)")
    preamble = (f"# {title}\n\nDataset: {source.note}. Protocol: train [{config.train_start or 'start'}, "
                f"{config.cutoff}), test pairs first seen in [{config.test_start or config.cutoff}, "
                f"{config.test_end or 'end'}), {part} users (validation ratio {config.validation_ratio}, split seed "
                f"{config.seed}); full ranking over the {split.n_warm_items} train items with seen items removed; mean "
                f"± 95% t-interval half-width over users. Training {seed_text}: a seed sets a trained model's "
                "initialisation, negative sampling and masking, while the validation/test partition stays fixed by "
                "the split seed, so the spread measures training variance only"
                + (f"; {', '.join(fixed)} are deterministic and fitted once" if fixed else "") + ". "
                + (f"Parameters other than the models' defaults: {given}. " if given else "")
                + "fit_s: mean fit time in seconds (early-stopping models include their per-epoch validation).\n\n")
    _show(formatted_study(frame), title)
    notes = ""
    if tests is not None:
        _show(formatted_tests(tests[tests["metric"] == "ndcg@50"], test_notes).drop(columns="metric"),
              "NDCG@50: content rows against the random-init row of the same model, paired tests, Holm-corrected")
        notes = ("\n## Paired tests\n\nEach content row against the random-init row of the same model (t-test and "
                 "Wilcoxon signed-rank over the test users' seed-averaged values); each test's p-values are "
                 f"Holm-corrected over all {len(baselines)} comparisons of a metric."
                 + unpaired_text
                 + "\n\n" + to_markdown(formatted_tests(tests, test_notes)))
    cold = None
    if seeded.runs[0].cold_results:
        cold = study_frame(seeded, specs, part="cold_results")
        handling = [seeded.runs[0].cold_handling[label] for label in cold["model"]]
        _show(formatted_study(cold), f"cold items ({cold_part}): ranked among all {len(split.items)} items")
        _show(pd.DataFrame({"model": cold["model"], "cold items": handling}), "how each model scores cold items")
    if out is not None:
        split.save(out / "split")
        write_study_table(frame, per_seed_frame(seeded), out, "results", preamble, notes)
        per_user = pd.concat([result.per_user.assign(model=label, seed=seed) for seed, run in
                              zip(seeded.seeds, seeded.runs) for label, result in run.results.items()])
        per_user.to_parquet(out / "per_user.parquet", index=False)
        if tests is not None:
            write_text(tests.to_csv(index=False), out / "significance.csv")
        write_png(study_chart(frame, "ndcg@50"), out / "ndcg50.png")
        written = ["results.csv", "results.md", "results_per_seed.csv", "per_user.parquet", "ndcg50.png"]
        written += ["significance.csv"] if tests is not None else []
        if cold is not None:
            truth = split.part(cold_part)
            unplaced = [label for label, placed in seeded.runs[0].cold_placed.items() if not placed]
            cold_preamble = (
                f"# {title}: cold items\n\nThe same fitted models on the {cold_part} pairs: {len(truth)} pairs of "
                f"{truth['user_id'].nunique()} users with items unseen in training, ranked among the whole catalogue "
                f"({split.n_warm_items} train + {len(split.items) - split.n_warm_items} cold items) with seen items "
                f"removed; {seed_text}. A content model places a cold item from its embedding; a model that cannot"
                + (f" ({', '.join(unplaced)})" if unplaced else "") + " scores it -inf, so it never recommends one "
                "and its cold HR, Recall and NDCG are 0 by construction. How each model handles cold items is in the "
                "last column.\n\n")
            write_study_table(cold, per_seed_frame(seeded, "cold_results"), out, "cold", cold_preamble,
                              extra_columns={"cold items": handling})
            written += ["cold.csv", "cold.md", "cold_per_seed.csv"]
        console.print(f"wrote {', '.join(written)} and the split to {out}", soft_wrap=True)
    return seeded


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
        if manifest.get("tracks") and manifest.get("shard_size"):
            expected = -(-int(manifest["tracks"]) // int(manifest["shard_size"]))
            if len(shards) < expected:
                raise TunespaceError(f"the {name!r} embeddings at {folder} are unfinished ({len(shards)} of "
                                     f"{expected} shards); finish them with: {command} (it resumes)")
    return ItemEmbeddings.load(folder)


def _embedding_sets(paths: Sequence[Path]) -> dict[str, ItemEmbeddings]:
    """Load embedding files or `tunespace embed` folders, labelled by backend (from the manifest) or file stem."""
    sets: dict[str, ItemEmbeddings] = {}
    for path in paths:
        manifest = path / "manifest.json" if path.is_dir() else None
        label = json.loads(manifest.read_text())["backend"] if manifest and manifest.exists() else path.stem
        while label in sets:
            label += "'"
        sets[label] = ItemEmbeddings.load(path)
    return sets


def _parse_options(pairs: Sequence[str]) -> dict[str, object]:
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


@app.command()
def embed(
    backend: Annotated[str, typer.Option(help="Backend name (see --list).")] = "mfcc",
    data: Annotated[Path | None, typer.Option(help="Data-model folder with tracks.parquet (audio_path).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder of embedding shards (resumes if present).")] = None,
    pooling: Annotated[str, typer.Option(help="mean, or mean+std of the frames.")] = "mean",
    option: Annotated[list[str] | None, typer.Option(help="Backend option key=value (layer, weights...).")] = None,
    batch_size: Annotated[int, typer.Option(help="Segments per forward pass.")] = 16,
    shard_size: Annotated[int, typer.Option(help="Tracks per output shard.")] = 256,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    worker: Annotated[int, typer.Option(help="This worker's index in a distributed run.")] = 0,
    workers: Annotated[int, typer.Option(help="Number of workers sharing the shards.")] = 1,
    list_backends: Annotated[bool, typer.Option("--list", help="List the backends and exit.")] = False,
) -> None:
    """Embed every track's audio with a frozen backend: time-averaged vectors in resumable Parquet shards."""
    import torch

    from tunespace.encoders.base import backend_names

    if list_backends:
        console.print(", ".join(backend_names()))
        return
    if data is None or out is None:
        raise typer.BadParameter("--data and --out are required")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = ExtractionConfig(backend=backend, options=_parse_options(option or []), pooling=pooling,
                              batch_size=batch_size, shard_size=shard_size, device=device)
    _embed(config, data, out, worker, workers)


def _embed(config: ExtractionConfig, data: Path, out: Path, worker: int = 0, workers: int = 1) -> None:
    """Run an extraction with a progress bar in audio minutes per second, then summarise what was skipped."""
    from tunespace.data.dataset import Dataset
    from tunespace.encoders.extract import Extractor, load_skipped

    tracks = Dataset.load_tracks(data)
    extractor = Extractor(config)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task(f"embedding with {config.backend}", total=len(tracks), speed="")
        started, audio = time.perf_counter(), [0.0]

        def advance(tracks_done: int, seconds: float) -> None:
            audio[0] += seconds
            rate = audio[0] / 60 / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=tracks_done, speed=f"{rate:.2f} audio min/s")

        report = extractor.run(tracks, data, out, worker=worker, workers=workers, progress=advance)
    skipped = load_skipped(out)
    console.print(f"{config.backend} ({extractor.output_dim}-d, {config.pooling}) -> {out}: {report.embedded} "
                  f"tracks embedded, {report.skipped} skipped, {report.shards_written} shards written, "
                  f"{report.shards_reused} reused; {report.audio_seconds / 60:.1f} audio minutes in "
                  f"{report.seconds:.1f} s ({report.audio_minutes_per_second:.2f} audio min/s)", soft_wrap=True)
    if len(skipped):
        counts = skipped["kind"].value_counts()
        _show(pd.DataFrame({"reason": counts.index, "tracks": counts.to_numpy()}),
              f"skipped tracks (all {len(skipped)} with reasons in {out}/shard-*.skipped.parquet)")


corpus_app = typer.Typer(help="The built-in corpus of real tunes.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(htcl_app, name="htcl")


def _build_corpus(size: str, out: Path, workers: int, seed: int, tracks: int | None = None,
                  listeners: int | None = None) -> dict:
    from tunespace.corpus.build import CorpusConfig, build_corpus

    config = CorpusConfig(size=size, seed=seed, workers=workers, tracks=tracks, listeners=listeners)
    with _progress() as progress:
        report = build_corpus(out, config, progress=_progress_factory(progress))
    timings = ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in report["timings"].items())
    speed = report["audio_minutes_rendered_per_second"]
    console.print(f"corpus [bold]{size}[/] -> {out}: {report['tracks']} tracks ({report['audio_minutes']:.0f} audio "
                  f"minutes, {report['rendered_now']} rendered now"
                  + (f" at {speed:.1f} audio minutes/s" if speed else "") + f"), {report['skipped']} skipped, "
                  f"{report['users']} listeners, {report['interactions']} interactions, {report['playlists']} "
                  f"playlists; {timings}", soft_wrap=True)
    return report


@corpus_app.command("build")
def corpus_build(
    size: Annotated[str, typer.Option(help="small (300 tracks), medium (2000) or full (every tune).")] = "small",
    out: Annotated[Path, typer.Option(help="Folder to write the corpus to.")] = Path("corpus"),
    workers: Annotated[int, typer.Option(help="Parallel rendering processes.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of tune selection, performances and listeners.")] = 0,
    tracks: Annotated[int | None, typer.Option(help="Override the size's number of tracks.")] = None,
    listeners: Annotated[int | None, typer.Option(help="Override the size's number of listeners.")] = None,
) -> None:
    """Render real tunes from the music21 corpus to audio, describe them, and simulate their listeners."""
    _build_corpus(size, out, workers, seed, tracks, listeners)


@app.command()
def demo(out: Annotated[Path, typer.Option(help="Where to write the corpus and results.")] = Path("demo-results"),
         size: Annotated[str, typer.Option(help="Corpus size.")] = "small") -> None:
    """Build the small built-in corpus, embed its audio (MFCC statistics, and MusiCNN when its weights are
    installed), and run the recommenders on it."""
    from tunespace.corpus.build import CUTOFF
    from tunespace.data.dataset import Dataset
    from tunespace.encoders.base import BackendUnavailableError
    from tunespace.evaluation.probe import linear_probe

    console.rule("tunespace demo: the built-in corpus of real tunes")
    _build_corpus(size, out / "corpus", workers=2, seed=0)
    dataset = Dataset.load(out / "corpus")
    assert dataset.tracks is not None
    embeddings: dict[str, ItemEmbeddings] = {}
    for backend in DEMO_BACKENDS:
        try:
            _embed(ExtractionConfig(backend), out / "corpus", out / "embeddings" / backend)
        except BackendUnavailableError as error:
            console.print(f"[yellow]skipping {backend}:[/] {error}", soft_wrap=True)
            continue
        vectors = embeddings[backend] = ItemEmbeddings.load(out / "embeddings" / backend)
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


@app.command()
def report(
    evaluation: Annotated[Path, typer.Option("--eval", help="A folder written by `tunespace htcl evaluate`.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
) -> None:
    """One self-contained HTML page with the tables and the semantic/recommendation trade-off plot."""
    from tunespace.cli.htcl import htcl_report

    console.print(f"wrote {htcl_report(evaluation, out)}")


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="Data-model folder (interactions.parquet, ...).")],
    cutoff: Annotated[str, typer.Option(help="Train ends before this date (ISO, UTC).")],
    out: Annotated[Path, typer.Option(help="Folder to write the split to.")],
    train_start: Annotated[str | None, typer.Option(help="Train window starts at this date.")] = None,
    test_start: Annotated[str | None, typer.Option(help="Test window start (default: the cutoff).")] = None,
    test_end: Annotated[str | None, typer.Option(help="Test window end (exclusive).")] = None,
    validation_ratio: Annotated[float, typer.Option(help="Share of test users used for validation.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the validation/test user partition.")] = 42,
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
    loaded = Split.load(split_dir)
    vectors = _embedding_sets(embeddings or [])
    specs = model_specs([m.strip() for m in models.split(",") if m.strip()], vectors)
    with _progress() as progress:
        run = run_benchmark(loaded, specs, ks=_ks(ks), part=part, progress=_progress_factory(progress))
    _report(run, out, f"{split_dir} ({part})", "", baseline="popularity")


@benchmark_app.command("recsys")
def benchmark_recsys(
    dataset: Annotated[str, typer.Option(help="synthetic, hetrec, movielens-100k or folder.")] = "hetrec",
    data: Annotated[Path | None, typer.Option(help="The dataset's files (hetrec: the .dat folder).")] = None,
    cutoff: Annotated[str, typer.Option(help="Train ends before this date.")] = "2010-01-01",
    train_start: Annotated[str | None, typer.Option(help="Train window start.")] = None,
    test_start: Annotated[str | None, typer.Option(help="Test window start.")] = "2010-07-01",
    test_end: Annotated[str | None, typer.Option(help="Test window end (exclusive).")] = None,
    validation_ratio: Annotated[float, typer.Option(help="Share of test users used for validation.")] = 0.5,
    split_seed: Annotated[int, typer.Option(
        help="Seed of the validation/test user partition and of generated content features; the same for every "
             "training seed.")] = 42,
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
    ks: Annotated[str, typer.Option("--k", help="Comma-separated cut-offs (50 is the headline).")] = "10,50",
    part: Annotated[str, typer.Option(help="validation or test.")] = "test",
    out: Annotated[Path | None, typer.Option(
        help="Folder for the tables (CSV, Markdown, per seed), significance.csv, the chart and the split.")] = None,
    embeddings: Annotated[list[Path] | None, typer.Option(
        help="Item embeddings (Parquet file or `tunespace embed` folder) for content models; repeatable.")] = None,
    text_encoder: Annotated[str | None, typer.Option(
        help="hetrec: also embed the tag text with this sentence encoder (minilm or a local folder).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Cap the epochs of every trained model (shallow, bert4rec and their random-init rows); default: "
             "each model's own (100, 200), with early stopping on validation NDCG@50.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        help="Model parameter MODEL.KEY=VALUE, repeatable (bert4rec.hidden=32); a content model's parameters "
             "also apply to its random-init row unless given for that row.")] = None,
) -> None:
    """The study's Table 3 (Tamm and Aljanaki's temporal protocol): every content model x backend, the random-init
    rows, popularity and EASE; HR/Recall/NDCG@50 with confidence intervals, paired tests against the random-init
    row of the same model, a bar chart, and the same models on the cold-item pairs."""
    if seeds < 1:
        raise typer.BadParameter("--seeds must be at least 1")
    config = SplitConfig(cutoff=cutoff, train_start=train_start, test_start=test_start, test_end=test_end,
                         validation_ratio=validation_ratio, seed=split_seed)
    params = _model_params(param or [], epochs, [m.strip() for m in models.split(",") if m.strip()])
    _study(dataset, data, config, models, backends, ks, part, out, f"benchmark recsys: {dataset}",
           embeddings or [], text_encoder, seeds=list(range(seed, seed + seeds)), params=params)


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
    try:
        app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except TunespaceError as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True, highlight=False)
        return 1
    except typer.Exit as done:
        return done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except typer.exceptions.TyperException as error:  # usage errors: unknown option, bad value
        console.print(f"[red]usage error:[/] {error.format_message()}", soft_wrap=True, highlight=False)
        return error.exit_code
    return 0


__all__ = ["app", "main", "HEADLINE"]

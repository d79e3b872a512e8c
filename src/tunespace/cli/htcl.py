"""`tunespace htcl pretrain|finetune|evaluate`: the two HTCL stages and their evaluation in both spaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

htcl_app = typer.Typer(help="HTCL: audio-text pretraining, then preference-aware fine-tuning.", no_args_is_help=True)

# Each stage-2 pair source with its default options; `--pairs` picks some (sources of one kind per batch).
PREFERENCE_SOURCES = {"session": {"weight": 1.0, "window_minutes": 30.0, "neighbours": 2},
                      "playlist": {"weight": 1.0},
                      "history": {"weight": 1.0, "profile_size": 4}}
DEFAULT_PAIRS = "session,playlist"


def _console():
    from tunespace.cli.main import console

    return console


def _overrides(pairs: list[str] | None) -> dict[str, object]:
    from tunespace.cli.main import _parse_options

    return _parse_options(pairs or [])


def _train(config, data: Path, out: Path, resume: bool, init_from: Path | None, device: str) -> None:
    import torch

    from tunespace.contrastive.htcl import Corpus, make_stage, save_config
    from tunespace.contrastive.train import init_distributed, train_loop

    context = init_distributed(device)
    console = _console()
    if resume and (out / "config.yaml").exists():
        config = _resumable(config, out / "config.yaml")
    corpus = Corpus.load(data, config.cutoff)
    out.mkdir(parents=True, exist_ok=True)
    if context.is_main:
        save_config(config, out / "config.yaml")
    model, batches = make_stage(corpus, config, context, cache=data / ".cache", init_from=init_from)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=True,
                  disable=not context.is_main) as progress:
        task = progress.add_task(f"training {out.name}", total=config.train.steps, info="")

        def advance(step: int, values: dict[str, float]) -> None:
            progress.update(task, completed=step, info=f"loss {values.get('loss', float('nan')):.3f}")

        report = train_loop(model, batches, config.train, out, context, resume=resume, progress=advance)
    if context.is_main:
        summary = {"steps_run": report.steps_run, "resumed_from": report.resumed_from,
                   "skipped_steps": report.skipped_steps, "seconds": report.seconds,
                   "clips_per_second": report.examples_per_second * _clips_per_example(config),
                   "inputs": "audio clips" if config.stage.tune == "all" else "cached trunk features",
                   "world_size": context.world_size, "threads": torch.get_num_threads(),
                   "last": report.history[-1] if report.history else {}}
        (out / "train_report.json").write_text(json.dumps(summary, indent=2))
        unit = "clips/s" if config.stage.tune == "all" else "windows/s from cached trunk features"
        console.print(f"{out}: {report.steps_run} steps in {report.seconds:.0f} s "
                      f"({summary['clips_per_second']:.1f} {unit}, {context.world_size} process(es)); "
                      f"last: {json.dumps({k: round(v, 4) for k, v in summary['last'].items()})}", soft_wrap=True)


def _clips_per_example(config) -> float:
    """Audio clips one batch row costs: a semantic clip (when lambda > 0), plus an anchor (or a profile of several
    tracks) and a positive per preference pair, plus its share of the catalogue draws."""
    stage = config.stage
    clips = 1.0 if stage.semantic_weight > 0 and stage.semantic_sources else 0.0
    if stage.preference_sources:
        history = stage.preference_sources.get("history")
        clips += (int((history or {}).get("profile_size", PREFERENCE_SOURCES["history"]["profile_size"]))
                  if history is not None else 1) + 1
        clips += stage.catalogue_negatives / config.train.batch_size
    return clips


def _flat(values: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict) and not key.endswith("_sources"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _resumable(config, saved_path: Path):
    """The saved run's config, with only train.steps allowed to change (to extend a run); anything else differing
    would silently train a different model under the old checkpoint, so it is refused."""
    from dataclasses import replace

    from tunespace.contrastive.htcl import ConfigError, load_config

    saved = load_config(saved_path)
    extended = replace(saved, train=replace(saved.train, steps=config.train.steps))
    if extended != config:
        mine, theirs = _flat(config.to_dict()), _flat(extended.to_dict())
        changed = [key for key in mine if mine[key] != theirs.get(key)]
        raise ConfigError(f"{saved_path}: --resume with different settings ({', '.join(changed)}); pass the same "
                          "options as the run being resumed (only --steps may grow)")
    return extended


@htcl_app.command()
def pretrain(
    data: Annotated[Path, typer.Option(help="Corpus folder (tracks with audio, captions.parquet).")],
    out: Annotated[Path, typer.Option(help="Run folder: config.yaml, last.pt, train_report.json.")],
    config: Annotated[str, typer.Option(help="tiny, small, base or a YAML file.")] = "tiny",
    steps: Annotated[int | None, typer.Option(help="Override train.steps.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: train.lr=0.001.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from out/last.pt if present.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Stage 1: align audio with its descriptions (and the weak metadata text)."""
    from tunespace.contrastive.htcl import load_config

    overrides = _overrides(set_)
    if steps is not None:
        overrides["train.steps"] = steps
    _train(load_config(config, overrides), data, out, resume, None, device)


@htcl_app.command()
def finetune(
    data: Annotated[Path, typer.Option(help="Corpus folder with interactions (train part used only).")],
    init: Annotated[Path, typer.Option(help="The stage-1 run folder to start from.")],
    out: Annotated[Path, typer.Option(help="Run folder of this stage.")],
    semantic_weight: Annotated[float, typer.Option("--lambda", help="Weight of the kept audio-text loss.")] = 0.5,
    anchor_weight: Annotated[float, typer.Option("--mu", help="Weight of the distillation to stage 1.")] = 0.0,
    pairs: Annotated[str, typer.Option(help="Preference pair sources: session and/or playlist (track-track), or "
                                             "history (a listener's profile -> one more of their tracks).")]
    = DEFAULT_PAIRS,
    tune: Annotated[str, typer.Option(help="all: the whole audio tower on random crops; head: the stage-1 trunk "
                                           "frozen, its window features cached, the projection (and adapter) "
                                           "trained: minutes on a CPU.")] = "all",
    catalogue_negatives: Annotated[int, typer.Option(
        help="Also rank each preference anchor against this many tracks drawn uniformly from the catalogue "
             "(0: in-batch negatives only).")] = 0,
    popularity_correction: Annotated[float, typer.Option(
        help="alpha in [0, 1]: add alpha * log(1 + train plays) to each candidate's logit, so the embeddings need "
             "not memorise popularity (1: pointwise mutual information).")] = 0.0,
    steps: Annotated[int | None, typer.Option(help="Override train.steps.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: train.lr=0.0003.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from out/last.pt if present.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Stage 2: contrast tracks that listeners play together, keeping the semantic space (lambda, mu)."""
    from tunespace.contrastive.htcl import ConfigError, load_config

    names = [name.strip() for name in pairs.split(",") if name.strip()]
    unknown = [name for name in names if name not in PREFERENCE_SOURCES]
    if unknown or not names:
        raise ConfigError(f"--pairs: unknown pair source(s) {unknown or pairs!r}; choose from "
                          f"{', '.join(PREFERENCE_SOURCES)}")
    sources = {name: dict(PREFERENCE_SOURCES[name]) for name in names}
    overrides: dict[str, object] = {"stage.preference_sources": sources, "stage.semantic_weight": semantic_weight,
                                    "stage.anchor_weight": anchor_weight, "stage.tune": tune,
                                    "stage.catalogue_negatives": catalogue_negatives,
                                    "stage.popularity_correction": popularity_correction}
    overrides.update(_overrides(set_))
    if steps is not None:
        overrides["train.steps"] = steps
    config = load_config(init / "config.yaml", overrides)
    _train(config, data, out, resume, init / "last.pt", device)


@htcl_app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Corpus folder.")],
    run: Annotated[list[Path], typer.Option(help="Run folder(s) to evaluate; repeatable.")],
    out: Annotated[Path, typer.Option(help="Folder for semantic.csv, preference.csv and embeddings.")],
    embeddings: Annotated[list[Path] | None, typer.Option(
        help="Other embeddings (e.g. mfcc, musicnn from `tunespace embed`) to rank beside the runs.")] = None,
    models: Annotated[str, typer.Option(help="Content recommenders to run on every embedding set.")] = "knn",
    control: Annotated[str | None, typer.Option(
        help="The run (folder name) every other set is tested against, paired over users; default the first run.")]
    = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Semantic retrieval, zero-shot tagging and probe on held-out tracks; recommendation on the temporal protocol."""
    import torch

    from tunespace.cli.main import _embedding_sets, _show, _show_tests
    from tunespace.contrastive.evaluate import preference_evaluation, semantic_evaluation, track_embeddings
    from tunespace.contrastive.htcl import AudioBank, Corpus, build_model, load_config
    from tunespace.io import write_parquet

    console = _console()
    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          ("cpu" if device == "auto" else device))
    out.mkdir(parents=True, exist_ok=True)
    rows, sets = [], _embedding_sets(embeddings or [])
    for folder in run:
        config = load_config(folder / "config.yaml")
        corpus = Corpus.load(data, config.cutoff)
        model = build_model(config, target, folder / "last.pt")
        bank = AudioBank(corpus.tracks, corpus.root, config.audio.sample_rate, data / ".cache")
        with console.status(f"embedding {len(corpus.tracks)} tracks with {folder.name}"):
            vectors = track_embeddings(model, bank, data / ".cache")
        vectors.save(out / f"{folder.name}.parquet")
        sets[folder.name] = vectors
        with console.status(f"semantic evaluation of {folder.name}"):
            semantic = semantic_evaluation(model, bank, corpus, vectors.vectors)
        learns_preference = any(float((options or {}).get("weight", 1.0)) > 0
                                for options in config.stage.preference_sources.values())
        rows.append({"run": folder.name, "lambda": config.stage.semantic_weight if learns_preference else None,
                     "mu": config.stage.anchor_weight, **semantic.flat()})  # a control (weights 0) is no lambda point
    semantic_frame = pd.DataFrame(rows)
    write_parquet(semantic_frame, out / "semantic.parquet")
    semantic_frame.to_csv(out / "semantic.csv", index=False)
    shown = semantic_frame[["run", "t2a_R@1", "t2a_R@10", "chance_t2a_R@10", "t2a_median_rank", "a2t_R@10",
                            "tagging_macro_roc_auc", "tagging_macro_pr_auc", "probe_family_accuracy"]]
    _show(shown.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v), "semantic space (held-out tracks)")
    control = control or run[0].name
    with console.status("recommendation on the temporal protocol"):
        preference = preference_evaluation(data, load_config(run[0] / "config.yaml").cutoff, sets,
                                           tuple(m.strip() for m in models.split(",")), control=control)
    preference.table.to_csv(out / "preference.csv", index=False)
    written = [out / "semantic.csv", out / "preference.csv"]
    from tunespace.reports.tables import formatted

    _show(formatted(preference.table), "preference space: temporal protocol, test users")
    if not preference.cold.empty:
        preference.cold.to_csv(out / "cold.csv", index=False)
        written.append(out / "cold.csv")
        _show(formatted(preference.cold), "cold items: test pairs of tracks first played after the cutoff")
    if not preference.tests.empty:
        preference.tests.to_csv(out / "significance.csv", index=False)
        written.append(out / "significance.csv")
        _show_tests(preference.tests, f"NDCG@50 against {control}: paired tests, Holm-corrected")
    console.print(f"wrote {', '.join(map(str, written))} and the track embeddings")


def htcl_report(evaluation: Path, out: Path) -> Path:
    """One HTML page from a `tunespace htcl evaluate` folder: both spaces' tables and the lambda trade-off."""
    from tunespace.reports.html import Heading, Paragraph, Plot, Table, tradeoff_plot, write_html_report

    semantic = pd.read_csv(evaluation / "semantic.csv")
    preference = pd.read_csv(evaluation / "preference.csv")
    knn = preference[preference["model"].str.startswith("knn[")].assign(
        run=lambda f: f["model"].str.slice(4, -1))[["run", "ndcg@50", "hit_rate@50", "recall@50"]]
    merged = semantic.merge(knn, on="run", how="left")
    semantic_columns = [c for c in ["run", "lambda", "mu", "t2a_R@1", "t2a_R@5", "t2a_R@10", "chance_t2a_R@10",
                                    "t2a_median_rank", "a2t_R@10", "tagging_macro_roc_auc", "tagging_macro_pr_auc",
                                    "probe_family_accuracy", "ndcg@50"] if c in merged]
    sections: list = [
        Paragraph(f"Evaluation folder: {evaluation}. Semantic metrics are on held-out tracks whose texts were never "
                  "trained on; recommendation metrics use the temporal protocol (test users, full ranking, seen "
                  "items removed), with 95% t-interval half-widths in the CSV."),
        Heading("Semantic space"),
        Table(merged[semantic_columns], caption="retrieval, zero-shot tagging, probe; knn NDCG@50 for reference",
              best={"t2a_R@10": "max", "a2t_R@10": "max", "tagging_macro_roc_auc": "max", "ndcg@50": "max"}),
        Heading("Preference space"),
        Table(preference, caption="content recommenders over each embedding set",
              best={"ndcg@50": "max", "hit_rate@50": "max", "recall@50": "max"}),
    ]
    if (evaluation / "cold.csv").exists():
        sections.append(Table(pd.read_csv(evaluation / "cold.csv"), caption="the same on the cold items (tracks "
                              "first played after the cutoff: only their content places them)",
                              best={"ndcg@50": "max", "hit_rate@50": "max", "recall@50": "max"}))
    if (evaluation / "significance.csv").exists():
        tests = pd.read_csv(evaluation / "significance.csv")
        columns = [c for c in ["part", "model", "baseline", "mean_difference", "t_p_holm", "wilcoxon_p_holm"]
                   if c in tests]
        sections.append(Table(tests[columns], caption="NDCG@50 against the control run, warm test and cold items: "
                              "paired over users, Holm-corrected within each part"))
    staged = merged.dropna(subset=["lambda"]) if "lambda" in merged else merged.iloc[:0]
    if len(staged) >= 2:
        sections += [Heading("Semantic retrieval against recommendation quality over lambda"),
                     Plot(tradeoff_plot(staged, "ndcg@50", "t2a_R@10", "lambda",
                                        title="stage 2: text-to-audio R@10 vs knn NDCG@50"),
                          caption="each point is a stage-2 run; lambda weighs the kept audio-text loss")]
    return write_html_report(out, "tunespace HTCL report", sections)

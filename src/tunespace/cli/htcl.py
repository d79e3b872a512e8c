"""`tunespace htcl pretrain|finetune|evaluate`: the two HTCL stages, and their evaluation in both spaces with the
choice of a stage-2 run made on validation figures only (`tunespace.contrastive.selection`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from tunespace.cli.common import console, embedding_sets, parse_options, show, show_tests, training_progress
from tunespace.contrastive.pairs import PAIR_SOURCE_DEFAULTS
from tunespace.io import write_text

htcl_app = typer.Typer(help="HTCL: audio-text pretraining, then preference-aware fine-tuning.", no_args_is_help=True)

DEFAULT_PAIRS = "session,playlist"
FINETUNE_DEFAULTS: dict[str, object] = {"pairs": DEFAULT_PAIRS, "semantic_weight": 0.5, "tune": "all",
                                        "popularity_correction": 0.0, "learn_popularity": False}
# Named stage-2 recipes: flag values, and `set:KEY` config overrides (explicit flags and --set still win).
FINETUNE_PRESETS: dict[str, dict[str, object]] = {
    "listener": {"pairs": "listener", "semantic_weight": 0.1, "tune": "head", "popularity_correction": 1.0,
                 "learn_popularity": True, "set:audio.adapter_hidden": 256, "set:train.batch_size": 256,
                 "set:train.lr": 0.001, "set:train.warmup_steps": 100, "set:train.steps": 2000},
}


def _overrides(pairs: list[str] | None) -> dict[str, object]:
    return parse_options(pairs or [])


def train_recorded(config, data: Path, out: Path, resume: bool, init_from: Path | None, device: str) -> None:
    """Train one stage; the main process also writes out/provenance.json (command, commit, machine, load, wall
    time including any feature caching, and the train report)."""
    from tunespace.contrastive.train import init_distributed
    from tunespace.provenance import recorded_run

    context = init_distributed(device)
    with contextlib.ExitStack() as stack:
        record = stack.enter_context(recorded_run(out / "provenance.json")) if context.is_main else {}
        record["settings"] = config.to_dict()
        summary = _train_stage(config, data, out, resume, init_from, context)
        record["figures"] = summary


def _train_stage(config, data: Path, out: Path, resume: bool, init_from: Path | None, context) -> dict:
    """Train one stage; on the main process write train_report.json and return its summary."""
    import torch

    from tunespace.contrastive.htcl import HOLDOUT_FILE, Corpus, check_run_holdout, make_stage, save_config
    from tunespace.contrastive.train import train_loop

    if resume and (out / "config.yaml").exists():
        config = _resumable(config, out / "config.yaml")
    corpus = Corpus.load(data, config.cutoff)
    holdout = corpus.holdout(config)
    if init_from is not None:  # a stage 2 must hold out what its stage 1 held out, or it tests on trained tracks
        check_run_holdout(init_from.parent, holdout, f"the held-out set of {data} (this run's)")
    if resume and (out / HOLDOUT_FILE).exists():
        check_run_holdout(out, holdout, f"the held-out set of {data} (this run's)")
    out.mkdir(parents=True, exist_ok=True)
    if context.is_main:
        save_config(config, out / "config.yaml")
        holdout.save(out)
    model, batches = make_stage(corpus, config, context, cache=data / ".cache", init_from=init_from)
    with training_progress(out.name, config.train.steps, enabled=context.is_main) as advance:
        report = train_loop(model, batches, config.train, out, context, resume=resume, progress=advance)
    if context.is_main:
        summary = {"steps_run": report.steps_run, "resumed_from": report.resumed_from,
                   "skipped_steps": report.skipped_steps, "seconds": report.seconds,
                   "clips_per_second": report.examples_per_second * _clips_per_example(config),
                   "inputs": "audio clips" if config.stage.tune == "all" else "cached trunk features",
                   "world_size": context.world_size, "threads": torch.get_num_threads(),
                   "last": report.history[-1] if report.history else {}}
        write_text(json.dumps(summary, indent=2), out / "train_report.json")
        unit = "clips/s" if config.stage.tune == "all" else "windows/s from cached trunk features"
        console.print(f"{out}: {report.steps_run} steps in {report.seconds:.0f} s "
                      f"({summary['clips_per_second']:.1f} {unit}, {context.world_size} process(es)); "
                      f"last: {json.dumps({k: round(v, 4) for k, v in summary['last'].items()})}", soft_wrap=True)
        return summary
    return {}


def _clips_per_example(config) -> float:
    """Audio clips one batch row costs: a semantic clip (when lambda > 0), plus an anchor (or a profile of several
    tracks) and a positive per preference pair, plus its share of the catalogue draws."""
    stage = config.stage
    clips = 1.0 if stage.semantic_weight > 0 and stage.semantic_sources else 0.0
    if stage.listener_objective:  # every drawable track's window per step, shared by the batch's listeners
        return clips + 1.0
    if stage.preference_sources:
        history = stage.preference_sources.get("history")
        clips += (int((history or {}).get("profile_size", PAIR_SOURCE_DEFAULTS["history"]["profile_size"]))
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
    """The saved run's config, with only train.steps (to extend a run) and train.threads (how this machine runs it,
    e.g. on another number of processes) allowed to change; anything else differing would silently train a
    different model under the old checkpoint, so it is refused."""
    from dataclasses import replace

    from tunespace.contrastive.htcl import ConfigError, load_config

    saved = load_config(saved_path)
    extended = replace(saved, train=replace(saved.train, steps=config.train.steps, threads=config.train.threads))
    if extended != config:
        mine, theirs = _flat(config.to_dict()), _flat(extended.to_dict())
        changed = [key for key in mine if mine[key] != theirs.get(key)]
        raise ConfigError(f"{saved_path}: --resume with different settings ({', '.join(changed)}); pass the same "
                          "options as the run being resumed (only --steps may grow)")
    return extended


@htcl_app.command()
def pretrain(
    data: Annotated[Path, typer.Option(help="Corpus folder (tracks with audio, captions.parquet).")],
    out: Annotated[Path, typer.Option(help="Run folder: config.yaml, holdout.json (the held-out track ids, "
                                           "validation and test halves), last.pt, train_report.json.")],
    config: Annotated[str, typer.Option(help="tiny, small, base or a YAML file.")] = "tiny",
    steps: Annotated[int | None, typer.Option(help="Override train.steps.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: train.lr=0.001.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from out/last.pt if present.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Stage 1: align audio with its descriptions (and the weak metadata text). The held-out tracks (holdout_share,
    drawn by holdout_seed over the sorted track ids, independent of train.seed) are never trained on; their ids and
    validation/test halves are written to OUT/holdout.json."""
    from tunespace.contrastive.htcl import load_config

    overrides = _overrides(set_)
    if steps is not None:
        overrides["train.steps"] = steps
    train_recorded(load_config(config, overrides), data, out, resume, None, device)


@htcl_app.command()
def finetune(
    data: Annotated[Path, typer.Option(help="Corpus folder with interactions (train part used only).")],
    init: Annotated[Path, typer.Option(help="The stage-1 run folder to start from; its holdout.json must be this "
                                            "corpus's held-out set (else refused).")],
    out: Annotated[Path, typer.Option(help="Run folder of this stage.")],
    preset: Annotated[str | None, typer.Option(
        help="A named recipe: `listener` is the configuration the README reports as working (the listener source, "
             "lambda 0.1, head tuning with a 256-wide adapter, the popularity weight learned from 1, batch 256, "
             "lr 1e-3, 100 warm-up steps, 2,000 steps). Flags and --set given explicitly override it.")] = None,
    semantic_weight: Annotated[float | None, typer.Option(
        "--lambda", help="Weight of the kept audio-text loss (default 0.5, or the preset's).")] = None,
    anchor_weight: Annotated[float, typer.Option("--mu", help="Weight of the distillation to stage 1.")] = 0.0,
    pairs: Annotated[str | None, typer.Option(help="Preference pair sources: session and/or playlist (track-track; "
                                             "also artist, album, playlist-random, playlist-top, playlist-emb), "
                                             "history (a listener's profile -> one more of their tracks), or "
                                             "listener alone (each listener's latest tracks ranked among the whole "
                                             "catalogue from the rest; needs --tune head). Default "
                                             f"{DEFAULT_PAIRS}, or the preset's.")] = None,
    tune: Annotated[str | None, typer.Option(help="all: the whole audio tower on random crops; head: the stage-1 "
                                                  "trunk frozen, its window features cached, the projection (and "
                                                  "adapter) trained: minutes on a CPU. Default all, or the "
                                                  "preset's.")] = None,
    catalogue_negatives: Annotated[int, typer.Option(
        help="Also rank each preference anchor against this many tracks drawn uniformly from the catalogue "
             "(0: in-batch negatives only).")] = 0,
    popularity_correction: Annotated[float | None, typer.Option(
        help="alpha in [0, 1]: add alpha * log(1 + train plays) to each candidate's logit, so the embeddings need "
             "not memorise popularity (1: pointwise mutual information); with --learn-popularity its start. "
             "Default 0, or the preset's.")] = None,
    learn_popularity: Annotated[bool | None, typer.Option(
        help="listener source: train the popularity weight with the model, so popularity is explained by it and "
             "not by the embeddings. Default off, or the preset's.")] = None,
    steps: Annotated[int | None, typer.Option(help="Override train.steps.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: train.lr=0.0003.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from out/last.pt if present.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Stage 2: contrast tracks that listeners play together, keeping the semantic space (lambda, mu). The
    held-out tracks' audio is never in a batch: not as anchor, positive, profile track or catalogue draw."""
    from tunespace.contrastive.htcl import ConfigError, load_config

    if preset is not None and preset not in FINETUNE_PRESETS:
        raise ConfigError(f"--preset: unknown preset {preset!r}; choose from {', '.join(FINETUNE_PRESETS)}")
    recipe = FINETUNE_PRESETS.get(preset or "", {})
    flags = {key: value for key, value in recipe.items() if not key.startswith("set:")}
    given = {"pairs": pairs, "semantic_weight": semantic_weight, "tune": tune,
             "popularity_correction": popularity_correction, "learn_popularity": learn_popularity}
    chosen = {**FINETUNE_DEFAULTS, **flags, **{k: v for k, v in given.items() if v is not None}}
    pairs = str(chosen["pairs"])
    names = [name.strip() for name in pairs.split(",") if name.strip()]
    unknown = [name for name in names if name not in PAIR_SOURCE_DEFAULTS]
    if unknown or not names:
        raise ConfigError(f"--pairs: unknown pair source(s) {unknown or pairs!r}; choose from "
                          f"{', '.join(PAIR_SOURCE_DEFAULTS)}")
    sources = {name: dict(PAIR_SOURCE_DEFAULTS[name]) for name in names}
    overrides: dict[str, object] = {"stage.preference_sources": sources,
                                    "stage.semantic_weight": chosen["semantic_weight"],
                                    "stage.anchor_weight": anchor_weight, "stage.tune": chosen["tune"],
                                    "stage.catalogue_negatives": catalogue_negatives,
                                    "stage.popularity_correction": chosen["popularity_correction"],
                                    "stage.learn_popularity": chosen["learn_popularity"]}
    overrides.update({key[len("set:"):]: value for key, value in recipe.items() if key.startswith("set:")})
    overrides.update(_overrides(set_))
    if steps is not None:
        overrides["train.steps"] = steps
    if init.is_file():  # the run's checkpoint named instead of its folder: the folder is meant
        init = init.parent
    if not (init / "config.yaml").is_file() or not (init / "last.pt").is_file():
        raise ConfigError(f"--init {init}: not a stage-1 run folder (config.yaml and last.pt); train one with "
                          f"`tunespace htcl pretrain --out {init}`")
    config = load_config(init / "config.yaml", overrides)
    train_recorded(config, data, out, resume, init / "last.pt", device)


SELECT_ON = ("validation",)
INFORMATION_ONLY = "not selected: test figures for information only, must not be used to choose"
NOT_SELECTED = "candidate, not selected"


@htcl_app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Corpus folder.")],
    run: Annotated[list[Path], typer.Option(help="Run folder(s) to evaluate; repeatable.")],
    out: Annotated[Path, typer.Option(help="Folder for selection.csv, semantic.csv, preference.csv (and "
                                           "_per_seed), preference_validation.csv, cold.csv, "
                                           "popularity_weights.csv, significance.csv, the embeddings and "
                                           "provenance.json.")],
    embeddings: Annotated[list[Path] | None, typer.Option(
        help="Other embeddings (e.g. mfcc, musicnn from `tunespace embed`) to rank beside the runs: fixed arms.")]
    = None,
    models: Annotated[str, typer.Option(help="Content recommenders to run on every embedding set, each raw and "
                                             "popularity-aware (+pop); the first one's +pop validation NDCG@50 "
                                             "selects among the candidates.")] = "knn",
    control: Annotated[str | None, typer.Option(
        help="The set (run folder name) every other reported set is tested against, paired over users; default "
             "the first run. Must be a fixed arm or the selected candidate.")] = None,
    stage1: Annotated[str | None, typer.Option(
        "--stage1", help="The stage-1 run (folder name) whose validation text-to-audio R@10 candidates must keep "
                         "within 10 %; default the one run without preference sources.")] = None,
    select_on: Annotated[str, typer.Option(
        help="What chooses among the candidates: validation only (validation users, semantic-validation tracks). "
             "The test users and semantic-test tracks never choose, so no other value is accepted.")] = "validation",
    split_seed: Annotated[int, typer.Option(
        help="First split seed: the seeded partition of the test-window users into validation and test users.")]
    = 42,
    split_seeds: Annotated[int, typer.Option(
        help="Number of split seeds, split-seed .. split-seed+N-1: selection uses validation figures averaged over "
             "them; test figures are their mean and sd over split seeds beside per-user intervals.")] = 1,
    test_all_runs: Annotated[bool, typer.Option(
        help="Also compute test figures for the candidates not selected, labelled as for information only: they "
             "must not be used to choose a run (that would select on the test users).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Choose a stage-2 run on validation figures, then report test figures for it and the fixed arms.

    Candidates are the runs that learn preferences (a stage 2 with a preference source of weight > 0); the fixed
    arms are every other set (stage 1, the control, --embeddings). Every content model is reported raw (knn[run])
    and popularity-aware (knn+pop[run]: content score + beta x the z-score of log(1 + train plays), beta chosen per
    set and model on the validation users, mean over split seeds, then applied unchanged to the test and cold
    users; every beta's figure is in popularity_weights.csv), beside the content-free popularity row. Every run is
    scored on the validation users (first model's +pop warm NDCG@50, mean over split seeds) and on the
    semantic-validation half of the held-out tracks (text-to-audio R@10). The selected candidate is the best by
    that figure among those whose validation R@10 is at least 90 % of the stage-1 run's; if none qualifies, none
    is selected (selection.csv says why). Test figures (warm and cold users, the semantic-test half, paired tests,
    per split seed and across split seeds) are computed for the selected candidate and the fixed arms only, unless
    --test-all-runs. The KNN fit does not depend on the split seed: it is fitted once and each split seed's users
    are slices of one ranking; re-weighting popularity is a re-score, not a refit. Every run must hold out the
    corpus's held-out set (its holdout.json)."""
    from tunespace.contrastive.evaluate import (
        popularity_label,
        preference_results,
        semantic_evaluation,
        track_embeddings,
    )
    from tunespace.contrastive.htcl import AudioBank, ConfigError, Corpus, build_model, check_run_holdout, load_config
    from tunespace.contrastive.selection import select_run, summary_line
    from tunespace.devices import resolve_device
    from tunespace.provenance import recorded_run

    if select_on not in SELECT_ON:
        raise typer.BadParameter(f"--select-on {select_on!r}: runs are chosen on validation figures only; the test "
                                 "users and semantic-test tracks never choose (see --test-all-runs to see test "
                                 "figures of every run, for information)")
    if split_seeds < 1:
        raise typer.BadParameter("--split-seeds must be at least 1")
    target = resolve_device(device)
    names = [folder.name for folder in run]
    if len(set(names)) != len(names):
        raise ConfigError(f"--run: two runs share a folder name ({', '.join(names)}); the tables name runs by it")
    out.mkdir(parents=True, exist_ok=True)
    seeds = tuple(range(split_seed, split_seed + split_seeds))
    model_names = tuple(m.strip() for m in models.split(",") if m.strip())
    with recorded_run(out) as record:
        record["settings"] = {"data": str(data), "runs": [str(f) for f in run],
                              "embeddings": [str(p) for p in embeddings or []], "models": list(model_names),
                              "control": control, "stage1": stage1, "select_on": select_on,
                              "split_seeds": list(seeds), "test_all_runs": test_all_runs,
                              "semantic_tolerance": 0.10, "device": str(target)}
        sets = embedding_sets(embeddings or [])
        fixed = list(sets)  # --embeddings are fixed arms
        configs, holdout, rows, candidates, no_preference = {}, None, [], [], []
        for folder in run:
            config = configs[folder.name] = load_config(folder / "config.yaml")
            corpus = Corpus.load(data, config.cutoff)
            mine = corpus.holdout(config)
            check_run_holdout(folder, mine, f"the held-out set of {data} under {folder / 'config.yaml'}")
            if holdout is None:
                holdout, first = mine, folder
            else:
                holdout.require_same(mine, f"{first} (holdout.json)", f"{folder} (holdout.json)")
            model = build_model(config, target, folder / "last.pt")
            bank = AudioBank(corpus.tracks, corpus.root, config.audio.sample_rate, data / ".cache")
            with console.status(f"embedding {len(corpus.tracks)} tracks with {folder.name}"):
                vectors = track_embeddings(model, bank, data / ".cache")
            vectors.save(out / f"{folder.name}.parquet")
            sets[folder.name] = vectors
            learns = _learns_preference(config)
            (candidates if learns else fixed).append(folder.name)
            if not config.stage.preference_sources:
                no_preference.append(folder.name)
            parts = ("validation",) if learns and not test_all_runs else ("validation", "test")
            with console.status(f"semantic evaluation of {folder.name}"):
                for part in parts:
                    semantic = semantic_evaluation(model, bank, corpus, vectors.vectors, part=part, holdout=holdout,
                                                   probe=part == "test")
                    rows.append({"run": folder.name, "role": "candidate" if learns else "fixed arm", "part": part,
                                 "lambda": config.stage.semantic_weight if learns else None,
                                 "mu": config.stage.anchor_weight, **semantic.flat()})
        reference = stage1 if stage1 is not None else (no_preference[0] if len(no_preference) == 1 else None)
        if candidates and reference is None:
            raise ConfigError("no stage-1 reference for the semantic criterion: give --stage1 RUN (runs without "
                              f"preference sources: {', '.join(no_preference) or 'none'})")
        if reference is not None and reference not in names:
            raise ConfigError(f"--stage1 {reference}: not among the runs ({', '.join(names)})")
        cutoff = configs[names[0]].cutoff
        parts_of = {name: ("validation",) if name in candidates and not test_all_runs else ("validation", "test")
                    for name in sets}
        with console.status("recommendation on the temporal protocol, validation users"
                            + ("" if test_all_runs else " (and test users of the fixed arms)")):
            results = preference_results(data, cutoff, sets, model_names, seeds, parts_of)
        semantic_frame = pd.DataFrame(rows)
        selection = None
        if candidates:
            selection = _select(results, semantic_frame, model_names[0], candidates, reference,
                                [n for n in fixed if n != reference], select_run)
            console.print(summary_line(selection), soft_wrap=True, highlight=False)
        chosen = selection.selected if selection is not None else None
        if chosen is not None and not test_all_runs:  # only now does the chosen candidate meet the test users
            folder = run[names.index(chosen)]
            config = configs[chosen]
            corpus = Corpus.load(data, config.cutoff)
            model = build_model(config, target, folder / "last.pt")
            bank = AudioBank(corpus.tracks, corpus.root, config.audio.sample_rate, data / ".cache")
            semantic = semantic_evaluation(model, bank, corpus, sets[chosen].vectors, part="test", holdout=holdout)
            rows.append({"run": chosen, "role": "candidate", "part": "test", "lambda": config.stage.semantic_weight,
                         "mu": config.stage.anchor_weight, **semantic.flat()})
            semantic_frame = pd.DataFrame(rows)
            betas = {label: results.betas[label] for label in (popularity_label(f"{m}[{chosen}]") for m in model_names)}
            extra = preference_results(data, cutoff, {chosen: sets[chosen]}, model_names, seeds, {chosen: ("test",)},
                                       betas=betas, reference=False)  # beta as chosen on the validation users
            for part in ("test", "cold_test"):
                for seed in seeds:
                    results.parts[part][seed].update(extra.parts[part][seed])
        status = {name: ("fixed arm" if name in fixed else "selected" if name == chosen else INFORMATION_ONLY)
                  for name in names + [n for n in sets if n not in names]}
        semantic_frame.insert(2, "status", semantic_frame["run"].map(status))
        on_validation = (semantic_frame["part"] == "validation") & (semantic_frame["status"] == INFORMATION_ONLY)
        semantic_frame.loc[on_validation, "status"] = NOT_SELECTED  # validation figures are what choosing uses
        if (control or names[0]) not in [n for n in sets if status.get(n) in ("fixed arm", "selected")]:
            raise _control_error(control or names[0], status.get(control or names[0]))
        written = _write_tables(out, semantic_frame, results, selection, status, sets, model_names, control or names[0],
                                reference, record)
        record["outputs"] = [str(path) for path in written]
        record["settings"].update({"stage1_reference": reference, "candidates": candidates, "fixed_arms": fixed,
                                   "holdout": {"seed": holdout.seed, "share": holdout.share,
                                               "validation_tracks": len(holdout.validation),
                                               "test_tracks": len(holdout.test)}})
    console.print(f"wrote {', '.join(map(str, written))}, the track embeddings and {out / 'provenance.json'}")


def _learns_preference(config) -> bool:
    """A stage 2 with at least one preference source of weight > 0: a selection candidate."""
    return any(float((options or {}).get("weight", 1.0)) > 0 for options in config.stage.preference_sources.values())


def _select(results, semantic: pd.DataFrame, model: str, candidates: list[str], reference: str,
            arms: list[str], select_run):
    """Validation figures of every set (first model's popularity-aware NDCG@50 mean and sd over split seeds, its
    raw NDCG@50, semantic-validation text-to-audio R@10) and the selection made on them."""
    from tunespace.contrastive.evaluate import seed_table
    from tunespace.contrastive.selection import validation_figures

    summary, _ = seed_table(results, "validation", ("ndcg@50",))
    frame = validation_figures(summary, semantic, model)
    basis = (f"validation {model}+pop NDCG@50 (popularity-aware: content score + beta x popularity z, beta chosen "
             "on the validation users)")
    return select_run(frame, candidates, reference, arms=arms, raw="ndcg@50_raw", basis=basis)


def _write_tables(out: Path, semantic: pd.DataFrame, results, selection, status: dict[str, str], sets,
                  models: tuple[str, ...], control: str, stage1: str | None, record: dict) -> list[Path]:
    from tunespace.contrastive.evaluate import (
        POPULARITY_ROW,
        comparison_pairs,
        paired_tests,
        popularity_label,
        seed_table,
    )
    from tunespace.io import write_parquet
    from tunespace.reports.tables import formatted

    written = []
    if selection is not None:
        table = selection.table.merge(semantic[semantic["part"] == "validation"][["run", "lambda", "mu"]], on="run",
                                      how="left")
        table["beta"] = table["run"].map(lambda run: results.betas.get(popularity_label(f"{models[0]}[{run}]")))
        table.to_csv(out / "selection.csv", index=False)
        written.append(out / "selection.csv")
        shown = table[["run", "role", "lambda", "beta", "validation_ndcg@50", "validation_ndcg@50_raw",
                       "validation_t2a_R@10", "qualified", "selected"]].rename(
            columns={"validation_ndcg@50": f"{models[0]}+pop ndcg@50", "validation_ndcg@50_raw": "raw ndcg@50"})
        show(shown.map(lambda v: f"{v:.4f}" if isinstance(v, float) else v),
              f"selection on validation figures ({models[0]}+pop NDCG@50 over {len(results.seeds)} split seed(s), "
              "raw beside it; semantic-validation tracks)")
    write_parquet(semantic, out / "semantic.parquet")
    semantic.to_csv(out / "semantic.csv", index=False)
    written.append(out / "semantic.csv")
    columns = ["run", "part", "status", "t2a_R@1", "t2a_R@10", "chance_t2a_R@10", "t2a_median_rank", "a2t_R@10",
               "tagging_macro_roc_auc", "probe_family_accuracy"]
    show(semantic[columns].map(lambda v: f"{v:.3f}" if isinstance(v, float) else v),
          "semantic space (held-out tracks: validation and test halves)")
    if not results.weights.empty:
        results.weights.to_csv(out / "popularity_weights.csv", index=False)
        written.append(out / "popularity_weights.csv")
        raw = results.weights[results.weights["beta"] == 0].set_index(["set", "model"])["validation_ndcg@50"]
        chosen = results.weights[results.weights["chosen"]].set_index(["set", "model"])
        shown = pd.DataFrame({"set": [key[0] for key in chosen.index], "model": [key[1] for key in chosen.index],
                              "beta": chosen["beta"].map(lambda v: f"{v:.4g}").to_numpy(),
                              "ndcg@50 beta 0": raw.loc[chosen.index].map(lambda v: f"{v:.4f}").to_numpy(),
                              "ndcg@50 chosen": chosen["validation_ndcg@50"].map(lambda v: f"{v:.4f}").to_numpy()})
        show(shown, f"popularity weight beta per set and model, chosen on the validation users (mean over "
                     f"{len(results.seeds)} split seed(s)); every beta in popularity_weights.csv")

    def label_status(frame: pd.DataFrame, part: str = "test") -> pd.DataFrame:
        runs = frame["model"].str.extract(r"\[(.*)\]$")[0]
        labels = runs.map(status).fillna("").where(frame["model"] != POPULARITY_ROW, "reference")
        frame = frame.assign(beta=frame["model"].map(results.betas))
        return frame.assign(status=labels.replace(INFORMATION_ONLY, NOT_SELECTED) if part == "validation" else labels)

    validation, _ = seed_table(results, "validation")
    label_status(validation, "validation").to_csv(out / "preference_validation.csv", index=False)
    written.append(out / "preference_validation.csv")
    figures: dict[str, object] = {"selected": selection.selected if selection is not None else None,
                                  "split_seeds": results.seeds, "popularity_betas": dict(results.betas)}
    if selection is not None:
        figures["selection"] = selection.table.to_dict(orient="records")
    title = f"over {len(results.seeds)} split seed(s): mean, per-user 95% half-width" + \
        (", sd over split seeds" if len(results.seeds) > 1 else "")
    for part, stem, caption in (("test", "preference", "preference space: temporal protocol, test users"),
                                ("cold_test", "cold", "cold items: test pairs of tracks first played after the "
                                                      "cutoff")):
        summary, per_seed = seed_table(results, part)
        if summary.empty:
            continue
        summary, per_seed = label_status(summary), label_status(per_seed)
        summary.to_csv(out / f"{stem}.csv", index=False)
        per_seed.to_csv(out / f"{stem}_per_seed.csv", index=False)
        written += [out / f"{stem}.csv", out / f"{stem}_per_seed.csv"]
        shown = formatted(summary)
        if len(results.seeds) > 1:
            shown["ndcg@50 sd"] = summary["ndcg@50_split_sd"].map(lambda v: f"{v:.4f}")
        shown["beta"] = summary["beta"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
        shown["status"] = summary["status"]
        show(shown, f"{caption}, raw and popularity-aware (+pop, beta chosen on validation users) ({title})")
        keys = ("ndcg@50", "ndcg@50_low", "ndcg@50_high", "ndcg@50_split_sd", "users", "split_seeds", "beta",
                "status")
        figures[part] = {row["model"]: {key: row[key] for key in keys if key in row}
                         for row in summary.to_dict(orient="records")}
    test_rows = semantic[semantic["part"] == "test"]
    figures["semantic_test"] = {row["run"]: {k: row[k] for k in ("t2a_R@1", "t2a_R@10", "a2t_R@10",
                                                                  "t2a_median_rank", "status")}
                                for row in test_rows.to_dict(orient="records")}
    fixed = [name for name in sets if status.get(name) == "fixed arm"]
    families = comparison_pairs(models, control, selection.selected if selection is not None else None, stage1,
                                fixed, [n for n in sets if status.get(n) == INFORMATION_ONLY])
    tests = []
    for part in ("test", "cold_test"):
        for group, pairs in families.items():
            if part == "cold_test":  # a new track has no plays: every +pop row and popularity rank it last (0)
                pairs = [pair for pair in pairs if not any("+pop[" in row or row == POPULARITY_ROW for row in pair)]
            frame = paired_tests(results, part, pairs)
            if not frame.empty:
                tests.append(frame.assign(family=part if group == "reported" else f"{part}: {group}"))
    if tests:
        frame = pd.concat(tests, ignore_index=True)
        frame.to_csv(out / "significance.csv", index=False)
        written.append(out / "significance.csv")
        shown = frame.assign(part=frame["family"] + " / seed " + frame["split_seed"].astype(str))
        show_tests(shown, f"NDCG@50: the selected candidate (+pop) against the control, stage 1 (+pop) and "
                           f"popularity, raw against the control ({control}); fixed arms against the control raw "
                           "and +pop. Paired over users per split seed ('across': over split seeds), "
                           "Holm-corrected within each family (part) and seed")
        figures["tests"] = frame.to_dict(orient="records")
    record["figures"] = figures
    return written


def _control_error(control: str, role: str | None):
    from tunespace.contrastive.htcl import ConfigError

    if role is None:
        return ConfigError(f"--control {control}: not among the runs and embedding sets")
    return ConfigError(f"--control {control}: a candidate that was not selected has no test figures; the control "
                       "must be a fixed arm (a run without preference learning, e.g. preference weight 0) or the "
                       "selected candidate")

"""`tunespace clamp pretrain|train|evaluate`: CLaMP 2's score encoder (ABC and MIDI) aligned with multilingual
captions (and optionally an audio space), and its evaluation on held-out tunes (`tunespace.contrastive.clamp`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tunespace.cli.common import console, parse_options, show, training_progress
from tunespace.io import write_text

clamp_app = typer.Typer(help="CLaMP 2: scores (ABC, MIDI) aligned with text in three languages, and with audio.",
                        no_args_is_help=True)

ConfigOption = Annotated[str, typer.Option(help="tiny, small or a YAML file (tunespace/contrastive/configs/clamp).")]
StepsOption = Annotated[int | None, typer.Option(help="Override train.steps.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override any key: model.max_patches=256.")]
ResumeOption = Annotated[bool, typer.Option(help="Continue from out/last.pt if present.")]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]


def _config(name: str, steps: int | None, set_: list[str] | None, extra: dict[str, Any] | None = None):
    from tunespace.contrastive.clamp import load_clamp_config

    overrides = parse_options(set_ or [])
    if steps is not None:
        overrides["train.steps"] = steps
    return load_clamp_config(name, {**(extra or {}), **overrides})


def _run(train, config, data: Path, out: Path, resume: bool, device: str) -> None:
    """Train with a progress bar; write train_report.json and provenance.json (command, commit, machine, load)."""
    from tunespace.contrastive.train import init_distributed
    from tunespace.provenance import recorded_run

    context = init_distributed(device)
    with contextlib.ExitStack() as stack:
        record = stack.enter_context(recorded_run(out / "provenance.json")) if context.is_main else {}
        record["settings"] = config.to_dict()
        with training_progress(out.name, config.train.steps, enabled=context.is_main) as advance:
            report = train(data, config, out, resume=resume, progress=advance, device=device)
        if context.is_main:
            summary = {"steps_run": report.steps_run, "resumed_from": report.resumed_from,
                       "skipped_steps": report.skipped_steps, "seconds": report.seconds,
                       "pieces_per_second": report.examples_per_second, "world_size": context.world_size,
                       "last": report.history[-1] if report.history else {}}
            write_text(json.dumps(summary, indent=2), out / "train_report.json")
            record["figures"] = summary
            console.print(f"{out}: {report.steps_run} steps in {report.seconds:.0f} s "
                          f"({summary['pieces_per_second']:.1f} pieces/s); last: "
                          f"{json.dumps({k: round(v, 4) for k, v in summary['last'].items()})}", soft_wrap=True)


@clamp_app.command()
def pretrain(
    data: Annotated[Path, typer.Option(help="Corpus folder (tracks.parquet with abc_path and midi_path).")],
    out: Annotated[Path, typer.Option(help="Run folder: config.yaml, split.json, last.pt (the M3 weights).")],
    config: ConfigOption = "tiny", steps: StepsOption = None, set_: SetOption = None, resume: ResumeOption = False,
    device: DeviceOption = "auto",
) -> None:
    """M3 self-supervised pretraining: masked patch reconstruction of the training tunes' ABC and MIDI, no text.
    Start an alignment run from it with `clamp train --init OUT/last.pt`."""
    from tunespace.contrastive.clamp import pretrain_m3

    _run(pretrain_m3, _config(config, steps, set_), data, out, resume, device)


@clamp_app.command()
def train(
    data: Annotated[Path, typer.Option(help="Corpus folder (scores and captions.parquet).")],
    out: Annotated[Path, typer.Option(help="Run folder: config.yaml, split.json (held-out tunes), text/ (the "
                                           "multilingual text tower), last.pt.")],
    config: ConfigOption = "tiny",
    init: Annotated[Path | None, typer.Option(help="An M3 checkpoint (`clamp pretrain`'s last.pt, or a released "
                                                   "M3 .pth) to start the music encoder from.")] = None,
    audio: Annotated[Path | None, typer.Option(help="An embedding folder (`tunespace embed`, e.g. --backend htcl) "
                                                    "whose space the scores are aligned with too.")] = None,
    split: Annotated[str | None, typer.Option(help="tune (HTCL's held-out tunes) or collection.")] = None,
    held_collection: Annotated[str | None, typer.Option(help="split collection: the songbook to hold out.")] = None,
    steps: StepsOption = None, set_: SetOption = None, resume: ResumeOption = False, device: DeviceOption = "auto",
) -> None:
    """Contrastive alignment of scores (ABC and MIDI) with captions in English, German and Chinese (InfoNCE,
    gathered across DDP ranks); held-out tunes are never trained on."""
    from tunespace.contrastive.clamp import train_clamp

    extra: dict[str, Any] = {}
    if init is not None:
        extra["init"] = str(init)
    if audio is not None:
        extra["audio.embeddings"] = str(audio)
    if split is not None:
        extra["data.split"] = split
    if held_collection is not None:
        extra["data.held_collection"] = held_collection
    _run(train_clamp, _config(config, steps, set_, extra), data, out, resume, device)


@clamp_app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="The corpus folder the runs were trained on.")],
    run: Annotated[list[Path], typer.Option(help="A `clamp train` run folder (repeat to compare runs).")],
    out: Annotated[Path, typer.Option(help="Folder for search.csv, language_gap.csv, cross_modal.csv and "
                                           "classification.csv.")],
    part: Annotated[str, typer.Option(help="validation (for choices) or test (report once).")] = "test",
    audio: Annotated[list[str] | None, typer.Option(help="NAME=FOLDER: an audio embedding folder to probe beside "
                                                         "the scores (repeat: mfcc=..., htcl=...).")] = None,
    audio_space: Annotated[Path | None, typer.Option(help="An audio embedding folder to map each run's scores into "
                                                          "after training (ridge map fitted on training tunes, "
                                                          "chosen on validation tunes): audio <-> score "
                                                          "retrieval without joint training.")] = None,
) -> None:
    """Search (text -> ABC/MIDI per language, with the language gap tested), ABC <-> MIDI and audio <-> score
    retrieval, and linear probes against TF-IDF, a random tower and audio embeddings; held-out tunes only."""
    from tunespace.contrastive.clamp_evaluate import evaluate_clamp
    from tunespace.provenance import recorded_run

    folders = {name: value for name, value in parse_options(audio or []).items()}
    out.mkdir(parents=True, exist_ok=True)
    with recorded_run(out / "provenance.json") as record:  # command, commit, machine, load, wall time
        record["settings"] = {"data": str(data), "runs": [str(r) for r in run], "part": part,
                              "audio": {k: str(v) for k, v in folders.items()},
                              "audio_space": str(audio_space) if audio_space else None}
        tables = evaluate_clamp(data, run, out, part=part, audio=folders, audio_space=audio_space)
    search = tables["search"]
    shown = search[search["gallery"] != "catalogue"][["run", "task", "language", "queries", "MRR", "hit@1",
                                                      "hit@10"]]
    show(shown.round(3), f"text -> score on {part} tunes (gallery: the {part} tunes)")
    if not tables["cross_modal"].empty:
        modal = tables["cross_modal"]
        show(modal[[c for c in ("run", "task", "method", "queries", "MRR", "hit@1", "hit@10") if c in modal]].round(3),
             "score <-> score and audio <-> score")
    probes = tables["classification"]
    if not probes.empty:
        show(probes[["representation", "label", "accuracy", "macro_f1", "chance", "n_test"]].round(3),
             "linear probes (test tunes)")
    console.print(f"wrote {out}/search.csv, language_gap.csv, cross_modal.csv, classification.csv")

"""`tunespace pretrain-pairs`: the pair-source study (Alonso-Jimenez et al., ICASSP 2023) in one resumable command:
pretrain the audio tower once per source, extract each tower's embeddings, then tagging (linear probe and full
fine-tuning) and similarity tables with paired tests against artist pairs, and a plot (`tunespace.contrastive.
pair_study`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from tunespace.cli.common import console, parse_options, show, training_progress

RANDOM_INIT = "random-init"


def _finished(run: Path, steps: int) -> bool:
    """Whether `run` holds a checkpoint of all `steps` (a finished source is not trained again)."""
    import torch

    if not (run / "last.pt").exists():
        return False
    return int(torch.load(run / "last.pt", map_location="cpu", weights_only=False)["step"]) >= steps


def _random_init_run(config, out: Path) -> Path:
    """A run folder holding the study tower with its initial weights (seeded as the sources' runs are), the
    untrained control of every table."""
    import torch

    from tunespace.contrastive.htcl import build_model, save_config
    from tunespace.contrastive.train import trainable_state
    from tunespace.io import atomic_path

    if (out / "last.pt").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.train.seed)
    model = build_model(config, torch.device("cpu"))
    save_config(config, out / "config.yaml")
    with atomic_path(out / "last.pt") as tmp:
        torch.save({"model": trainable_state(model), "step": 0}, tmp)
    return out


def _extract(run: Path, data: Path, out: Path, device: str):
    """The tower's embedding of every track through `tunespace embed`'s pipeline (progress bar, resumable shards,
    provenance), read back."""
    from tunespace.cli.main import run_extraction
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.encoders.extract import ExtractionConfig

    options = {"run": str(run.resolve())}  # a study folder whose runs/ links to another's reuses its extractions
    run_extraction(ExtractionConfig(backend="htcl", options=options, device=device, batch_size=32), data, out)
    return ItemEmbeddings.load(out)


def pretrain_pairs(
    data: Annotated[Path, typer.Option(help="Corpus folder: tracks with audio and tags, interactions, playlists and "
                                            "playlist_sessions (creation times).")],
    out: Annotated[Path, typer.Option(help="Study folder: runs/SOURCE, emb/SOURCE, vectors/SOURCE.parquet (for "
                                           "`benchmark recsys --embeddings`), finetune/SOURCE, the tables "
                                           "(tagging.csv, similarity.csv, .md), study.png, provenance.json.")],
    sources: Annotated[str, typer.Option(help="Pair sources, comma-separated; artist is the baseline every other "
                                              "source is tested against.")] =
        "artist,album,playlist-random,playlist-top,playlist-emb",
    config: Annotated[str, typer.Option(help="The tower and training config: pairs (shipped) or a YAML file.")] =
        "pairs",
    steps: Annotated[int | None, typer.Option(help="Pretraining steps per source (same for every source).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any config key: train.lr=0.0005.")] = None,
    finetune_steps: Annotated[int, typer.Option(help="Fine-tuning steps per tower (0: linear probe only).")] = 150,
    finetune_batch: Annotated[int, typer.Option(help="Fine-tuning batch (crops).")] = 32,
    finetune_lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = 3e-4,
    evaluate_every: Annotated[int, typer.Option(help="Fine-tuning steps between validation checks.")] = 50,
    reference: Annotated[list[str] | None, typer.Option(
        help="NAME=FOLDER: an embedding folder (`tunespace embed`) probed and ranked beside the towers (repeat: "
             "mfcc=..., htcl=...).")] = None,
    min_tag_count: Annotated[int, typer.Option(help="Tags with at least this many training tracks are scored.")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Pretrain the audio tower from scratch once per pair source (same steps, batch and seed), then compare the
    towers on tagging (macro ROC-AUC and PR-AUC, linear probe and fine-tuning) and similarity (NDCG and hit rate
    against held-out playlists and against same dance type and region), each against artist pairs with Holm-corrected
    paired tests. Rerunning the command resumes where it stopped."""
    import numpy as np

    from tunespace.cli.htcl import train_recorded
    from tunespace.contrastive.htcl import ConfigError
    from tunespace.contrastive.pair_study import (
        BASELINE_SOURCE,
        StudyData,
        aligned_vectors,
        finetune_tagging,
        probe_scores,
        similarity_figures,
        similarity_table,
        study_config,
        tagging_table,
    )
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.devices import resolve_device
    from tunespace.io import atomic_path
    from tunespace.provenance import recorded_run
    from tunespace.reports.pairs import study_plot, write_study_tables

    names = [name.strip() for name in sources.split(",") if name.strip()]
    if BASELINE_SOURCE not in names:
        raise ConfigError(f"--sources must include {BASELINE_SOURCE} (the baseline of every paired test)")
    overrides = parse_options(set_ or [])
    if steps is not None:
        overrides["train.steps"] = steps
    configs = {name: study_config(name, config, overrides) for name in names}
    references = {name: Path(str(folder)) for name, folder in parse_options(reference or []).items()}
    absent = [f"{name}={folder}" for name, folder in references.items() if not folder.exists()]
    if absent:
        raise ConfigError(f"--reference {', '.join(absent)}: no such embedding folder or file")
    clash = set(references) & (set(names) | {RANDOM_INIT})
    if clash:
        raise ConfigError(f"--reference names {sorted(clash)} clash with the study's own rows; rename them")
    torch_device = str(resolve_device(device))
    out.mkdir(parents=True, exist_ok=True)
    with recorded_run(out / "provenance.json") as record:
        record["settings"] = {"data": str(data), "sources": names, "config": config, "overrides": overrides,
                              "finetune": {"steps": finetune_steps, "batch": finetune_batch, "lr": finetune_lr,
                                           "evaluate_every": evaluate_every},
                              "references": {k: str(v) for k, v in references.items()},
                              "min_tag_count": min_tag_count, "tower": configs[names[0]].to_dict()}
        study = StudyData.load(data, configs[names[0]], min_tag_count)
        console.print(f"{len(study.tags)} tags; held-out tracks: {len(study.validation)} validation, "
                      f"{len(study.test)} test; {study.groups['playlist'].shape[0]} playlists after the cutoff")
        runs = {}
        for name in names:
            run = out / "runs" / name
            if not _finished(run, configs[name].train.steps):
                train_recorded(configs[name], data, run, True, None, device)
            runs[name] = run
        runs[RANDOM_INIT] = _random_init_run(configs[names[0]], out / "runs" / RANDOM_INIT)
        vectors = {name: aligned_vectors(_extract(run, data, out / "emb" / name, torch_device), study.corpus.tracks,
                                         name) for name, run in runs.items()}
        ids = study.corpus.tracks["track_id"].astype(str).to_numpy()
        (out / "vectors").mkdir(exist_ok=True)
        for name, matrix in vectors.items():  # one file per tower, named by source, for `benchmark recsys`
            ItemEmbeddings(ids, matrix.astype("float32")).save(out / "vectors" / f"{name}.parquet")
        for name, folder in references.items():
            vectors[name] = aligned_vectors(ItemEmbeddings.load(folder), study.corpus.tracks, name)
        similarity = {part: pd.concat([similarity_figures(name, matrix, study, part)
                                       for name, matrix in vectors.items()], ignore_index=True)
                      for part in ("validation", "test")}
        scores, chosen_l2 = {}, {}
        for name, matrix in vectors.items():
            scores[("probe", name)], chosen_l2[name] = probe_scores(matrix, study)
        if finetune_steps > 0:
            wanted = {"steps": finetune_steps, "batch": finetune_batch, "lr": finetune_lr,
                      "evaluate_every": evaluate_every}
            for name, run in runs.items():
                folder = out / "finetune" / name
                saved = folder / "test_scores.npy"
                _same_finetune(folder, wanted)
                if not saved.exists():
                    with training_progress(f"fine-tune {name}", finetune_steps) as advance:
                        logits = finetune_tagging(run, study, folder, finetune_steps, finetune_batch, finetune_lr,
                                                  evaluate_every, device=torch_device, progress=advance)
                    with atomic_path(saved) as tmp, open(tmp, "wb") as handle:
                        np.save(handle, logits)
                scores[("finetune", name)] = np.load(saved)
        tagging = tagging_table(scores, study)
        tagging["probe_l2"] = tagging["representation"].map(chosen_l2).where(tagging["method"] == "probe")
        tables = {"tagging": tagging,
                  "similarity": similarity_table(similarity["test"]),
                  "similarity_validation": similarity_table(similarity["validation"])}
        for part, frame in similarity.items():
            with atomic_path(out / f"similarity_per_query_{part}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
        write_study_tables(out, tables, study.tags)
        study_plot(tables, out / "study.png")
        record["figures"] = {"tagging": tagging.to_dict(orient="records"),
                             "similarity": tables["similarity"].to_dict(orient="records")}
    _show_study(tables)
    console.print(f"tables, per-query values and study.png in {out}; `tunespace report --eval {out}` makes the page")


def _same_finetune(folder: Path, wanted: dict[str, float]) -> None:
    """Record the fine-tuning settings in a new folder; refuse to reuse one fine-tuned with other settings."""
    import json

    from tunespace.contrastive.htcl import ConfigError
    from tunespace.io import write_text

    record = folder / "settings.json"
    if record.exists():
        found = json.loads(record.read_text())
        if found != wanted:
            raise ConfigError(f"{folder} was fine-tuned with {found}, not {wanted}; give the same --finetune-* "
                              "options or a new --out (the pretrained towers can be reused by copying runs/)")
        return
    if (folder / "test_scores.npy").exists() or (folder / "last.pt").exists():
        raise ConfigError(f"{folder} holds a fine-tuning without its settings.json; remove the folder to redo it")
    folder.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(wanted), record)


def _show_study(tables: dict[str, pd.DataFrame]) -> None:
    tagging = tables["tagging"]
    columns = ["method", "representation", "macro_roc_auc", "macro_pr_auc", "macro_roc_auc_difference",
               "macro_roc_auc_p_holm"]
    show(tagging[[c for c in columns if c in tagging]].round(4), "tagging on test tracks (macro over tags)")
    similarity = tables["similarity"]
    columns = ["judgement", "representation", "queries", "ndcg@10", "ndcg@50", "hit_rate@10", "ndcg@10_difference",
               "ndcg@10_t_p_holm"]
    show(similarity[[c for c in columns if c in similarity]].round(4), "similarity on test tracks")


"""`tunespace synth-log`, `tunespace split-log` and `tunespace evaluate-log`: a listening log too large for one
frame, generated as partitioned Parquet, split streaming, and evaluated by content KNN in user blocks (in one
process, across Ray tasks, or on ANN candidates re-ranked exactly)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from tunespace.cli.common import (
    CutoffOption,
    SplitOutOption,
    SplitSeedOption,
    TestEndOption,
    TestStartOption,
    TrainStartOption,
    ValidationRatioOption,
    console,
    parse_ks,
    show,
)


def synth_log(
    out: Annotated[Path, typer.Option(help="Folder to write interactions/part-*.parquet, embeddings.parquet and "
                                           "manifest.json into (a stopped run of the same settings resumes).")],
    tracks: Annotated[int, typer.Option(help="Catalogue size.")] = 1_000_000,
    users: Annotated[int, typer.Option(help="Listeners.")] = 150_000,
    interactions: Annotated[int, typer.Option(help="Events to draw (repeats in one second merge into weights).")]
    = 100_000_000,
    clusters: Annotated[int, typer.Option(help="Taste clusters of tracks.")] = 2000,
    genres: Annotated[int, typer.Option(help="Genres the clusters fall into.")] = 50,
    dim: Annotated[int, typer.Option(help="Dimension of the item embeddings.")] = 64,
    rows_per_part: Annotated[int, typer.Option(help="Events per Parquet part (memory grows with it).")]
    = 4_000_000,
    seed: Annotated[int, typer.Option(help="Seed of the whole log.")] = 0,
) -> None:
    """Generate a synthetic listening log at scale (`tunespace.data.scale`): clustered taste, a popularity tail,
    late releases and joins, as partitioned Parquet with 64-d item embeddings that carry the taste clusters."""
    from tunespace.data.scale import ScaleLogConfig, generate_log

    config = ScaleLogConfig(tracks=tracks, users=users, interactions=interactions, item_clusters=clusters,
                            genres=genres, embedding_dim=dim,
                            rows_per_part=rows_per_part, seed=seed)
    with console.status(f"writing {config.parts} parts to {out}") as status:
        generate_log(config, out, progress=lambda part, rows: status.update(
            f"part {part + 1}/{config.parts} written ({rows:,} rows)"))
    console.print(f"{config.parts} parts -> {out}; split it with: tunespace split-log {out} --cutoff 2024-12-01 "
                  f"--test-end 2025-01-01 --out SPLIT", soft_wrap=True, highlight=False)


def split_log(
    data: Annotated[Path, typer.Argument(help="Folder of Parquet interaction parts (integer ids), or a "
                                              "`synth-log` folder.")],
    cutoff: CutoffOption,
    out: SplitOutOption,
    train_start: TrainStartOption = None,
    test_start: TestStartOption = None,
    test_end: TestEndOption = None,
    validation_ratio: ValidationRatioOption = 0.5,
    seed: SplitSeedOption = 42,
) -> None:
    """The temporal protocol of `tunespace split`, streamed over partitioned Parquet: memory holds the test window
    and one batch, not the log; train stays partitioned on disk."""
    from tunespace.data.scale import scale_split
    from tunespace.data.splits import SplitConfig

    config = SplitConfig(cutoff=cutoff, train_start=train_start, test_start=test_start, test_end=test_end,
                         validation_ratio=validation_ratio, seed=seed)
    with console.status(f"splitting {data}"):
        stats = scale_split(data, config, out)
    show(pd.DataFrame({"part": list(stats), "count": list(stats.values())}), f"split -> {out}")


def evaluate_log(
    split_dir: Annotated[Path, typer.Argument(help="A folder written by `tunespace split-log`.")],
    embeddings: Annotated[Path, typer.Option(help="Item embeddings whose track ids are the log's integer ids.")],
    ks: Annotated[str, typer.Option("--k", help="Comma-separated cut-offs.")] = "10,50",
    part: Annotated[str, typer.Option(help="validation or test.")] = "test",
    users: Annotated[int, typer.Option(help="Evaluate only the first this many users (0: all).")] = 0,
    engine: Annotated[str, typer.Option(help="local (one process) or ray (users partitioned over tasks).")]
    = "local",
    tasks: Annotated[int, typer.Option(help="Ray tasks (with --engine ray).")] = 2,
    ann: Annotated[str | None, typer.Option(help="Rank ANN candidates instead of the whole catalogue: hnsw or "
                                                 "ivfpq (exact re-ranking of what it retrieves).")] = None,
    candidates: Annotated[int, typer.Option(help="Candidates per user with --ann.")] = 200,
    user_block: Annotated[int, typer.Option(help="Users read and ranked together (memory grows with it).")]
    = 8192,
    out: Annotated[Path | None, typer.Option(help="Folder for per_user.parquet, summary.csv and a provenance "
                                                  "record.")] = None,
) -> None:
    """Content KNN (a user is the mean of their train items' embeddings) evaluated by full ranking over the train
    catalogue of a partitioned split, in bounded memory."""
    import contextlib

    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.data.scale import ScaleSplit
    from tunespace.evaluation.scale import ItemSpace, ScaleEvalConfig, evaluate_partitioned, evaluate_partitioned_ray
    from tunespace.io import write_parquet, write_text
    from tunespace.provenance import recorded_run

    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, not {engine!r}")
    if engine == "ray" and ann:
        raise typer.BadParameter("--ann runs with --engine local (the index is built in this process)")
    config = ScaleEvalConfig(ks=tuple(sorted(set(parse_ks(ks)))), user_block=user_block, candidates=candidates)
    split = ScaleSplit.load(split_dir)
    vectors = ItemEmbeddings.load(embeddings)
    chosen = None
    if users:
        chosen = np.unique(split.part(part)["user_id"].to_numpy(np.int64))[:users]
    with recorded_run(out) if out is not None else contextlib.nullcontext({}) as record:
        if engine == "ray":
            result = evaluate_partitioned_ray(split, vectors, part, config, chosen, tasks=tasks)
        else:
            items = ItemSpace.of(split.items[:split.n_warm_items], vectors)
            retriever = None
            if ann:
                from tunespace.index import EmbeddingIndex

                with console.status(f"building a {ann} index over {len(items.ids):,} items"):
                    index = EmbeddingIndex.build(ItemEmbeddings(ids=items.ids.astype(str), vectors=items.vectors),
                                                 ann)
                retriever = index.candidates
            with console.status(f"evaluating {part} users"):
                result = evaluate_partitioned(split, vectors, part, config, chosen, retriever, items=items)
        summary = result.summary()
        show(summary[["metric", "mean", "low", "high", "users"]].round(4), f"knn on {split_dir} ({part})")
        record["settings"] = {"split_dir": str(split_dir), "embeddings": str(embeddings), "part": part,
                              "engine": engine, "ann": ann, "candidates": candidates, "users": users,
                              "ks": list(config.ks)}
        record["figures"] = dict(zip(summary["metric"], summary["mean"]))
        if out is not None:
            write_parquet(result.per_user, out / "per_user.parquet")
            write_text(summary.to_csv(index=False), out / "summary.csv")

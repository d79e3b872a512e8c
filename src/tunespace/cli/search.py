"""`tunespace index build` and `tunespace search`: a faiss index over an embedding folder, and the tracks nearest to
a sentence, a track, an audio file, or a listener's taste, as a table or as JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from tunespace.cli.common import console

index_app = typer.Typer(help="Nearest-neighbour indexes over embedding folders.", no_args_is_help=True)

TRACK_COLUMNS = ("title", "collection", "tags")  # shown beside each result when --data gives the tracks table


@index_app.command("build")
def build(
    embeddings: Annotated[Path, typer.Option(help="Embedding folder (`tunespace embed`) or Parquet file.")],
    out: Annotated[Path, typer.Option(help="Index folder to write (replaced if it is an index folder).")],
    kind: Annotated[str, typer.Option(help="flat (exact), hnsw, ivfpq, or auto: flat below 100,000 items, "
                                           "hnsw from there.")] = "auto",
    hnsw_m: Annotated[int | None, typer.Option(help="HNSW: links per node (default 32).")] = None,
    ef_construction: Annotated[int | None, typer.Option(help="HNSW: candidates while building (default 80).")]
    = None,
    ef_search: Annotated[int | None, typer.Option(help="HNSW: candidates while searching (default 128).")] = None,
    nlist: Annotated[int | None, typer.Option(help="IVF-PQ: inverted lists (default about 4 sqrt(items)).")] = None,
    pq_m: Annotated[int | None, typer.Option(help="IVF-PQ: sub-quantizers, a divisor of the dimension (default "
                                                  "dim/4 or the nearest divisor below).")] = None,
    nbits: Annotated[int | None, typer.Option(help="IVF-PQ: bits per sub-quantizer code (default 8).")] = None,
    nprobe: Annotated[int | None, typer.Option(help="IVF-PQ: lists searched per query (default 32).")] = None,
) -> None:
    """Build a cosine-similarity index over an embedding folder and save it with its ids and the folder's
    manifest; `tunespace search` refuses it once the embeddings change."""
    from tunespace.index import EmbeddingIndex
    from tunespace.index.ann import DEFAULTS

    given = {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search, "nlist": nlist,
             "pq_m": pq_m, "nbits": nbits, "nprobe": nprobe}
    given = {key: value for key, value in given.items() if value is not None}
    if kind == "auto" and given:  # options name the kind they belong to
        owners = [name for name in ("hnsw", "ivfpq") if set(given) & set(DEFAULTS[name])]
        kind = owners[0] if len(owners) == 1 else kind
    with console.status(f"building an index over {embeddings}"):
        index = EmbeddingIndex.from_folder(embeddings, kind, **given)
        index.save(out)
    console.print(f"{index.kind} index over {len(index)} items of dim {index.dim} ({_params_text(index.params)}) "
                  f"-> {out}; search it with: tunespace search --index {out} --like TRACK_ID", soft_wrap=True,
                  highlight=False)


def search(
    index: Annotated[Path | None, typer.Option(help="Index folder from `tunespace index build` (not needed with "
                                                     "--user).")] = None,
    text: Annotated[str | None, typer.Option(help="Find tracks that match this description (needs --run).")]
    = None,
    like: Annotated[str | None, typer.Option(help="Find tracks like this track id.")] = None,
    audio: Annotated[Path | None, typer.Option(help="Find tracks like this audio file, embedded with the index's "
                                                     "backend.")] = None,
    user: Annotated[str | None, typer.Option(help="Recommend tracks to this listener (needs --model).")] = None,
    run: Annotated[Path | None, typer.Option(help="HTCL run whose text tower embeds --text.")] = None,
    lang: Annotated[str | None, typer.Option(help="Language of --text (en, de, zh...); a warning if the run was "
                                                  "not trained on it.")] = None,
    model: Annotated[Path | None, typer.Option(help="Saved recommender folder for --user.")] = None,
    data: Annotated[Path | None, typer.Option(help="Corpus folder whose tracks.parquet names the results (title, "
                                                    "collection, tags).")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="The embeddings the index was built from, if they moved "
                                                          "since.")] = None,
    k: Annotated[int, typer.Option(help="Number of results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object) instead of a table.")] = False,
) -> None:
    """The tracks nearest to a description (--text), a track (--like), an audio file (--audio), or recommended to a
    listener (--user, history excluded), with title, collection, tags and score."""
    from tunespace.index import EmbeddingIndex, queries

    asked = {name: value for name, value in (("--text", text), ("--like", like), ("--audio", audio),
                                             ("--user", user)) if value is not None}
    if len(asked) != 1:
        raise typer.BadParameter("give exactly one of --text, --like, --audio, --user"
                                 + (f" (got {', '.join(asked)})" if asked else ""))
    if k < 1:
        raise typer.BadParameter(f"--k must be at least 1, got {k}")
    if text is not None and run is None:
        raise typer.BadParameter("--text needs --run HTCL_RUN: the run whose text tower embeds the description")
    if user is not None and model is None:
        raise typer.BadParameter("--user needs --model REC_DIR: a saved recommender")
    if lang is not None and text is None:
        raise typer.BadParameter("--lang only applies to --text")
    tracks = _tracks(data) if data is not None else None
    if user is not None:
        hits = queries.recommend_for_user(model, user, k)
        query = {"user": user, "model": str(model)}
    else:
        if index is None:
            raise typer.BadParameter(f"{next(iter(asked))} needs --index IDX (build one with `tunespace index "
                                     "build`)")
        loaded = EmbeddingIndex.load(index, embeddings)
        if text is not None:
            queries.check_text_space(loaded, run)
            vector = queries.text_query_vector(run, text, lang)
            exclude: list[str] = []
            query = {"text": text, "language": lang, "run": str(run)}
        elif like is not None:
            vector = loaded.vector(like)
            exclude = [like]
            query = {"like": like}
        else:
            with console.status(f"embedding {audio} with {loaded.manifest.get('backend')}"):
                vector = queries.audio_query_for_index(audio, loaded)
            exclude = []
            query = {"audio": str(audio)}
        hits = loaded.search(vector[None, :], k, exclude=[exclude])[0]
    rows = _rows(hits, tracks)
    if as_json:
        typer.echo(json.dumps({"query": query, "k": k, "results": rows}, ensure_ascii=False))
        return
    _table(rows, query, tracks is not None)


def _tracks(data: Path) -> pd.DataFrame:
    from tunespace.data.dataset import Dataset

    tracks = Dataset.load_tracks(data)
    return tracks.assign(track_id=tracks["track_id"].astype(str)).set_index("track_id")


def _rows(hits: list, tracks: pd.DataFrame | None) -> list[dict[str, object]]:
    """One record per hit: rank, id, score and (with the tracks table) what a person reads to recognise it."""
    rows = []
    for rank, hit in enumerate(hits, 1):
        row: dict[str, object] = {"rank": rank, "track_id": hit.item_id, "score": round(hit.score, 6)}
        if tracks is not None:
            known = hit.item_id in tracks.index
            for column in TRACK_COLUMNS:
                value = tracks.at[hit.item_id, column] if known and column in tracks.columns else None
                row[column] = None if value is None or pd.isna(value) else str(value)
        rows.append(row)
    return rows


def _table(rows: list[dict[str, object]], query: dict[str, object], named: bool) -> None:
    title = ", ".join(f"{key} {value}" for key, value in query.items() if value is not None)
    table = Table(title=escape(title))
    columns = ["rank", "track_id", *(TRACK_COLUMNS if named else ()), "score"]
    for column in columns:
        table.add_column(column, justify="right" if column in ("rank", "score") else "left", overflow="fold")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if column == "score":
                cells.append(f"{value:.4f}")
            elif column == "tags" and value:
                cells.append(escape(str(value).replace("|", ", ")))
            else:
                cells.append(escape("" if value is None else str(value)))
        table.add_row(*cells)
    console.print(table)
    if not rows:
        console.print("no results", highlight=False)
    if not named:
        console.print("(give --data CORPUS to see titles, collections and tags)", highlight=False)


def _params_text(params: dict[str, int]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items()) or "exact"

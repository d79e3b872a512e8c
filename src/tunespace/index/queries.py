"""Query vectors for an index: a sentence through a run's text tower (an HTCL run for audio embeddings, a CLaMP run
for score embeddings), an audio file through the backend the index was built with, and a listener's
recommendations from a saved recommender.

Each reuses the code that made the vectors being searched (the run's own text tower as `htcl evaluate` embeds
captions, the extraction pipeline of `tunespace embed` on a one-track catalogue), so a query lands in the same space
as the catalogue. Loaded models are kept per process (keyed by path and checkpoint time), so a service answers
repeated queries without reloading them.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunespace.errors import TunespaceError, UnknownIdError
from tunespace.index.ann import EmbeddingIndex, Hit

log = logging.getLogger(__name__)

RUN_FILES = ("config.yaml", "last.pt")
CLAMP_SPLIT = "split.json"  # what tells a CLaMP run folder from an HTCL one
SCORE_BACKENDS = ("clamp-abc", "clamp-midi")
MODEL_CACHE = 4  # loaded models kept per process (text towers and recommenders each)


class QueryError(TunespaceError, ValueError):
    """A query cannot be turned into a vector as asked (wrong run folder, unreadable audio, mismatched space)."""


def is_clamp_run(run_dir: str | Path) -> bool:
    """A `tunespace clamp train` folder (it has split.json) rather than an HTCL run."""
    return (Path(run_dir) / CLAMP_SPLIT).is_file()


def run_languages(run_dir: str | Path) -> tuple[str, ...]:
    """The caption languages a run's text tower was trained on (HTCL: English when its config names none)."""
    from tunespace.contrastive.htcl import load_config

    if is_clamp_run(_run_folder(run_dir)):
        from tunespace.contrastive.clamp import load_clamp_config

        return tuple(load_clamp_config(Path(run_dir) / "config.yaml").data.languages)
    config = load_config(_run_folder(run_dir) / "config.yaml")
    captions = config.stage.semantic_sources.get("captions")
    if captions is None:
        return ()
    return tuple(captions.get("languages", ("en",)))


def text_query_vector(run_dir: str | Path, text: str, language: str | None = None) -> np.ndarray:
    """(dim,) unit vector of `text` in a run's shared space (HTCL: audio-text; CLaMP: score-text). `language` is
    what the text is written in: a language the run never saw captions in is searched anyway, with a warning, since
    the tower may still place it sensibly (a multilingual text encoder) or not at all."""
    from tunespace.contrastive.htcl import embed_texts

    if not text.strip():
        raise QueryError("the text query is empty")
    folder = _run_folder(run_dir)
    if language is not None:
        trained = run_languages(folder)
        if language not in trained:
            log.warning("%s was trained on captions in %s, not %r: results for this language may be poor", folder,
                        ", ".join(trained) or "no language", language)
    stamp = (folder / "last.pt").stat().st_mtime_ns
    if is_clamp_run(folder):
        return _clamp_model(str(folder.resolve()), stamp).clamp.encode_text([text])[0].cpu().numpy()
    model = _text_model(str(folder.resolve()), stamp)
    return embed_texts(model, [text])[0]


def check_text_space(index: EmbeddingIndex, run_dir: str | Path) -> None:
    """Refuse to search `index` with the text tower of `run_dir` unless the index holds that run's own embeddings
    (`tunespace embed --backend htcl --option run=RUN` for an HTCL run, `--backend clamp-abc|clamp-midi` for a
    CLaMP run) or its origin is unknown (a Parquet file)."""
    backend = index.manifest.get("backend")
    if backend is None:
        return
    folder = _run_folder(run_dir).resolve()
    built_from = index.manifest.get("options", {}).get("run")
    expected = SCORE_BACKENDS if is_clamp_run(folder) else ("htcl",)
    if backend not in expected or built_from is None or Path(built_from).resolve() != folder:
        origin = f"backend {backend!r}" + (f" with run {built_from}" if built_from else "")
        raise QueryError(f"the index holds {origin} embeddings, not the audio tower of {folder}: a text query "
                         f"from that run would land in another space; index `tunespace embed --backend "
                         f"{expected[0]} --option run={folder}` embeddings instead")


def audio_query_vector(path: str | Path, backend: str, **backend_options: Any) -> np.ndarray:
    """(dim,) vector of one audio file, embedded by `backend` through the extraction pipeline (decode, resample,
    segments, pooling) exactly as `tunespace embed` embeds a catalogue. `pooling` may be passed among the options
    (default "mean"); the rest go to the backend."""
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.encoders.extract import ExtractionConfig, Extractor, load_skipped

    path = Path(path)
    if not path.is_file():
        raise QueryError(f"{path}: no such audio file")
    pooling = str(backend_options.pop("pooling", "mean"))
    config = ExtractionConfig(backend, options=backend_options, pooling=pooling, prefetch=1)
    tracks = pd.DataFrame({"track_id": ["query"], "audio_path": [path.name]})
    with tempfile.TemporaryDirectory(prefix="tunespace-query-") as tmp:
        out = Path(tmp) / "emb"
        Extractor(config).run(tracks, path.parent, out)
        skipped = load_skipped(out)
        if len(skipped):
            raise QueryError(f"{path}: cannot embed it with {backend}: {skipped['reason'].iloc[0]}")
        return ItemEmbeddings.load(out).vectors[0]


def audio_query_for_index(path: str | Path, index: EmbeddingIndex) -> np.ndarray:
    """One file embedded with the backend, options and pooling named in the index's embeddings manifest."""
    manifest = index.manifest
    if not manifest.get("backend"):
        raise QueryError("the index was not built from a `tunespace embed` folder, so the backend that made its "
                         "vectors is unknown; embed the file with that backend and search by vector instead")
    options = {key: _option_value(value) for key, value in manifest.get("options", {}).items()}
    return audio_query_vector(path, manifest["backend"], pooling=manifest.get("pooling", "mean"), **options)


def recommend_for_user(model_dir: str | Path, user_id: str, k: int) -> list[Hit]:
    """The `k` best tracks for a listener from a saved recommender, the listener's history excluded, best first."""
    if k < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    folder = Path(model_dir)
    if not (folder / "model.json").is_file():
        raise QueryError(f"{folder}: not a saved recommender (no model.json); save one with Recommender.save")
    model = _recommender(str(folder.resolve()), (folder / "state.npz").stat().st_mtime_ns)
    if str(user_id) not in model.users:
        raise UnknownIdError(f"listener {user_id!r} is not known to the recommender in {folder} "
                             f"({len(model.users)} listeners)")
    ranked = model.recommend(model.users.index_of([str(user_id)]), k, exclude_seen=True)
    items, scores = ranked.items[0], ranked.scores[0]
    keep = items >= 0
    return [Hit(str(item), float(score)) for item, score in zip(model.items.id_of(items[keep]), scores[keep])]


def _run_folder(run_dir: str | Path) -> Path:
    folder = Path(run_dir)
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise QueryError(f"{folder}: not an HTCL or CLaMP run folder ({', '.join(missing)} missing)")
    return folder


@functools.lru_cache(maxsize=MODEL_CACHE)
def _text_model(folder: str, checkpoint_time: int) -> Any:
    """An HTCL run on the CPU, ready to embed texts; `checkpoint_time` makes a retrained run reload."""
    import torch

    from tunespace.contrastive.htcl import build_model, load_config

    config = load_config(Path(folder) / "config.yaml")
    model = build_model(config, torch.device("cpu"), Path(folder) / "last.pt")
    model.eval()
    log.info("loaded the text tower of %s (checkpoint time %d)", folder, checkpoint_time)
    return model


@functools.lru_cache(maxsize=MODEL_CACHE)
def _clamp_model(folder: str, checkpoint_time: int) -> Any:
    """A CLaMP run on the CPU, ready to embed texts; `checkpoint_time` makes a retrained run reload."""
    from tunespace.contrastive.clamp import load_clamp_run

    model, _ = load_clamp_run(folder)
    log.info("loaded the text tower of CLaMP run %s (checkpoint time %d)", folder, checkpoint_time)
    return model


@functools.lru_cache(maxsize=MODEL_CACHE)
def _recommender(folder: str, state_time: int) -> Any:
    """A saved recommender; `state_time` makes a re-saved model reload."""
    from tunespace.recommenders import Recommender

    log.info("loaded the recommender in %s (state time %d)", folder, state_time)
    return Recommender.load(folder, device="cpu")


def _option_value(text: object) -> object:
    """A manifest option back to its value: manifests store options as strings ("6" -> 6, "true" -> True)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text.lower() if text.lower() in ("true", "false") else text)
    except ValueError:
        return text

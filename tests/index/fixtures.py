"""Small data for the index and search-command tests (tests/index/conftest.py and tests/cli/test_search.py make
their fixtures with these): clustered vectors, an embedding folder as `tunespace embed` writes it, a tracks table,
audio files with their embeddings, a saved recommender and a tiny HTCL run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import tiny_bert
from tunespace.data.embeddings import ItemEmbeddings


def clustered(n: int, dim: int, clusters: int, seed: int = 0, spread: float = 0.3) -> np.ndarray:
    """`n` points around `clusters` random centres: structure an approximate index can exploit."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))).astype(np.float32)


def embedding_folder(folder: Path, embeddings: ItemEmbeddings, backend: str = "test") -> Path:
    """An embedding folder with one shard and a manifest, as `tunespace embed` leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    embeddings.save(folder / "shard-00000.parquet")
    manifest = {"backend": backend, "options": {}, "pooling": "mean", "shard_size": len(embeddings.ids),
                "dim": embeddings.dim, "tracks": len(embeddings.ids), "shards": 1}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def small_embeddings() -> ItemEmbeddings:
    """300 clustered 16-d vectors, tracks t000-t299."""
    vectors = clustered(300, 16, 6)
    return ItemEmbeddings(ids=[f"t{i:03d}" for i in range(len(vectors))], vectors=vectors)


def tracks_folder(folder: Path, ids: np.ndarray) -> Path:
    """A data folder whose tracks.parquet names `ids` (title, collection, tags)."""
    frame = pd.DataFrame({"track_id": ids, "title": [f"Tune {i}" for i in range(len(ids))],
                          "collection": ["airs" if i % 2 else "reels" for i in range(len(ids))],
                          "tags": ["mode:major|tempo:slow" if i % 2 else "mode:minor|tempo:fast"
                                   for i in range(len(ids))]})
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "tracks.parquet", index=False)
    return folder


def saved_recommender(folder: Path) -> Path:
    """A popularity model over t000-t009: t000 is played by every listener, t001 by all but one, and so on;
    listener u0 has played t000 and t001."""
    from tunespace.data.catalog import IdMap
    from tunespace.data.interactions import InteractionMatrix
    from tunespace.recommenders import Popularity

    rows = [(f"u{u}", f"t{i:03d}") for u in range(5) for i in range(5 - u)] + [("u0", "t001")]
    frame = pd.DataFrame(rows, columns=["user_id", "track_id"]).drop_duplicates()
    frame = frame.assign(timestamp=pd.Timestamp("2024-01-01", tz="UTC"), weight=1.0)
    frame = frame[~((frame.user_id == "u0") & ~frame.track_id.isin(["t000", "t001"]))]
    train = InteractionMatrix.from_frame(frame, IdMap([f"u{u}" for u in range(5)], name="user_id"),
                                         IdMap([f"t{i:03d}" for i in range(10)], name="track_id"))
    Popularity(device="cpu").fit(train).save(folder)
    return folder


def audio_catalogue(tmp_path: Path) -> tuple[Path, Path]:
    """(data folder with three tones as WAV files and tracks.parquet, their MFCC embedding folder)."""
    import soundfile

    from tunespace.encoders.extract import ExtractionConfig, Extractor

    data = tmp_path / "tones"
    (data / "audio").mkdir(parents=True)
    rate, rows = 16000, []
    t = np.arange(2 * rate) / rate
    for i, hz in enumerate((220.0, 440.0, 1760.0)):
        soundfile.write(data / "audio" / f"tone{i}.wav", 0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.2 * i * t), rate)
        rows.append({"track_id": f"tone{i}", "audio_path": f"audio/tone{i}.wav", "title": f"{hz:.0f} Hz"})
    tracks = pd.DataFrame(rows)
    tracks.to_parquet(data / "tracks.parquet", index=False)
    Extractor(ExtractionConfig("mfcc", prefetch=1)).run(tracks, data, tmp_path / "tone-emb")
    return data, tmp_path / "tone-emb"


WORDS = ["a", "slow", "fast", "air", "reel", "on", "the", "fiddle", "ein", "langsames", "lied"]


def htcl_run(bert: Path, run: Path) -> Path:
    """An untrained HTCL run folder `run` (config.yaml, last.pt) whose text tower is a 1-layer random BERT saved
    in `bert`."""
    pytest.importorskip("transformers")
    import torch

    from tunespace.contrastive.htcl import HTCL, load_config, save_config

    tiny_bert(bert, WORDS, hidden=16, layers=1)
    run.mkdir(parents=True, exist_ok=True)
    config = load_config("tiny", {"audio.stem_channels": 8, "audio.width": 8, "audio.layers": 1, "audio.heads": 2,
                                  "audio.embed_dim": 8, "text.model": str(bert), "text.embed_dim": 8})
    save_config(config, run / "config.yaml")
    torch.save({"model": HTCL(config).state_dict()}, run / "last.pt")
    return run

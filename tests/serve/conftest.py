"""A tiny built-in corpus with everything the explorer serves: MFCC and HTCL embeddings, their indexes, a tiny
HTCL run (random two-layer BERT text tower, two steps) and a saved recommender. Built once per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import tiny_bert

pytest.importorskip("fastapi")
pytest.importorskip("faiss")
pytest.importorskip("transformers")

WORDS = ["a", "tune", "fast", "slow", "reel", "jig", "air", "march", "played", "on", "the", "fiddle", "piano",
         "in", "major", "minor", "time", "ein", "lied", "langsames", "schnelles", "from", "ireland", "scotland",
         "organ", "flute", "instruments", "key", "irish", "scottish"]


@dataclass(frozen=True)
class Served:
    data: Path
    mfcc_index: Path
    htcl_index: Path
    run: Path
    model: Path


def _tiny_bert(folder: Path) -> Path:
    """A 2-layer random BERT with its own small vocabulary: a real text tower, nothing downloaded."""
    return tiny_bert(folder, WORDS)


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Served:
    from tunespace.cli.main import main
    from tunespace.corpus.build import CorpusConfig, build_corpus
    from tunespace.data.catalog import IdMap
    from tunespace.data.dataset import Dataset
    from tunespace.data.interactions import InteractionMatrix
    from tunespace.index import EmbeddingIndex
    from tunespace.recommenders.base import get_recommender

    root = tmp_path_factory.mktemp("served")
    data = root / "corpus"
    build_corpus(data, CorpusConfig(size="small", tracks=24, listeners=60, workers=1, max_seconds=6.0))
    bert = _tiny_bert(root / "bert")
    run = root / "run"
    tiny = ["--set", f"text.model={bert}", "--set", "audio.width=16", "--set", "audio.stem_channels=16",
            "--set", "audio.layers=1", "--set", "audio.heads=2", "--set", "train.batch_size=8",
            "--set", "stage.crop_seconds=2.0", "--set", "holdout_share=0.25"]
    assert main(["htcl", "pretrain", "--data", str(data), "--out", str(run), "--steps", "2", "--device", "cpu",
                 *tiny]) == 0
    assert main(["embed", "--backend", "mfcc", "--data", str(data), "--out", str(data / "emb" / "mfcc")]) == 0
    assert main(["embed", "--backend", "htcl", "--option", f"run={run}", "--data", str(data), "--out",
                 str(data / "emb" / "htcl")]) == 0
    EmbeddingIndex.from_folder(data / "emb" / "mfcc", kind="flat").save(root / "index-mfcc")
    EmbeddingIndex.from_folder(data / "emb" / "htcl", kind="flat").save(root / "index-htcl")
    dataset = Dataset.load(data)
    users = IdMap.from_values(dataset.interactions["user_id"], "user_id")
    items = IdMap(dataset.tracks["track_id"], "track_id")
    model = get_recommender("itemknn")().fit(InteractionMatrix.from_frame(dataset.interactions, users, items))
    model.save(root / "itemknn")
    return Served(data, root / "index-mfcc", root / "index-htcl", run, root / "itemknn")

"""The CLI end to end, in-process through main(argv), on small generated data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tunespace.cli.main import main
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    dataset, embeddings = synthetic_dataset(SyntheticConfig(users=120, tracks=300, artists=20, seed=3))
    dataset.save(folder / "dataset")
    embeddings.save(folder / "content.parquet")
    return folder


def test_split_then_evaluate_writes_tables(data_dir, tmp_path):
    assert main(["split", str(data_dir / "dataset"), "--cutoff", SYNTHETIC_CUTOFF, "--test-end", "2024-01-01",
                 "--out", str(tmp_path / "split")]) == 0
    assert (tmp_path / "split" / "split.json").exists()
    code = main(["evaluate", str(tmp_path / "split"), "--models", "popularity,ease,knn", "--embeddings",
                 str(data_dir / "content.parquet"), "--out", str(tmp_path / "results")])
    assert code == 0
    table = pd.read_csv(tmp_path / "results" / "results.csv")
    assert list(table["model"]) == ["popularity", "ease", "knn[content]"]
    for metric in ("hit_rate@50", "recall@50", "ndcg@50"):
        assert ((table[f"{metric}_low"] <= table[metric]) & (table[metric] <= table[f"{metric}_high"])).all()
        assert table[metric].between(0, 1).all()
    markdown = (tmp_path / "results" / "results.md").read_text()
    assert "| popularity |" in markdown and "±" in markdown
    per_user = pd.read_parquet(tmp_path / "results" / "per_user.parquet")
    assert set(per_user["model"]) == {"popularity", "ease", "knn[content]"}
    significance = pd.read_csv(tmp_path / "results" / "significance.csv")
    assert set(significance["model"]) == {"ease", "knn[content]"}


def test_benchmark_on_a_data_folder(data_dir, tmp_path):
    code = main(["benchmark", "recsys", "--dataset", "folder", "--data", str(data_dir / "dataset"),
                 "--cutoff", SYNTHETIC_CUTOFF, "--test-start", SYNTHETIC_CUTOFF, "--models", "popularity,itemknn",
                 "--out", str(tmp_path / "bench")])
    assert code == 0
    assert list(pd.read_csv(tmp_path / "bench" / "results.csv")["model"]) == ["popularity", "ease", "itemknn"]
    assert (tmp_path / "bench" / "split" / "split.json").exists()


def test_bad_input_is_one_clear_error(data_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    pd.DataFrame({"user_id": ["u1"], "track_id": ["t1"], "timestamp": ["not a date"]}).to_parquet(
        broken / "interactions.parquet")
    assert main(["split", str(broken), "--cutoff", "2024-01-01", "--out", str(tmp_path / "s")]) == 1
    said = capsys.readouterr().out
    assert "interactions.parquet" in said and "row 1" in said and "timestamp" in said
    assert main(["benchmark", "recsys", "--dataset", "nonsense"]) == 1


def test_knn_without_embeddings_is_refused(data_dir, tmp_path):
    main(["split", str(data_dir / "dataset"), "--cutoff", SYNTHETIC_CUTOFF, "--out", str(tmp_path / "split")])
    assert main(["evaluate", str(tmp_path / "split"), "--models", "knn"]) == 1


def test_embed_then_benchmark_with_the_embedding_folder(tmp_path, capsys):
    import numpy as np
    import soundfile

    from tunespace.data.embeddings import ItemEmbeddings

    dataset, _ = synthetic_dataset(SyntheticConfig(users=60, tracks=80, artists=8, seed=5))
    folder = tmp_path / "data"
    (folder / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for number, track_id in enumerate(dataset.tracks["track_id"]):
        t = np.arange(8000) / 16000
        signal = 0.3 * np.sin(2 * np.pi * (150 + 10 * number) * t) + 0.01 * rng.normal(size=len(t))
        if number == 3:
            signal[:] = 0.0  # a silent file is skipped, not fatal
        soundfile.write(folder / "audio" / f"{track_id}.wav", signal.astype(np.float32), 16000)
        paths.append(f"audio/{track_id}.wav")
    dataset.tracks = dataset.tracks.assign(audio_path=paths)
    dataset.save(folder)
    assert main(["embed", "--backend", "mfcc", "--data", str(folder), "--out", str(tmp_path / "emb"),
                 "--shard-size", "32"]) == 0
    said = capsys.readouterr().out
    assert "79 tracks embedded, 1 skipped, 3 shards written" in said and "silent" in said
    assert ItemEmbeddings.load(tmp_path / "emb").dim == 104
    record = json.loads((tmp_path / "emb" / "provenance.json").read_text())
    assert record["status"] == "ok" and record["figures"]["embedded"] == 79 and record["settings"]["backend"] == "mfcc"
    assert main(["embed", "--backend", "mfcc", "--data", str(folder), "--out", str(tmp_path / "emb")]) == 1
    assert "differs in shard_size" in capsys.readouterr().out
    code = main(["benchmark", "recsys", "--dataset", "folder", "--data", str(folder), "--cutoff", SYNTHETIC_CUTOFF,
                 "--test-start", SYNTHETIC_CUTOFF, "--models", "popularity,knn", "--embeddings",
                 str(tmp_path / "emb"), "--out", str(tmp_path / "bench")])
    assert code == 0
    assert list(pd.read_csv(tmp_path / "bench" / "results.csv")["model"]) == ["popularity", "ease", "knn[mfcc]",
                                                                               "knn+pop[mfcc]"]

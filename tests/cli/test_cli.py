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
    assert main(["report", "--eval", str(tmp_path / "results"), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "Paired tests on NDCG@50" in page


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


def _cheap_corpus(out, *args, **kwargs) -> dict:
    """A stand-in for `_build_corpus`: 40 tracks of short sine tones and a synthetic log moved onto the corpus's
    cutoff, so the demo runs its real embedding and benchmark steps in seconds."""
    import numpy as np
    import soundfile

    from tunespace.corpus.build import CUTOFF

    dataset, _ = synthetic_dataset(SyntheticConfig(users=60, tracks=40, artists=4, seed=7))
    (out / "audio").mkdir(parents=True)
    t = np.arange(12000) / 16000  # 0.75 s: embedding skips anything under 0.5 s
    for number, track_id in enumerate(dataset.tracks["track_id"]):
        soundfile.write(out / "audio" / f"{track_id}.wav",
                        (0.3 * np.sin(2 * np.pi * (150 + 25 * number) * t)).astype(np.float32), 16000)
    dataset.tracks = dataset.tracks.assign(audio_path=[f"audio/{i}.wav" for i in dataset.tracks["track_id"]],
                                           instrument_family=[("strings", "wind")[i % 2] for i in
                                                              range(len(dataset.tracks))])
    shift = pd.Timestamp(CUTOFF, tz="UTC") - pd.Timestamp(SYNTHETIC_CUTOFF, tz="UTC")
    dataset.interactions = dataset.interactions.assign(timestamp=dataset.interactions["timestamp"] + shift)
    dataset.save(out)
    return {}


def test_demo_leads_to_the_benchmark_with_its_backends(tmp_path, capsys, monkeypatch):
    import tunespace.cli.main as cli
    from tunespace.corpus.build import CUTOFF

    monkeypatch.setattr(cli, "_build_corpus", lambda size, out, *a, **k: _cheap_corpus(out))
    monkeypatch.setattr(cli, "DEMO_BACKENDS", ("mfcc",))
    out = tmp_path / "demo-results"
    assert main(["demo", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert (out / "corpus" / "emb" / "mfcc" / "manifest.json").exists()  # where --backends looks
    corpus = out / "corpus"
    assert "next, try:" in said
    assert (f"tunespace benchmark recsys --dataset folder --data {corpus} --backends mfcc --cutoff {CUTOFF} "
            f"--test-start {CUTOFF} --out {out / 'benchmark'}") in said
    assert f"tunespace htcl pretrain --data {corpus} --out {out / 'htcl-stage1'}" in said
    assert f"tunespace report --eval {out / 'htcl-eval'}" in said
    assert (out / "report.html").is_file() and f"wrote {out / 'report.html'}" in said
    # the printed benchmark command works as it stands (fewer models, to stay quick)
    assert main(["benchmark", "recsys", "--dataset", "folder", "--data", str(corpus), "--backends", "mfcc",
                 "--models", "popularity,knn", "--cutoff", CUTOFF, "--test-start", CUTOFF, "--no-popularity-aware",
                 "--out", str(tmp_path / "bench")]) == 0
    assert list(pd.read_csv(tmp_path / "bench" / "results.csv")["model"]) == ["popularity", "ease", "knn[mfcc]"]


def test_demo_next_steps_without_backends_runs_collaborative_models(tmp_path):
    from tunespace.cli.main import COLLABORATIVE_MODELS, _demo_next_steps

    text = _demo_next_steps(tmp_path, [], "2025-01-01")
    assert "--backends" not in text and f"--models {COLLABORATIVE_MODELS}" in text
    assert len(text.splitlines()) == 5  # a heading and four commands


def test_benchmark_needs_a_dataset_and_reaches_for_nothing_outside(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["benchmark", "recsys"]) == 2
    said = capsys.readouterr().out.strip()
    assert said == "usage error: Missing option '--dataset'."


def test_embed_without_a_terminal_logs_progress_lines_and_an_unwrapped_skipped_title(tmp_path, capsys, monkeypatch):
    import numpy as np
    import soundfile

    import tunespace.cli.main as cli

    folder = tmp_path / "a folder with a rather long name so the skipped title would wrap in a narrow table"
    (folder / "audio").mkdir(parents=True)
    t = np.arange(8000) / 16000
    for number in range(6):
        signal = np.zeros_like(t) if number == 4 else 0.3 * np.sin(2 * np.pi * (150 + 20 * number) * t)
        soundfile.write(folder / "audio" / f"t{number}.wav", signal.astype(np.float32), 16000)
    pd.DataFrame({"track_id": [f"t{n}" for n in range(6)],
                  "audio_path": [f"audio/t{n}.wav" for n in range(6)]}).to_parquet(folder / "tracks.parquet")
    monkeypatch.setattr(cli, "EMBED_LOG_TRACKS", 2)
    assert main(["embed", "--backend", "mfcc", "--data", str(folder), "--out", str(tmp_path / "emb")]) == 0
    lines = capsys.readouterr().out.splitlines()
    logged = [line for line in lines if line.startswith("embedded ")]
    assert [line.split(" tracks,")[0] for line in logged] == ["embedded 2/6", "embedded 4/6", "embedded 6/6"]
    assert logged[-1].endswith(" s") and "audio min, 1 skipped, " in logged[-1]
    title = f"skipped tracks (all 1 with reasons in {tmp_path / 'emb'}/shard-*.skipped.parquet)"
    assert title in lines  # one line of its own, however narrow the table under it


def test_embed_min_seconds_skips_short_tracks_with_the_reason(tmp_path):
    import numpy as np
    import soundfile

    from tunespace.data.embeddings import ItemEmbeddings

    (tmp_path / "audio").mkdir()
    for name, seconds in (("long", 1.0), ("short", 0.6)):
        t = np.arange(int(16000 * seconds)) / 16000
        soundfile.write(tmp_path / "audio" / f"{name}.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
                        16000)
    pd.DataFrame({"track_id": ["long", "short"], "audio_path": ["audio/long.wav", "audio/short.wav"]}).to_parquet(
        tmp_path / "tracks.parquet")
    assert main(["embed", "--backend", "mfcc", "--data", str(tmp_path), "--out", str(tmp_path / "emb"),
                 "--min-seconds", "0.8"]) == 0
    assert list(ItemEmbeddings.load(tmp_path / "emb").ids) == ["long"]
    skipped = pd.concat(pd.read_parquet(p) for p in (tmp_path / "emb").glob("shard-*.skipped.parquet"))
    assert skipped["track_id"].tolist() == ["short"] and "shorter than 0.8 s" in skipped["reason"].iloc[0]


def test_hetrec_without_data_names_the_folder_instead_of_looking_outside(capsys):
    assert main(["benchmark", "recsys", "--dataset", "hetrec", "--cutoff", "2010-01-01",
                 "--test-start", "2010-07-01"]) == 1
    out = capsys.readouterr()
    message = (out.out + out.err).strip()
    assert "needs --data" in message and "Traceback" not in message


def test_fit_saves_a_model_that_search_uses(data_dir, tmp_path, capsys):
    out = tmp_path / "ease"
    assert main(["fit", str(data_dir / "dataset"), "--model", "ease", "--out", str(out),
                 "--before", SYNTHETIC_CUTOFF]) == 0
    assert (out / "model.json").is_file()
    user = pd.read_parquet(data_dir / "dataset" / "interactions.parquet")["user_id"].iloc[0]
    capsys.readouterr()
    assert main(["search", "--user", str(user), "--model", str(out), "--k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3
    assert main(["fit", str(data_dir / "dataset"), "--model", "knn", "--out", str(tmp_path / "knn")]) != 0
    assert "--embeddings" in capsys.readouterr().out
    assert main(["fit", str(data_dir / "dataset"), "--model", "ease", "--out", str(tmp_path / "e2"),
                 "--before", "1990-01-01"]) == 1
    assert "no listening events before 1990-01-01" in capsys.readouterr().out

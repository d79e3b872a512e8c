"""`tunespace index build` and `tunespace search` end to end in-process: tables, JSON, every mode, and one-line
errors for the mistakes a person makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss")

from tests.index import fixtures
from tunespace.cli.main import main
from tunespace.data.embeddings import ItemEmbeddings


@pytest.fixture
def tracks_folder(tmp_path, small_embeddings) -> Path:
    return fixtures.tracks_folder(tmp_path / "data", small_embeddings.ids)


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    said = (captured.out + captured.err).strip()
    assert "Traceback" not in said and len(said.splitlines()) == 1, said
    return said


def results(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def built(small_folder, tmp_path, capsys) -> str:
    assert main(["index", "build", "--embeddings", str(small_folder), "--out", str(tmp_path / "idx")]) == 0
    assert "flat index over 300 items of dim 16" in capsys.readouterr().out
    return str(tmp_path / "idx")


def test_like_as_a_table_and_as_json(built, tracks_folder, capsys):
    assert main(["search", "--index", built, "--data", str(tracks_folder), "--like", "t007", "--k", "4"]) == 0
    table = capsys.readouterr().out
    assert "like t007" in table and "title" in table and "Tune " in table and ", tempo:" in table
    assert main(["search", "--index", built, "--data", str(tracks_folder), "--like", "t007", "--k", "4",
                 "--json"]) == 0
    answer = results(capsys)
    assert answer["query"] == {"like": "t007"} and [r["rank"] for r in answer["results"]] == [1, 2, 3, 4]
    assert "t007" not in {r["track_id"] for r in answer["results"]}  # the track itself is not "like" itself
    first = answer["results"][0]
    assert set(first) == {"rank", "track_id", "score", "title", "collection", "tags"}
    assert first["title"] == f"Tune {int(first['track_id'][1:])}"


def test_build_options_choose_the_kind(small_folder, tmp_path, capsys):
    assert main(["index", "build", "--embeddings", str(small_folder), "--out", str(tmp_path / "h"),
                 "--hnsw-m", "8", "--ef-search", "20"]) == 0
    assert "hnsw index over 300 items" in capsys.readouterr().out
    assert main(["index", "build", "--embeddings", str(small_folder), "--out", str(tmp_path / "q"),
                 "--kind", "ivfpq", "--nprobe", "4"]) == 0
    assert "ivfpq index" in capsys.readouterr().out
    assert main(["search", "--index", str(tmp_path / "q"), "--like", "t001", "--k", "3", "--json"]) == 0
    assert len(results(capsys)["results"]) == 3


def test_user_recommendations(tmp_path, tracks_folder, capsys):
    model = fixtures.saved_recommender(tmp_path / "popularity")
    assert main(["search", "--user", "u0", "--model", str(model), "--data", str(tracks_folder),
                 "--k", "2", "--json"]) == 0
    answer = results(capsys)
    assert [r["track_id"] for r in answer["results"]] == ["t002", "t003"] and answer["results"][0]["title"]


def test_audio_search(tmp_path, capsys):
    data, embeddings = fixtures.audio_catalogue(tmp_path)
    assert main(["index", "build", "--embeddings", str(embeddings), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "idx"), "--audio", str(data / "audio" / "tone2.wav"),
                 "--data", str(data), "--k", "1", "--json"]) == 0
    assert results(capsys)["results"][0]["track_id"] == "tone2"


def test_text_search_in_the_runs_space(tmp_path, capsys):
    htcl_run = fixtures.htcl_run(tmp_path / "bert", tmp_path / "run")
    vectors = ItemEmbeddings(ids=["a", "b", "c"], vectors=[[1.0] + [0.0] * 7, [0.0, 1.0] + [0.0] * 6,
                                                           [0.5] * 8])
    folder = fixtures.embedding_folder(tmp_path / "htcl-emb", vectors, backend="htcl")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["options"] = {"run": str(htcl_run)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["index", "build", "--embeddings", str(folder), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "idx"), "--text", "a slow air", "--run", str(htcl_run),
                 "--k", "3", "--json"]) == 0
    answer = results(capsys)
    assert answer["query"]["text"] == "a slow air" and {r["track_id"] for r in answer["results"]} == {"a", "b", "c"}


@pytest.mark.parametrize(("args", "message"), [
    (["--like", "t001", "--user", "u0"], "give exactly one of --text, --like, --audio, --user (got --like, --user)"),
    (["--text", "a reel"], "--text needs --run HTCL_RUN"),
    (["--user", "u0"], "--user needs --model REC_DIR"),
    (["--like", "t001", "--k", "0"], "--k must be at least 1"),
    (["--like", "t001", "--lang", "de"], "--lang only applies to --text"),
    (["--like", "nope"], "track 'nope' is not in the index (300 items)"),
])
def test_mistakes_are_one_line(built, capsys, args, message):
    assert main(["search", "--index", built, *args]) != 0
    assert message in one_line(capsys)


def test_missing_and_stale_indexes_are_one_line(built, small_folder, small_embeddings, tmp_path, capsys):
    assert main(["search", "--like", "t001"]) == 2
    assert "--like needs --index IDX" in one_line(capsys)
    assert main(["search", "--index", str(tmp_path / "nowhere"), "--like", "t001"]) == 1
    assert "is not an index folder" in one_line(capsys)
    fixtures.embedding_folder(small_folder, ItemEmbeddings(ids=small_embeddings.ids[::-1], vectors=small_embeddings.vectors))
    assert main(["search", "--index", built, "--like", "t001"]) == 1
    assert "is stale" in one_line(capsys)
    assert main(["index", "build", "--embeddings", str(small_folder), "--out", built, "--kind", "annoy"]) == 1
    assert "unknown index kind 'annoy'" in one_line(capsys)

"""User mistakes end in one line that says what to do, with a non-zero exit code and no traceback."""

from __future__ import annotations

import builtins
import json
import logging
import sys

import numpy as np
import pytest

import tunespace.cli.main as cli
from tunespace.cli.main import main
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.errors import IncompleteExtractionError, MissingExtraError
from tunespace.extras import missing_extra, needs_extra


def one_line(capsys) -> str:
    """The run's whole output, checked to be a single line without a traceback."""
    captured = capsys.readouterr()
    said = (captured.out + captured.err).strip()
    assert "Traceback" not in said
    assert len(said.splitlines()) == 1, said
    return said


# ---------------------------------------------------------------- 1. --k

@pytest.mark.parametrize("ks, bad", [("10,abc", "'abc'"), ("ten", "'ten'"), ("10, 5.5", "'5.5'")])
def test_non_integer_k_on_evaluate(tmp_path, capsys, ks, bad):
    assert main(["evaluate", str(tmp_path), "--k", ks]) == 2
    said = one_line(capsys)
    assert "--k takes comma-separated integers" in said and f"{bad} in " in said


def test_non_integer_k_on_benchmark_recsys(capsys):
    assert main(["benchmark", "recsys", "--dataset", "synthetic", "--k", "10,abc"]) == 2
    assert "'abc' in '10,abc' is not one" in one_line(capsys)


def test_integer_k_still_reaches_the_command(tmp_path, capsys):
    # `--k 10` parses; what fails next is the missing split, a different one-line error
    assert main(["evaluate", str(tmp_path / "none"), "--k", "10"]) == 1
    assert "not a split folder" in one_line(capsys)


# ---------------------------------------------------------------- 2. report --eval

def test_report_of_a_missing_folder(tmp_path, capsys):
    assert main(["report", "--eval", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.html")]) == 1
    said = one_line(capsys)
    assert "no such folder" in said and "tunespace htcl evaluate --out" in said
    assert not (tmp_path / "r.html").exists()


def test_report_of_an_empty_or_random_folder(tmp_path, capsys):
    assert main(["report", "--eval", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 1
    assert "no results.csv, semantic.csv, preference.csv, tagging.csv or search.csv" in one_line(capsys)
    (tmp_path / "semantic.csv").write_text("run\nx\n")
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["report", "--eval", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 1
    said = one_line(capsys)
    assert "no preference.csv;" in said and "`tunespace htcl evaluate --out" in said


def test_report_of_a_half_written_results_folder(tmp_path, capsys):
    (tmp_path / "per_user.parquet").write_bytes(b"")
    assert main(["report", "--eval", str(tmp_path)]) == 1
    said = one_line(capsys)
    assert "no results.csv, semantic.csv, preference.csv, tagging.csv or search.csv" in said and "`tunespace evaluate --out" in said


# ---------------------------------------------------------------- 3. optional extras

def failing_import(monkeypatch, module: str, missing: str) -> None:
    """Make `import module` fail as if the package `missing` were not installed."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_embed_without_the_encoders_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails

    def embed_with_transformers(*args, **kwargs):
        import transformers  # noqa: F401

    monkeypatch.setattr(cli, "run_extraction", embed_with_transformers)
    assert main(["embed", "--backend", "mert", "--data", str(tmp_path), "--out", str(tmp_path / "e")]) == 1
    said = one_line(capsys)
    assert "transformers" in said and 'pip install "tunespace[encoders]"' in said


def test_demo_without_the_corpus_extra(tmp_path, monkeypatch, capsys):
    failing_import(monkeypatch, "tunespace.corpus.build", "symusic")
    assert main(["demo", "--out", str(tmp_path)]) == 1
    said = one_line(capsys)
    assert "symusic" in said and 'pip install "tunespace[corpus]"' in said


def test_any_command_without_an_extra_gets_the_line(tmp_path, monkeypatch, capsys):
    """Commands that import an optional package without the helper still end in one line (main() maps it)."""
    monkeypatch.setitem(sys.modules, "music21", None)

    def build_with_music21(*args, **kwargs):
        import music21  # noqa: F401

    monkeypatch.setattr(cli, "_build_corpus", build_with_music21)
    assert main(["corpus", "build", "--out", str(tmp_path / "c")]) == 1
    assert 'pip install "tunespace[corpus]"' in one_line(capsys)


def test_missing_extra_known_answers():
    assert "tunespace[encoders]" in str(missing_extra(ModuleNotFoundError("x", name="huggingface_hub.errors")))
    assert "pip install --no-deps musicnn==0.1.0" in str(missing_extra(ModuleNotFoundError("x", name="musicnn")))
    assert missing_extra(ModuleNotFoundError("x", name="numpy_typo")) is None  # not optional: a real bug
    assert missing_extra(ModuleNotFoundError("x", name="tunespace.nothing"), "corpus") is None
    assert "tunespace[corpus]" in str(missing_extra(ImportError("no name"), "corpus"))
    with pytest.raises(MissingExtraError, match=r'tunespace\[corpus\]'), needs_extra():
        raise ModuleNotFoundError("No module named 'pretty_midi'", name="pretty_midi")
    with pytest.raises(ModuleNotFoundError), needs_extra("corpus"):
        raise ModuleNotFoundError("No module named 'numpy_typo'", name="numpy_typo")


# ---------------------------------------------------------------- 5. Ctrl-C

def test_ctrl_c_during_embed_exits_130_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_extraction", interrupted)
    assert main(["embed", "--data", str(tmp_path), "--out", str(tmp_path / "e")]) == 130
    said = one_line(capsys)
    assert "interrupted" in said and "rerun the same command to resume" in said and "shards" in said


# ---------------------------------------------------------------- 4. split with no test users

def test_split_after_the_last_event_is_refused(tmp_path, capsys):
    from tunespace.data.synthetic import SyntheticConfig, synthetic_dataset

    dataset, _ = synthetic_dataset(SyntheticConfig(users=30, tracks=40, artists=4, seed=1))
    dataset.save(tmp_path / "data")
    last = dataset.interactions["timestamp"].max()
    assert main(["split", str(tmp_path / "data"), "--cutoff", str(last.date() + np.timedelta64(1, "D")),
                 "--out", str(tmp_path / "split")]) == 1
    said = one_line(capsys)
    assert "no test users" in said and f"last event is on {last.date()}" in said and "earlier cutoff" in said
    assert not (tmp_path / "split").exists()


# ---------------------------------------------------------------- 6. unfinished embedding folders

def extraction(folder, shards_written: int, tracks: int = 5, shard_size: int = 2) -> None:
    """A `tunespace embed` folder: its manifest promises ceil(tracks / shard_size) shards; some are written."""
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"backend": "mfcc", "shard_size": shard_size,
                                                      "tracks": tracks, "dim": 3}))
    (folder / "provenance.json").write_text(json.dumps({"settings": {"data": "corpus-folder"}}))
    for shard in range(shards_written):
        ids = [f"t{shard * shard_size + i}" for i in range(min(shard_size, tracks - shard * shard_size))]
        ItemEmbeddings(np.asarray(ids), np.ones((len(ids), 3))).save(folder / f"shard-{shard:05d}.parquet")


def test_unfinished_extraction_is_refused(tmp_path):
    extraction(tmp_path / "emb", shards_written=2)
    with pytest.raises(IncompleteExtractionError) as raised:
        ItemEmbeddings.load(tmp_path / "emb")
    said = str(raised.value)
    assert "unfinished extraction: 2 of 3 shards written (1 missing)" in said
    assert f"tunespace embed --backend mfcc --data corpus-folder --out {tmp_path / 'emb'} --shard-size 2" in said
    assert "allow_partial=True" in said


def test_unfinished_extraction_with_allow_partial_warns(tmp_path, caplog):
    extraction(tmp_path / "emb", shards_written=2)
    with caplog.at_level(logging.WARNING, logger="tunespace.data.embeddings"):
        loaded = ItemEmbeddings.load(tmp_path / "emb", allow_partial=True)
    assert list(loaded.ids) == ["t0", "t1", "t2", "t3"]
    assert "2 of 3 shards written (1 missing)" in caplog.text


def test_finished_extraction_loads_without_warning(tmp_path, caplog):
    extraction(tmp_path / "emb", shards_written=3)
    with caplog.at_level(logging.WARNING):
        assert list(ItemEmbeddings.load(tmp_path / "emb").ids) == ["t0", "t1", "t2", "t3", "t4"]
    assert "unfinished" not in caplog.text


def test_unfinished_extraction_through_the_cli_is_one_line(tmp_path, capsys):
    from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset

    dataset, _ = synthetic_dataset(SyntheticConfig(users=30, tracks=40, artists=4, seed=1))
    dataset.save(tmp_path / "data")
    assert main(["split", str(tmp_path / "data"), "--cutoff", SYNTHETIC_CUTOFF, "--out", str(tmp_path / "split")]) == 0
    capsys.readouterr()
    extraction(tmp_path / "emb", shards_written=1)
    assert main(["evaluate", str(tmp_path / "split"), "--models", "knn", "--embeddings", str(tmp_path / "emb")]) == 1
    assert "unfinished extraction: 1 of 3 shards written (2 missing); resume it with" in one_line(capsys)

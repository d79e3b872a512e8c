"""`tunespace synth-log`, `split-log` and `evaluate-log` end to end on a tiny log."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tunespace.cli.main import main


def test_generate_split_and_evaluate_a_partitioned_log(tmp_path, capsys):
    log, split = tmp_path / "log", tmp_path / "split"
    assert main(["synth-log", "--out", str(log), "--tracks", "800", "--users", "120", "--interactions", "12000",
                 "--clusters", "20", "--genres", "4", "--dim", "8",
                 "--rows-per-part", "5000"]) == 0
    assert len(list((log / "interactions").glob("part-*.parquet"))) == 3
    assert main(["split-log", str(log), "--cutoff", "2024-12-01", "--test-end", "2025-01-01", "--out",
                 str(split)]) == 0
    assert "test_users" in capsys.readouterr().out
    exact, approximate = tmp_path / "exact", tmp_path / "ann"
    assert main(["evaluate-log", str(split), "--embeddings", str(log / "embeddings.parquet"), "--out",
                 str(exact)]) == 0
    assert "ndcg@50" in capsys.readouterr().out
    per_user = pd.read_parquet(exact / "per_user.parquet")
    assert len(per_user) == json.loads((split / "split.json").read_text())["stats"]["test_users"]
    assert json.loads((exact / "provenance.json").read_text())["figures"]["ndcg@50"] > 0
    pytest.importorskip("faiss")
    assert main(["evaluate-log", str(split), "--embeddings", str(log / "embeddings.parquet"), "--ann", "hnsw",
                 "--candidates", "100000", "--out", str(approximate)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(approximate / "per_user.parquet"), per_user)


def test_a_log_with_string_ids_is_refused_in_one_line(tmp_path, capsys):
    pd.DataFrame({"user_id": ["a"], "track_id": ["b"], "timestamp": pd.to_datetime(["2024-01-01"], utc=True)}
                 ).to_parquet(tmp_path / "log.parquet", index=False)
    assert main(["split-log", str(tmp_path / "log.parquet"), "--cutoff", "2024-06-01", "--out",
                 str(tmp_path / "s")]) != 0
    assert 'column "user_id": must be an integer id' in capsys.readouterr().out

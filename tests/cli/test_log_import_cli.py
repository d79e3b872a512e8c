"""`tunespace import-log` end to end: a tiny CSV log becomes a folder `Dataset.load` and the benchmark accept."""

from __future__ import annotations

import pandas as pd

from tunespace.cli.main import main
from tunespace.data.dataset import Dataset


def test_import_log_writes_a_loadable_folder(tmp_path, capsys):
    log = tmp_path / "scrobbles.csv"
    log.write_text("who,what,when,n\nalice,0042,1700000000,2\nbob,t7,1700086400,1\n")
    assert main(["import-log", str(log), "--out", str(tmp_path / "data"), "--user", "who", "--track", "what",
                 "--time", "when", "--weight", "n", "--time-format", "unix"]) == 0
    said = capsys.readouterr().out
    assert "2 users, 2 tracks, 2 interactions from 2023-11-14 to 2023-11-15" in said
    assert "benchmark recsys --dataset folder --data" in said
    dataset = Dataset.load(tmp_path / "data")
    assert list(dataset.interactions["weight"]) == [2.0, 1.0]
    assert list(pd.read_parquet(tmp_path / "data" / "tracks.parquet")["track_id"]) == ["0042", "t7"]


def test_iso_log(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("who,what,when\nalice,a,2024-05-01T08:00:00Z\nalice,b,2024-05-01T09:00:00Z\n")
    assert main(["import-log", str(log), "--out", str(tmp_path / "data"), "--user", "who", "--track", "what",
                 "--time", "when", "--time-format", "iso"]) == 0
    times = Dataset.load(tmp_path / "data").interactions["timestamp"]
    assert list(times) == [pd.Timestamp("2024-05-01 08:00", tz="UTC"), pd.Timestamp("2024-05-01 09:00", tz="UTC")]


def test_missing_column_and_bad_row_are_one_line_errors(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("who,what,when\nalice,a,1700000000\nbob,b,soon\n")
    assert main(["import-log", str(log), "--out", str(tmp_path / "d1"), "--user", "user", "--track", "what",
                 "--time", "when"]) == 1
    said = capsys.readouterr().out.strip()
    assert said == f'error: {log}, column "user": no such column (given as --user; columns present: who, what, when)'
    assert main(["import-log", str(log), "--out", str(tmp_path / "d2"), "--user", "who", "--track", "what",
                 "--time", "when", "--time-format", "unix"]) == 1
    said = capsys.readouterr().out.strip()
    assert said == f"error: {log}, row 2, column \"when\": not a unix time in seconds: 'soon'"

"""Importing a listening log with the user's own column names: known answers on tiny logs."""

from __future__ import annotations

import pandas as pd
import pytest

from tunespace.data.dataset import Dataset
from tunespace.data.log_import import LogImportError, import_log
from tunespace.errors import DataValidationError

UNIX_LOG = "listener,song,played_at,plays\nalice,0042,1700000000,3\nbob,0042,1700003600,1\nalice,t7,0,2\n"
ISO_LOG = ("listener,song,played_at\nalice,0042,2024-03-01T10:00:00Z\nbob,t7,2024-03-01T12:30:00+02:00\n"
           "bob,0042,2024-03-02\n")


def write(tmp_path, text: str, name: str = "log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unix_seconds_with_weights(tmp_path):
    dataset = import_log(write(tmp_path, UNIX_LOG), tmp_path / "data", user="listener", track="song",
                         time="played_at", weight="plays", time_format="unix")
    frame = dataset.interactions
    assert list(frame["user_id"]) == ["alice", "bob", "alice"]
    assert list(frame["track_id"]) == ["0042", "0042", "t7"]  # ids keep their leading zeros
    assert list(frame["timestamp"]) == [pd.Timestamp("2023-11-14 22:13:20", tz="UTC"),
                                        pd.Timestamp("2023-11-14 23:13:20", tz="UTC"),
                                        pd.Timestamp("1970-01-01", tz="UTC")]
    assert list(frame["weight"]) == [3.0, 1.0, 2.0]
    assert list(dataset.tracks["track_id"]) == ["0042", "t7"]
    assert Dataset.load(tmp_path / "data").summary() == {"users": 2, "tracks": 2, "interactions": 3,
                                                         "playlists": 0}


def test_iso_times_default_weight_and_auto_format(tmp_path):
    for time_format in ("iso", "auto"):
        dataset = import_log(write(tmp_path, ISO_LOG), tmp_path / time_format, user="listener", track="song",
                             time="played_at", time_format=time_format)
        assert list(dataset.interactions["timestamp"]) == [pd.Timestamp("2024-03-01 10:00", tz="UTC"),
                                                           pd.Timestamp("2024-03-01 10:30", tz="UTC"),
                                                           pd.Timestamp("2024-03-02 00:00", tz="UTC")]
        assert list(dataset.interactions["weight"]) == [1.0, 1.0, 1.0]


def test_parquet_log_and_given_track_table(tmp_path):
    pd.DataFrame({"u": ["a", "b"], "t": ["x", "y"], "when": [1_000, 2_000]}).to_parquet(tmp_path / "log.parquet")
    pd.DataFrame({"track_id": ["x", "y", "z"], "title": ["X", "Y", "Z"]}).to_parquet(tmp_path / "tracks.parquet")
    dataset = import_log(tmp_path / "log.parquet", tmp_path / "data", user="u", track="t", time="when",
                         tracks=tmp_path / "tracks.parquet")
    assert list(dataset.tracks["title"]) == ["X", "Y", "Z"]
    assert list(dataset.interactions["timestamp"]) == [pd.Timestamp(1_000, unit="s", tz="UTC"),
                                                       pd.Timestamp(2_000, unit="s", tz="UTC")]


def test_missing_column_names_it_and_the_file(tmp_path):
    log = write(tmp_path, UNIX_LOG)
    with pytest.raises(DataValidationError) as caught:
        import_log(log, tmp_path / "data", user="user", track="song", time="played_at")
    message = str(caught.value)
    assert message.startswith(f'{log}, column "user": no such column (given as --user')
    assert "\n" not in message and not (tmp_path / "data").exists()


def test_bad_timestamp_names_the_row_and_column(tmp_path):
    log = write(tmp_path, "listener,song,played_at\nalice,a,1700000000\nbob,b,yesterday\n")
    with pytest.raises(DataValidationError, match=r'row 2, column "played_at": not a unix time.*yesterday'):
        import_log(log, tmp_path / "data", user="listener", track="song", time="played_at", time_format="unix")
    iso = write(tmp_path, "listener,song,played_at\nalice,a,2024-01-01\nbob,b,2024-01-02\ncarol,c,31/02/2024\n",
                "iso.csv")
    with pytest.raises(DataValidationError, match=r'iso.csv, row 3, column "played_at": not an ISO-8601'):
        import_log(iso, tmp_path / "data", user="listener", track="song", time="played_at", time_format="iso")


def test_data_model_errors_name_the_log_column(tmp_path):
    log = write(tmp_path, "listener,song,played_at,plays\nalice,a,1,2\nbob,b,2,-1\n")
    with pytest.raises(DataValidationError, match=r'row 2, column "plays": negative value -1'):
        import_log(log, tmp_path / "data", user="listener", track="song", time="played_at", weight="plays")
    pd.DataFrame({"track_id": ["a"]}).to_parquet(tmp_path / "tracks.parquet")
    ok = write(tmp_path, "listener,song,played_at\nalice,a,1\nbob,b,2\n", "ok.csv")
    with pytest.raises(DataValidationError, match=r'ok.csv, row 2, column "song": unknown track'):
        import_log(ok, tmp_path / "data", user="listener", track="song", time="played_at",
                   tracks=tmp_path / "tracks.parquet")


def test_refuses_other_files_and_a_used_folder(tmp_path):
    with pytest.raises(LogImportError, match="not a .csv or .parquet"):
        import_log(write(tmp_path, UNIX_LOG, "log.txt"), tmp_path / "d", user="listener", track="song", time="x")
    import_log(write(tmp_path, UNIX_LOG), tmp_path / "d", user="listener", track="song", time="played_at")
    with pytest.raises(LogImportError, match="already holds interactions.parquet"):
        import_log(write(tmp_path, UNIX_LOG), tmp_path / "d", user="listener", track="song", time="played_at")

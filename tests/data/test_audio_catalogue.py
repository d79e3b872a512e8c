"""A catalogue from a plain folder of audio files: ids, paths, durations, tags, and the files it could not read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile

from tunespace.data.audio_catalogue import CatalogueError, build_audio_catalogue
from tunespace.data.dataset import Dataset

RATE = 16000


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def music(tmp_path):
    """rock/a.wav (1.0 s, tagged), rock/b.flac (0.5 s, tagged), jazz/live/c.wav (2.0 s, untagged), a corrupt
    wav and a text file."""
    folder = tmp_path / "music"
    (folder / "rock").mkdir(parents=True)
    (folder / "jazz" / "live").mkdir(parents=True)
    for name, seconds, tags in (("rock/a.wav", 1.0, {"title": "Song A", "artist": "Band", "album": "First",
                                                      "genre": "Rock"}),
                                ("rock/b.flac", 0.5, {"title": "Song B", "artist": "Band"}),
                                ("jazz/live/c.wav", 2.0, {})):
        with soundfile.SoundFile(folder / name, "w", RATE, 1) as handle:
            for key, value in tags.items():
                setattr(handle, key, value)
            handle.write(_tone(seconds, 220.0))
    (folder / "rock" / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (folder / "notes.txt").write_text("not music\n")
    (folder / ".hidden.wav").write_text("ignored\n")
    return folder


def test_a_folder_becomes_a_valid_tracks_table_with_skipped_files_listed(music, tmp_path):
    data = tmp_path / "data"
    report = build_audio_catalogue(music, data)
    assert (report.tracks, report.skipped) == (3, 2) and report.seconds == pytest.approx(3.5)
    tracks = Dataset.load_tracks(data)  # valid for the data model
    assert list(tracks["track_id"]) == ["jazz/live/c.wav", "rock/a.wav", "rock/b.flac"]
    assert list(tracks["audio_path"]) == ["../music/jazz/live/c.wav", "../music/rock/a.wav", "../music/rock/b.flac"]
    assert all((data / p).is_file() for p in tracks["audio_path"])  # audio_path resolves against DATA
    assert list(tracks["duration"]) == [2.0, 1.0, 0.5]
    a = tracks.set_index("track_id").loc["rock/a.wav"]
    assert (a["title"], a["artist"], a["album"], a["genre"]) == ("Song A", "Band", "First", "Rock")
    c = tracks.set_index("track_id").loc["jazz/live/c.wav"]
    assert pd.isna(c["title"]) and pd.isna(c["artist"])
    skipped = pd.read_parquet(data / "skipped.parquet").set_index("path")
    assert list(skipped.index) == ["notes.txt", "rock/broken.wav"]
    assert set(skipped["kind"]) == {"not audio"}


def test_a_data_folder_inside_the_audio_folder_is_not_scanned(music):
    build_audio_catalogue(music, music / "data")
    report = build_audio_catalogue(music, music / "data")  # second run: its own parquet files are not "not audio"
    assert (report.tracks, report.skipped) == (3, 2)
    assert pd.read_parquet(music / "data" / "tracks.parquet")["audio_path"].iloc[0] == "../jazz/live/c.wav"


def test_the_catalogue_can_be_embedded(music, tmp_path):
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.encoders.extract import ExtractionConfig, Extractor

    data = tmp_path / "data"
    build_audio_catalogue(music, data)
    report = Extractor(ExtractionConfig("mfcc", min_seconds=1.0)).run(Dataset.load_tracks(data), data,
                                                                        tmp_path / "emb")
    assert (report.embedded, report.skipped) == (2, 1)  # b.flac is 0.5 s
    assert list(ItemEmbeddings.load(tmp_path / "emb").ids) == ["jazz/live/c.wav", "rock/a.wav"]


def test_the_cli_command_and_its_one_line_errors(music, tmp_path, capsys):
    from tunespace.cli.main import main

    assert main(["catalogue", str(music), "--out", str(tmp_path / "data")]) == 0
    said = capsys.readouterr().out
    assert "3 tracks" in said and "2 files skipped" in said
    assert (tmp_path / "data" / "tracks.parquet").exists()
    assert main(["catalogue", str(tmp_path / "nowhere"), "--out", str(tmp_path / "data")]) == 1
    said = capsys.readouterr().out
    assert "nowhere: not a folder of audio files" in said and said.count("\n") == 1
    with pytest.raises(CatalogueError, match="not a folder of audio files"):
        build_audio_catalogue(music / "notes.txt", tmp_path / "other")


def test_tags_of_an_m4a_come_through_pyav(tmp_path):
    from tests.audio.test_decode import tone, write_m4a

    folder = tmp_path / "music"
    folder.mkdir()
    write_m4a(folder / "tagged.m4a", tone(1.0), 48000, {"title": "Air", "artist": "Fiddler", "genre": "Folk"})
    report = build_audio_catalogue(folder, tmp_path / "data", decoder="auto")
    tracks = pd.read_parquet(report.tracks_path)
    assert report.tracks == 1 and report.skipped == 0
    row = tracks.iloc[0]
    assert (row["track_id"], row["title"], row["artist"], row["genre"]) == ("tagged.m4a", "Air", "Fiddler", "Folk")
    assert row["duration"] == pytest.approx(1.0, abs=0.05)
    skipped = build_audio_catalogue(folder, tmp_path / "data2", decoder="soundfile")
    assert skipped.tracks == 0 and skipped.skipped == 1  # libsndfile cannot read AAC

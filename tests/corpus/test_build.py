"""The corpus builder end to end on a few real tunes: a valid data model, audio, texts, listeners, a cache."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tunespace.audio.decode import load_audio
from tunespace.cli.main import main
from tunespace.corpus.build import CorpusConfig, CorpusError, build_corpus, select_tunes
from tunespace.corpus.listeners import ListenerConfig, ListenerConfigError, simulate_listeners
from tunespace.corpus.tunes import read_tunes
from tunespace.data.dataset import Dataset

pytest.importorskip("tinysoundfont")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    report = build_corpus(out, CorpusConfig(size="small", tracks=24, listeners=40, workers=2, max_seconds=8.0))
    return out, report


def test_select_keeps_every_collection_and_is_seeded():
    tunes = read_tunes()
    first, again = select_tunes(tunes, 30, seed=3), select_tunes(tunes, 30, seed=3)
    assert first["tune_id"].tolist() == again["tune_id"].tolist()
    assert set(first["collection"]) == set(tunes["collection"])
    assert select_tunes(tunes, 30, seed=4)["tune_id"].tolist() != first["tune_id"].tolist()


def test_builds_a_valid_dataset_with_audio_midi_and_abc(built):
    out, report = built
    dataset = Dataset.load(out)  # validates every table and the references between them
    tracks = dataset.tracks
    assert report["tracks"] == len(tracks) == 24
    for column in ("audio_path", "midi_path", "abc_path"):
        assert all((out / path).exists() for path in tracks[column])
    audio = load_audio(out / tracks["audio_path"].iloc[0], 16000)
    assert 0.5 < len(audio) / 16000 <= 8.0 + 1e-6
    assert np.abs(audio).max() > 0.1
    assert set(tracks["instrument_family"]) <= {"piano", "strings", "winds", "plucked", "organ", "accordion"}
    assert tracks["duration"].between(0.5, 8.0 + 1e-6).all()
    assert {"note_density", "mean_abs_interval", "metadata_text", "tags"} <= set(tracks.columns)
    assert dataset.interactions["track_id"].isin(tracks["track_id"]).all()
    assert dataset.playlists is not None and len(dataset.playlists) > 0


def test_texts_in_three_languages_and_tags(built):
    out, _ = built
    captions = pd.read_parquet(out / "captions.parquet")
    assert set(captions["language"]) == {"en", "de", "zh"}
    assert captions.groupby("track_id").size().eq(9).all()
    tracks = pd.read_parquet(out / "tracks.parquet")
    assert tracks["tags"].str.contains("family:").all()


def test_rebuild_is_cached_and_identical(built, tmp_path):
    out, _ = built
    before = pd.read_parquet(out / "tracks.parquet")
    report = build_corpus(out, CorpusConfig(size="small", tracks=24, listeners=40, workers=2, max_seconds=8.0))
    assert report["rendered_now"] == 0
    pd.testing.assert_frame_equal(before, pd.read_parquet(out / "tracks.parquet"))
    saved = json.loads((out / "build.json").read_text())
    assert saved["tracks"] == 24 and "render_s" in saved["timings"]


def test_skipped_tunes_are_recorded(built):
    out, _ = built
    skipped = pd.read_parquet(out / "skipped.parquet")
    assert {"reason", "stage"} <= set(skipped.columns)
    assert skipped["reason"].notna().all()


def test_cli_builds_a_corpus(tmp_path):
    assert main(["corpus", "build", "--tracks", "6", "--listeners", "10", "--out", str(tmp_path / "c")]) == 0
    assert len(pd.read_parquet(tmp_path / "c" / "tracks.parquet")) == 6


def test_playlist_sessions_say_who_made_each_playlist_and_when(built):
    out, _ = built
    sessions = pd.read_parquet(out / "playlist_sessions.parquet")
    playlists = pd.read_parquet(out / "playlists.parquet")
    assert set(sessions["playlist_id"]) == set(playlists["playlist_id"])
    assert sessions["playlist_id"].is_unique and str(sessions["timestamp"].dt.tz) == "UTC"
    interactions = pd.read_parquet(out / "interactions.parquet")
    assert set(sessions["user_id"]) <= set(interactions["user_id"])


def test_every_track_with_a_dance_type_or_genre_has_a_style_and_no_favourite_is_unknown(built):
    """The Essen tunes (genre, no dance type) take their genre as style; the books without an origin their
    collection as region; and no user favours the "unknown" that is left."""
    out, _ = built
    tracks = pd.read_parquet(out / "tracks.parquet")
    catalogue = simulate_listeners(tracks, ListenerConfig(users=40, seed=0)).catalogue.set_index("track_id")
    style = catalogue.loc[tracks["track_id"], "style"].to_numpy()
    described = (tracks["dance_type"].fillna("") != "") | (tracks["genre"].fillna("") != "")
    assert (tracks["collection"] == "essen").any() and (tracks.loc[described, "genre"] != "").any()
    assert not pd.Series(style[described.to_numpy()]).isin(["", "unknown"]).any()
    expected = tracks["dance_type"].where(tracks["dance_type"].fillna("") != "", tracks["genre"])
    assert (style[described.to_numpy()] == expected[described].to_numpy()).all()
    assert not catalogue["region"].isin(["", "unknown"]).any()
    users = pd.read_parquet(out / "users.parquet")
    for attribute in ("style", "region", "mode", "tempo_class", "instrument_family"):
        assert not users[f"{attribute}_favourites"].explode().isin(["", "unknown"]).any(), attribute


def test_listener_parameters_are_checked_cast_and_recorded(built):
    out, _ = built
    saved = json.loads((out / "build.json").read_text())
    assert saved["listener_config"]["users"] == 40 and saved["listener_config"]["semantic_weight"] == 1.5
    config = CorpusConfig(size="small", listeners=7, seed=2, listener={"favoured_values": 2.0, "temperature": 2})
    assert config.listener == {"favoured_values": 2, "temperature": 2.0}
    assert config.listener_config() == ListenerConfig(users=7, start="2024-01-01", seed=2, favoured_values=2,
                                                      temperature=2.0)
    for bad in ({"users": 5}, {"start": 1}, {"nonsense": 1}, {"favoured_values": 1.5}, {"temperature": "hot"},
                {"favoured_values": float("inf")}):
        with pytest.raises(CorpusError):
            CorpusConfig(listener=bad)
    with pytest.raises(ListenerConfigError):
        CorpusConfig(listener={"temperature": 0.0})

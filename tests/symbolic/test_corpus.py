"""A corpus folder's patches: shared files read once, failures recorded with their reason, statistics by hand."""

from __future__ import annotations

import pandas as pd
import pytest

mido = pytest.importorskip("mido")

from tunespace.errors import DatasetNotFoundError, DataValidationError
from tunespace.symbolic import PatchConfig
from tunespace.symbolic.corpus import patch_statistics, read_corpus_patches


def write_midi(path, n_notes: int) -> None:
    track = mido.MidiTrack()
    for i in range(n_notes):
        track.append(mido.Message("note_on", note=60 + i, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60 + i, velocity=0, time=120))
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(path)


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "abc").mkdir()
    (tmp_path / "midi").mkdir()
    (tmp_path / "abc" / "good.abc").write_text("X:1\nT:Good\nM:2/4\nL:1/8\nK:D\nd2e2|f4|]\n", encoding="utf-8")
    (tmp_path / "abc" / "nokey.abc").write_text("X:2\nT:No key\nabc|\n", encoding="utf-8")
    write_midi(tmp_path / "midi" / "good.mid", 2)
    (tmp_path / "midi" / "broken.mid").write_bytes(b"MThd garbage")
    pd.DataFrame({
        "track_id": ["a", "b", "c", "d"],
        "abc_path": ["abc/good.abc", "abc/good.abc", "abc/nokey.abc", None],
        "midi_path": ["midi/good.mid", "midi/broken.mid", "midi/good.mid", "midi/absent.mid"],
    }).to_parquet(tmp_path / "tracks.parquet")
    return tmp_path


def test_patches_per_track_and_failures_with_reasons(corpus):
    found = read_corpus_patches(corpus)
    assert sorted(found.abc) == ["a", "b"] and found.abc["a"] == found.abc["b"]
    assert found.abc["a"] == ["M:2/4\n", "L:1/8\n", "K:D\n", "[V:1]d2e2|\n", "[V:1]f4|]\n"]
    assert sorted(found.midi) == ["a", "c"] and len(found.midi["a"]) == 1 + 4 + 1  # header, notes, end of track
    failures = found.failures.set_index(["track_id", "format"])["reason"]
    assert sorted(failures.index) == [("b", "midi"), ("c", "abc"), ("d", "abc"), ("d", "midi")]
    assert failures[("c", "abc")].startswith("AbcError: no K: field")
    assert failures[("d", "abc")] == "no abc_path"
    assert failures[("b", "midi")].startswith("MidiReadError")
    assert "absent.mid" in failures[("d", "midi")]


def test_a_format_left_out_is_not_read(corpus):
    abc_only = read_corpus_patches(corpus, formats=("abc",))
    assert abc_only.abc == read_corpus_patches(corpus).abc and abc_only.midi == {}
    assert set(abc_only.failures["format"]) == {"abc"}  # the broken MIDI files were never opened


def test_a_folder_without_tracks_or_columns_is_a_named_error(tmp_path):
    with pytest.raises(DatasetNotFoundError):
        read_corpus_patches(tmp_path)
    pd.DataFrame({"track_id": ["a"]}).to_parquet(tmp_path / "tracks.parquet")
    with pytest.raises(DataValidationError, match="abc_path"):
        read_corpus_patches(tmp_path)


def test_patch_statistics_by_hand():
    pieces = {"short": ["ab", "cd"], "long": ["a" * 10, "b", "c", "d"], "mid": ["x", "y", "z"]}
    stats = patch_statistics(pieces, PatchConfig(patch_length=6, max_patches=5))
    assert (stats["pieces"], stats["patches_median"], stats["patches_max"]) == (3, 3, 4)
    assert stats["cut_share"] == pytest.approx(1 / 3)  # room for 3 patches between the framing ones: "long" loses one
    assert stats["clipped_piece_share"] == pytest.approx(1 / 3)  # "a" * 10 needs 12 > 6
    assert stats["clipped_patch_share"] == pytest.approx(1 / (4 + 5 + 5))

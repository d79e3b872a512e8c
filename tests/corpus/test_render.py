"""Rendering ABC to performances: timing follows the tempo, the instrument changes the sound, output is repeatable,
and the cache makes a rerun free."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import symusic

from tunespace.corpus.render import (
    INSTRUMENT_FAMILIES,
    PEAK,
    SOUNDFONT_LICENCES,
    TAIL_SECONDS,
    RenderError,
    RenderSpec,
    cache_key,
    find_soundfont,
    render,
    render_many,
)
from tunespace.errors import TunespaceError

EIGHT_QUARTERS = "X:1\nT:Scale\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|\n"
KNOWN_STATS = "X:2\nT:Known\nM:4/4\nL:1/4\nK:C\nCEDG|c2G2|\n"
LONG = "X:3\nT:Long\nM:4/4\nL:1/4\nK:G\nGABc|dcBA|GABc|dcBA|\n"


@pytest.fixture(scope="module")
def soundfont() -> Path:
    return find_soundfont()


def spec(abc: str = EIGHT_QUARTERS, **changes) -> RenderSpec:
    return dataclasses.replace(RenderSpec(track_id="t1", abc=abc, program=73, tempo_bpm=120.0, seed=7), **changes)


def centroid(audio: np.ndarray, sample_rate: int) -> float:
    power = np.abs(np.fft.rfft(audio)) ** 2
    return float((power * np.fft.rfftfreq(len(audio), 1 / sample_rate)).sum() / power.sum())


def test_instrument_families_name_the_documented_programs():
    names = {name: program for family in INSTRUMENT_FAMILIES.values() for program, name in family}
    assert {"piano", "strings", "winds", "plucked", "organ", "accordion"} <= set(INSTRUMENT_FAMILIES)
    assert names["flute"] == 73 and names["cello"] == 42 and names["banjo"] == 105 and names["accordion"] == 21
    assert all(0 <= program <= 127 for program in names.values())


def test_soundfont_exists_and_its_licence_is_stated(soundfont):
    assert soundfont.is_file()
    assert soundfont.name in SOUNDFONT_LICENCES


def test_render_is_mono_float32_at_the_sample_rate_with_a_normalised_peak(soundfont):
    rendered = render(spec(sample_rate=22050), soundfont)
    assert rendered.audio.dtype == np.float32 and rendered.audio.ndim == 1
    assert rendered.seconds == pytest.approx(len(rendered.audio) / 22050)
    assert np.abs(rendered.audio).max() == pytest.approx(PEAK, rel=1e-4)


def test_duration_follows_the_tempo_and_ignores_the_scores_own(soundfont):
    at_120 = render(spec(), soundfont).seconds
    assert at_120 == pytest.approx(4.0 + TAIL_SECONDS, abs=0.1)  # eight quarters at 120 bpm, then the tail
    at_60 = render(spec(tempo_bpm=60.0), soundfont).seconds
    assert at_60 - TAIL_SECONDS == pytest.approx(2 * (at_120 - TAIL_SECONDS), abs=0.1)
    stated = EIGHT_QUARTERS.replace("K:C", "Q:1/4=40\nK:C")
    assert render(spec(stated), soundfont).seconds == pytest.approx(at_120, abs=0.05)


def test_the_instrument_changes_the_spectrum(soundfont):
    flute = render(spec(program=73), soundfont).audio
    oboe = render(spec(program=68), soundfont).audio
    assert len(flute) == len(oboe) and not np.allclose(flute, oboe)
    assert centroid(oboe, 16000) > 1.3 * centroid(flute, 16000)  # a reed is brighter than a flute


def test_same_spec_gives_identical_output_even_after_other_renders(soundfont):
    first = render(spec(), soundfont)
    render(spec(LONG, program=42, seed=1), soundfont)
    again = render(spec(), soundfont)
    assert np.array_equal(first.audio, again.audio) and first.midi == again.midi and first.notes == again.notes


def test_a_different_seed_humanises_differently(soundfont):
    one, other = (symusic.Score.from_midi(render(spec(seed=seed), soundfont).midi) for seed in (1, 2))
    notes_one, notes_other = one.tracks[0].notes.numpy(), other.tracks[0].notes.numpy()
    assert np.array_equal(notes_one["pitch"], notes_other["pitch"])
    assert not np.array_equal(notes_one["velocity"], notes_other["velocity"])
    assert not np.array_equal(notes_one["time"], notes_other["time"])
    onset_shift = np.abs(notes_one["time"] - notes_other["time"]) / one.ticks_per_quarter * 0.5  # seconds at 120
    assert onset_shift.max() < 0.04  # a few milliseconds each, never a different rhythm


def test_midi_is_the_performance_at_the_spec_tempo_and_program(soundfont):
    two_voices = "X:4\nM:4/4\nL:1/4\nK:C\nV:1\nCDEF|\nV:2\nC,D,E,F,|\n"
    score = symusic.Score.from_midi(render(spec(two_voices, program=42, tempo_bpm=90.0), soundfont).midi)
    assert [track.program for track in score.tracks] == [42, 42]
    assert score.note_num() == 8
    assert score.tempos[0].qpm == pytest.approx(90.0, abs=0.01)


def test_note_stats_by_hand(soundfont):
    # C E D G | c2 G2: pitches 60 64 62 67 72 67, intervals +4 -2 +5 +5 -5, four quarters and two halves in 4 s
    stats = render(spec(KNOWN_STATS), soundfont).notes
    assert stats.pitch_mean == pytest.approx(392 / 6)
    assert stats.pitch_range == 12
    assert stats.mean_abs_interval == pytest.approx(21 / 5)
    assert stats.ascending_share == pytest.approx(3 / 5)
    assert stats.rhythmic_variety == pytest.approx(-(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3)))
    assert stats.note_density == pytest.approx(6 / 4.0, rel=0.05)


def test_the_melody_of_a_chord_is_its_top_note(soundfont):
    stats = render(spec("X:5\nM:4/4\nL:1/4\nK:C\n[CE]DG[CEc]|\n"), soundfont).notes  # melody E D G c
    assert stats.mean_abs_interval == pytest.approx((2 + 5 + 5) / 3)
    assert stats.ascending_share == pytest.approx(2 / 3)
    assert stats.rhythmic_variety == 0.0


def test_crop_at_max_seconds_fades_out_and_drops_later_notes(soundfont):
    rendered = render(spec(LONG, tempo_bpm=60.0, max_seconds=4.5), soundfont)  # 16 s of notes, one a second
    assert rendered.seconds == pytest.approx(4.5)
    assert np.abs(rendered.audio[-50:]).max() < 0.01
    score = symusic.Score.from_midi(rendered.midi).to("second")
    ends = [note.time + note.duration for note in score.tracks[0].notes]
    assert max(ends) <= 4.5 + 1e-3 and len(ends) == 5
    short = render(spec(max_seconds=4.2), soundfont)  # the tail, too, stops at max_seconds
    assert short.seconds <= 4.2 + 1e-9


@pytest.mark.parametrize("abc, reason", [
    ("this is not ABC at all", "X:"),
    ("X:1\nT:broken\n]]]] @@@\n", "parse"),
    ("X:1\nT:only rests\nM:4/4\nL:1/4\nK:C\nzzzz|\n", "no notes"),
])
def test_render_error_says_why(soundfont, abc, reason):
    with pytest.raises(RenderError, match=reason) as caught:
        render(spec(abc), soundfont)
    assert isinstance(caught.value, TunespaceError) and caught.value.reason


def test_cache_key_changes_with_every_field(soundfont):
    base = spec()
    keys = {cache_key(base, soundfont)}
    for change in ({"track_id": "t2"}, {"abc": LONG}, {"program": 42}, {"tempo_bpm": 121.0}, {"seed": 8},
                   {"sample_rate": 22050}, {"max_seconds": 30.0}):
        keys.add(cache_key(dataclasses.replace(base, **change), soundfont))
    assert len(keys) == 8
    assert cache_key(spec(), soundfont) == cache_key(base, soundfont)


def corpus() -> list[RenderSpec]:
    return [spec(track_id="a"), spec(KNOWN_STATS, track_id="b", program=42, tempo_bpm=90.0),
            spec(LONG, track_id="c", program=21, seed=3, max_seconds=3.0)]


def test_render_many_writes_files_then_reuses_them(soundfont, tmp_path):
    finished: list[int] = []
    rendered, skipped = render_many(corpus(), tmp_path, soundfont, workers=1, progress=finished.append)
    assert skipped.empty and sum(finished) == 3
    assert list(rendered.track_id) == ["a", "b", "c"] and not rendered.cached.any()
    for row in rendered.itertuples():
        audio, sample_rate = soundfile.read(tmp_path / row.audio_path, dtype="float32")
        assert sample_rate == 16000 and audio.ndim == 1
        assert len(audio) / sample_rate == pytest.approx(row.seconds)
        assert symusic.Score.from_midi((tmp_path / row.midi_path).read_bytes()).tracks[0].program == row.program
    assert rendered.loc[2, "seconds"] == pytest.approx(3.0)
    mtimes = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}

    finished.clear()
    again, skipped = render_many(corpus(), tmp_path, soundfont, workers=1, progress=finished.append)
    assert skipped.empty and again.cached.all() and sum(finished) == 3
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()} == mtimes
    columns = [column for column in rendered.columns if column != "cached"]
    assert again[columns].equals(rendered[columns])


def test_a_bad_tune_is_skipped_with_its_reason(soundfont, tmp_path):
    specs = [*corpus()[:2], spec("not ABC", track_id="bad"), corpus()[2]]
    rendered, skipped = render_many(specs, tmp_path, soundfont, workers=1)
    assert list(rendered.track_id) == ["a", "b", "c"]
    assert list(skipped.track_id) == ["bad"] and "X:" in skipped.reason.iloc[0]


def test_two_workers_give_what_one_gives(soundfont, tmp_path):
    specs = [*corpus(), spec("not ABC", track_id="bad")]
    one, one_skipped = render_many(specs, tmp_path / "one", soundfont, workers=1)
    finished: list[int] = []
    two, two_skipped = render_many(specs, tmp_path / "two", soundfont, workers=2, progress=finished.append)
    assert sum(finished) == 4
    assert two.equals(one) and two_skipped.equals(one_skipped)
    for row in one.itertuples():
        for column in ("audio_path", "midi_path"):
            assert (tmp_path / "one" / getattr(row, column)).read_bytes() == \
                (tmp_path / "two" / getattr(row, column)).read_bytes()


def test_a_spec_given_twice_is_rendered_once_and_counted_twice(soundfont, tmp_path):
    finished: list[int] = []
    rendered, _ = render_many([spec(), spec()], tmp_path, soundfont, workers=1, progress=finished.append)
    assert len(rendered) == 2 and rendered.audio_path.nunique() == 1 and sum(finished) == 2
    assert len(list((tmp_path / "audio").glob("*.flac"))) == 1

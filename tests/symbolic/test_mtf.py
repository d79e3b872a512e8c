"""MTF: MIDI -> text -> MIDI is lossless; the encoder's form merges tracks and leaves free text out."""

from __future__ import annotations

import io

import pytest

mido = pytest.importorskip("mido")

from tunespace.symbolic import MidiReadError, MtfError, midi_patches, midi_to_mtf, mtf_to_midi
from tunespace.symbolic.mtf import encoder_mtf, message_line, parse_message


def midi_bytes(midi) -> bytes:
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def notes(midi) -> list[tuple[int, int, int, int, int]]:
    """(pitch, start tick, end tick, velocity, channel) of every note, in order, per track."""
    found = []
    for track in midi.tracks:
        now, sounding = 0, {}
        for message in track:
            now += message.time
            if message.type == "note_on" and message.velocity > 0:
                sounding.setdefault((message.channel, message.note), []).append((now, message.velocity))
            elif message.type in ("note_off", "note_on"):
                start, velocity = sounding[(message.channel, message.note)].pop(0)
                found.append((message.note, start, now, velocity, message.channel))
    return sorted(found)


def handmade_midi():
    """Two tracks with every kind of message a score file carries, names with spaces and accents included."""
    midi = mido.MidiFile(type=1, ticks_per_beat=384)
    meta = mido.MidiTrack([
        mido.MetaMessage("track_name", name="Conductor track", time=0),
        mido.MetaMessage("set_tempo", tempo=600000, time=0),
        mido.MetaMessage("time_signature", numerator=6, denominator=8, time=0),
        mido.MetaMessage("key_signature", key="F#m", time=0),
        mido.MetaMessage("marker", text="", time=384),
        mido.MetaMessage("text", text="Café \\ tab\there", time=0),
        mido.MetaMessage("sequencer_specific", data=(0, 33, 9), time=5),
        mido.MetaMessage("end_of_track", time=10),
    ])
    music = mido.MidiTrack([
        mido.MetaMessage("track_name", name="Ballroom Waltz", time=0),
        mido.Message("program_change", channel=2, program=40, time=0),
        mido.Message("control_change", channel=2, control=7, value=100, time=0),
        mido.Message("sysex", data=(67, 16, 76), time=0),
        mido.Message("note_on", channel=2, note=60, velocity=90, time=0),
        mido.Message("note_on", channel=2, note=64, velocity=70, time=96),
        mido.Message("pitchwheel", channel=2, pitch=-512, time=10),
        mido.Message("note_off", channel=2, note=60, velocity=0, time=86),
        mido.Message("note_on", channel=2, note=64, velocity=0, time=192),
        mido.Message("note_on", channel=9, note=42, velocity=127, time=0),
        mido.Message("note_off", channel=9, note=42, velocity=64, time=48),
        mido.MetaMessage("end_of_track", time=0),
    ])
    midi.tracks.extend([meta, music])
    return midi


def test_round_trip_of_a_handmade_file_keeps_every_message_and_every_byte():
    original = handmade_midi()
    data = midi_bytes(original)
    text = midi_to_mtf(data)
    back = mtf_to_midi(text)
    assert (back.type, back.ticks_per_beat) == (1, 384)
    read = mido.MidiFile(file=io.BytesIO(data))
    assert [list(track) for track in back.tracks] == [list(track) for track in read.tracks]
    assert notes(back) == notes(original) == [(42, 384, 432, 127, 9), (60, 0, 192, 90, 2), (64, 96, 384, 70, 2)]
    assert midi_bytes(back) == data


def test_round_trip_of_a_file_made_from_abc_by_symusic():
    symusic = pytest.importorskip("symusic")
    abc = "X:1\nT:Lanigan's Ball\nM:6/8\nL:1/8\nK:Em\nV:1\nEDE GFG|A2B c2d|\nV:2\nE,3 G,3|A,3 C3|\n"
    data = bytes(symusic.Score.from_abc(abc).dumps_midi())
    back = mtf_to_midi(midi_to_mtf(data))
    assert midi_bytes(back) == data
    expected = symusic.Score.from_midi(data)
    got = symusic.Score.from_midi(midi_bytes(back))
    assert len(expected.tracks) == len(got.tracks) == 2
    for mine, theirs in zip(got.tracks, expected.tracks):
        assert mine.notes.numpy()["pitch"].tolist() == theirs.notes.numpy()["pitch"].tolist()
        for key in ("time", "duration", "velocity"):
            assert mine.notes.numpy()[key].tolist() == theirs.notes.numpy()[key].tolist()
    assert sum(len(track.notes) for track in got.tracks) >= 10
    assert notes(back) == notes(mido.MidiFile(file=io.BytesIO(data)))
    # symusic names the first track after the title; the encoder never sees it
    assert "Lanigan" in midi_to_mtf(data)
    assert not any("Lanigan" in patch for patch in midi_patches(data))


def test_lines_read_as_clamp2_writes_them():
    midi = mido.MidiFile(file=io.BytesIO(midi_bytes(handmade_midi())))
    lines = midi_to_mtf(midi).split("\n")
    assert lines[:4] == ["ticks_per_beat 384", "midi_type 1", "track 0", "track_name Conductor\\x20track 0"]
    assert "note_on 0 60 90 2" in lines  # type, delta time, note, velocity, channel
    assert "set_tempo 600000 0" in lines  # meta messages: values, then the time
    assert "sequencer_specific 0,33,9 5" in lines
    assert "marker  384" in lines  # an empty text stays an empty field
    built = mido.Message("note_on", channel=2, note=60, velocity=90)  # built in code: fields in another order
    assert message_line(built) == "note_on 0 60 90 2"
    assert parse_message(message_line(built)) == built


def test_the_encoder_form_merges_tracks_and_drops_free_text_keeping_onsets():
    lines = encoder_mtf(handmade_midi()).split("\n")
    assert lines[0] == "ticks_per_beat 384"
    assert not [line for line in lines if line.split(" ")[0] in ("track_name", "text", "marker", "sysex",
                                                                "sequencer_specific", "track", "midi_type")]
    onsets, now = {}, 0
    for line in lines[1:]:
        message = parse_message(line)
        now += message.time
        onsets.setdefault(message.type, []).append(now)
    assert onsets["note_on"] == [0, 96, 384, 384]  # the merged track in absolute time
    assert onsets["pitchwheel"] == [106]


def test_midi_patches_are_the_encoder_lines_and_can_be_packed_as_clamp2_packs_them():
    data = midi_bytes(handmade_midi())
    patches = midi_patches(data)
    assert "".join(patches) == encoder_mtf(data)
    assert all(patch.endswith("\n") for patch in patches[:-1])
    packed = midi_patches(data, pack_to=40)
    assert "note_on 0 60 90 2\t96 64 70 2\n" in packed
    assert all(len(patch) <= 38 or "\t" not in patch for patch in packed)
    assert len(packed) < len(patches)


def test_clamp2_text_without_track_lines_reads_as_one_track():
    midi = mtf_to_midi("ticks_per_beat 96\nnote_on 0 60 64 0\nnote_off 96 60 0 0\nend_of_track 0")
    assert midi.type == 0 and len(midi.tracks) == 1
    assert notes(midi) == [(60, 0, 96, 64, 0)]


@pytest.mark.parametrize("text, message", [
    ("note_on 0 60 64 0", "line 1"),
    ("ticks_per_beat 96\nnote_on 0 60", "line 2: note_on needs 4 values"),
    ("ticks_per_beat 96\nwobble 1 2", "line 2: unknown message type 'wobble'"),
    ("ticks_per_beat 96\nnote_on 0 600 64 0", "line 2: note_on"),
    ("ticks_per_beat 96\nmidi_type 0\ntrack 0\ntrack 1", "type-0 MIDI file has one track"),
])
def test_bad_mtf_is_a_named_error_that_names_the_line(text, message):
    with pytest.raises(MtfError, match=message):
        mtf_to_midi(text)


def test_unreadable_midi_is_a_named_error(tmp_path):
    with pytest.raises(MidiReadError, match="MIDI bytes"):
        midi_to_mtf(b"not a midi file")
    with pytest.raises(MidiReadError, match="missing.mid"):
        midi_patches(tmp_path / "missing.mid")

"""MIDI as MTF (MIDI Text Format): one MIDI message per line, as CLaMP 2 feeds MIDI to its music encoder.

A message line is its mido type, then its values space-separated in the order mido lists them for a message
read from a file, which is how CLaMP 2 writes them: ``note_on 0 60 80 0`` (type, delta time, note, velocity,
channel) and, for meta messages, the time last: ``set_tempo 500000 0``. Two details make the text lossless where
CLaMP 2's is not: strings are written with Python's ``unicode_escape`` and spaces as ``\\x20``
(``track_name voice\\x201 0``), and byte data (sysex, sequencer-specific) as comma-separated numbers, so every
line parses back to its message.

:func:`midi_to_mtf` keeps the whole file::

    ticks_per_beat 480
    midi_type 1
    track 0
    set_tempo 500000 0
    ...
    end_of_track 0
    track 1
    ...

and :func:`mtf_to_midi` rebuilds it message for message (delta times included). Text without ``midi_type`` and
``track`` lines (CLaMP 2's own files) reads as one track of a type-0 file.

:func:`encoder_mtf` is what CLaMP 2's encoder reads ("M3-compatible" in its converter): every track merged into
one in time order, and the messages that carry free text or vendor data dropped (text, copyright, track and
instrument names, lyrics, markers, cue points, device names, sequencer-specific data, sysex). Dropping them also
keeps titles and names that a MIDI file may carry out of the encoder's input.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunespace.errors import TunespaceError

if TYPE_CHECKING:
    import mido

class MidiReadError(TunespaceError, ValueError):
    """A MIDI file (or bytes) that mido cannot read."""


class MtfError(TunespaceError, ValueError):
    """MTF text that does not describe a MIDI file; the message names the line."""


TEXT_META_TYPES = frozenset({"text", "copyright", "track_name", "instrument_name", "lyrics", "marker",
                             "cue_marker", "device_name", "sequencer_specific"})
"""Meta messages CLaMP 2 leaves out of the encoder's input (free text or vendor data)."""

def _mido() -> Any:
    import mido

    return mido


def read_midi(midi: str | Path | bytes | mido.MidiFile) -> mido.MidiFile:
    """A mido file from a path, the bytes of a file, or a file already read; :class:`MidiReadError` if unreadable."""
    mido = _mido()
    if isinstance(midi, mido.MidiFile):
        return midi
    where = "MIDI bytes" if isinstance(midi, bytes | bytearray) else str(midi)
    try:
        if isinstance(midi, bytes | bytearray):
            return mido.MidiFile(file=io.BytesIO(midi))
        return mido.MidiFile(Path(midi))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as error:
        raise MidiReadError(f"{where}: not a readable MIDI file ({type(error).__name__}: {error})") from error


def _value_text(value: object) -> str:
    if isinstance(value, str):
        return value.encode("unicode_escape").decode("ascii").replace(" ", "\\x20")
    if isinstance(value, list | tuple | bytes | bytearray):
        return ",".join(str(int(byte)) for byte in value)
    return str(value)


def message_line(message: mido.Message | mido.MetaMessage) -> str:
    """One message as an MTF line: its type, then its values in the order mido reads them from a file."""
    _, fields = _template(message.type)
    values = message.dict()
    return " ".join([message.type, *(_value_text(values[name]) for name, _ in fields)])


@functools.cache
def _template(kind: str) -> tuple[str, tuple[tuple[str, type], ...]]:
    """("message" | "meta" | "unknown_meta", ((field, value type), ...)) of a message type, in line order.

    The order is the one mido gives a message read from a file (``note_on time note velocity channel``), which
    is what CLaMP 2's converter wrote; a message built in code lists the same fields in another order.
    """
    mido = _mido()
    if kind == "unknown_meta":
        return kind, (("type_byte", int), ("data", tuple), ("time", int))
    try:
        template, family = mido.Message.from_bytes(mido.Message(kind).bytes()), "message"
    except LookupError:
        try:
            template, family = mido.MetaMessage(kind), "meta"
        except LookupError as error:
            raise MtfError(f"unknown message type {kind!r}") from error
    values = template.dict()
    values.pop("type")
    return family, tuple((name, tuple if isinstance(value, list | tuple) else type(value))
                         for name, value in values.items())


def parse_message(line: str) -> mido.Message | mido.MetaMessage:
    """The message an MTF line describes (the inverse of :func:`message_line`); :class:`MtfError` if malformed."""
    mido = _mido()
    kind, *tokens = line.split(" ")
    family, fields = _template(kind)
    if len(tokens) != len(fields):
        raise MtfError(f"{kind} needs {len(fields)} values ({', '.join(name for name, _ in fields)}), "
                       f"the line has {len(tokens)}")
    values: dict[str, object] = {}
    try:
        for (name, value_type), token in zip(fields, tokens):
            if value_type is str:
                values[name] = token.encode("latin-1", "backslashreplace").decode("unicode_escape")
            elif value_type is tuple:
                values[name] = tuple(int(byte) for byte in token.split(",")) if token else ()
            else:
                values[name] = value_type(token)
        if family == "unknown_meta":
            return mido.UnknownMetaMessage(**values)
        return mido.Message(kind, **values) if family == "message" else mido.MetaMessage(kind, **values)
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        raise MtfError(f"{kind}: {error}") from error


def midi_to_mtf(midi: str | Path | bytes | mido.MidiFile) -> str:
    """The whole MIDI file as MTF text: ticks per beat, file type, then every track's messages with delta times."""
    midi = read_midi(midi)
    lines = [f"ticks_per_beat {midi.ticks_per_beat}", f"midi_type {midi.type}"]
    for number, track in enumerate(midi.tracks):
        lines.append(f"track {number}")
        lines.extend(message_line(message) for message in track)
    return "\n".join(lines)


def mtf_to_midi(text: str) -> mido.MidiFile:
    """The MIDI file MTF text describes (:func:`midi_to_mtf`'s inverse); :class:`MtfError` names a bad line."""
    mido = _mido()
    lines = text.split("\n")
    if not lines or not lines[0].startswith("ticks_per_beat "):
        raise MtfError("line 1: MTF starts with 'ticks_per_beat N'")
    try:
        ticks = int(lines[0].split(" ", 1)[1])
    except ValueError as error:
        raise MtfError(f"line 1: {lines[0]!r} is not 'ticks_per_beat N'") from error
    midi_type: int | None = None
    tracks: list[Any] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word == "midi_type" and midi_type is None and not tracks:
            midi_type = int(rest) if rest.isdigit() else -1
            if midi_type not in (0, 1, 2):
                raise MtfError(f"line {number}: MIDI file type must be 0, 1 or 2, not {rest!r}")
        elif word == "track" and rest.isdigit():
            tracks.append(mido.MidiTrack())
        else:
            if not tracks:
                tracks.append(mido.MidiTrack())  # CLaMP 2's text: one merged track, no track lines
            try:
                tracks[-1].append(parse_message(line))
            except MtfError as error:
                raise MtfError(f"line {number}: {error}") from error
    if midi_type is None:
        midi_type = 0 if len(tracks) <= 1 else 1
    if midi_type == 0 and len(tracks) != 1:
        raise MtfError(f"a type-0 MIDI file has one track, this text has {len(tracks)}")
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks)
    midi.tracks.extend(tracks)
    return midi


def encoder_mtf(midi: str | Path | bytes | mido.MidiFile) -> str:
    """MTF as CLaMP 2's encoder reads it: all tracks merged in time order, free-text and sysex messages dropped.

    Dropping a message adds its delta time to the next kept one, so the kept messages keep their onsets (CLaMP 2's
    converter drops the time with the message, which shifts what follows a lyric or marker that is not at time 0).
    """
    midi = read_midi(midi)
    lines = [f"ticks_per_beat {midi.ticks_per_beat}"]
    carried = 0
    for message in midi.merged_track:
        if message.type in TEXT_META_TYPES or message.type == "sysex":
            carried += message.time
            continue
        lines.append(message_line(message.copy(time=message.time + carried) if carried else message))
        carried = 0
    return "\n".join(lines)


def midi_patches(midi: str | Path | bytes | mido.MidiFile, *, pack_to: int | None = None) -> list[str]:
    """The encoder's patches of a MIDI file: one per line of :func:`encoder_mtf`, each ending in its newline.

    With `pack_to` (CLaMP 2 passes its patch length, 64), consecutive messages of one type share a patch as in
    CLaMP 2's patchilizer: ``note_on 0 60 80 0\t120 60 0 0`` (type once, then each message's values after a
    tab) while the patch stays within ``pack_to - 2`` characters.
    """
    lines = [line + "\n" for line in encoder_mtf(midi).split("\n")]
    lines[-1] = lines[-1][:-1]
    if pack_to is None:
        return lines
    patches: list[str] = []
    for line in lines:
        kind, _, values = line.partition(" ")
        if patches and patches[-1].startswith(kind + " ") and len(patches[-1]) + len(values) <= pack_to - 2:
            patches[-1] = patches[-1].rstrip("\n") + "\t" + values
        else:
            patches.append(line)
    return patches

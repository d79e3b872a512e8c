"""ABC as CLaMP 2 feeds it to its music encoder: musical header lines, then bars with the voices interleaved.

CLaMP 2 (Wu et al., 2024) converts every score to "interleaved ABC": the header, then one line per bar index
holding that bar of every voice, each voice's bar opened by an inline ``[V:n]`` field::

    L:1/8
    M:2/4
    K:G
    V:1
    V:2 clef=bass
    [V:1]|:GA Bc|[V:2]|:G,4|
    [V:1]d2 B2:|[V:2]D,4:|

Its M3 encoder then reads one patch per header line and one per voice-bar (``[V:1]|:GA Bc|``), the last patch of
a line keeping its newline. :func:`abc_patches` builds those patches directly, and :func:`interleaved_abc` is
their concatenation, so the text and the patches never disagree.

Decisions, and where they differ from CLaMP 2's own pipeline:

* Only musical information fields stay: ``K`` (key), ``L`` (unit length), ``M`` (meter), ``Q`` (tempo, with its
  quoted words such as "Vivace" removed) and ``V`` (voice definitions, renumbered 1..n, keeping only clef and
  transposition properties, never the names ``nm=``/``name=``). Every other field of the ABC 2.1 list is dropped
  wherever it stands (header, body line or inline ``[X:..]``): ``A B C D F G H I N O P R r S s T U W w X Z`` and
  ``m``, as are ``%`` comments and ``%%`` directives. CLaMP 2 removes only ``X T C W w Z`` and ``%%MIDI``; here the
  evaluation scores origin, dance type, source book and notes, so those go too. ``P`` (part labels, which in the
  corpus say "Verse" or "Chorus") and ``U``/``m`` (user symbols, macros; unused in the corpus) are dropped with them.
* Quoted strings in the body stay only when they read as chord symbols ("G", "Am7", "D/F#", "(Em)"); annotations
  ("^Fine", "<text", or any other words) are removed, since free text can name a tune, a dance or a place.
* Body field lines for K, L, M and Q (a key change on its own line) become inline fields at that point, as
  CLaMP 2's converter writes them. Line breaks and line continuations are not musical and are dropped.
* Bars end at a barline (``|``, ``||``, ``|]``, ``[|``, ``|:``, ``:|``, ``::``, ``.|``); an ending number after a
  barline (``:|2``, ``|[1``) belongs to that barline, as in CLaMP 2. A bar with no notes (two barlines in a row,
  a line that starts with the barline ending the previous one) adds its barline to the previous bar.
* Runs of spaces inside a bar become one space (only their presence matters: they break beams).
* A tune with one voice still gets ``[V:1]`` before each bar: CLaMP 2's data always has it.
* Voices with unequal bar counts are interleaved as far as each goes (CLaMP 2 drops such pieces).
* CLaMP 2's encoder also deletes a ``L:1/8`` line before patching; this module keeps ``L`` always, as it is the
  meaning of every note length (ABC's default unit depends on the meter).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from tunespace.errors import TunespaceError

logger = logging.getLogger(__name__)


class AbcError(TunespaceError, ValueError):
    """An ABC text that cannot be read as one tune (no ``K:`` field, no bars, several ``X:`` tunes)."""


KEPT_FIELDS = frozenset("KLMQ")
"""Information fields kept (besides ``V``): the ones that change what the notes mean."""

_FIELD_LINE = re.compile(r"([A-Za-z+]):(.*)")
_NOTE_LETTERS = frozenset("ABCDEFGabcdefg")
_COMMENT = re.compile(r"(?<!\\)%.*")
_QUOTED = re.compile(r'"[^"]*"?')
_CHORD_SYMBOL = re.compile(r"\(?[A-G][#b]?(?:maj|min|dim|aug|sus|add|m|M|o|\+|-)?\d*"
                           r"(?:(?:maj|sus|add|b|#|\+|-)\d+)*(?:/[A-Ga-g][#b]?)?\)?")
_INLINE_FIELD = re.compile(r"\[([A-Za-z]):([^\]]*)\]")
_BARLINE = re.compile(r"(?:\.\||:*\[?\|+\]?:*|:{2,})(?:\s*\[?\d+(?:[,\-.]\d+)*)?")
_WHITESPACE = re.compile(r"\s+")
_CLEF_WORD = re.compile(r"(?:treble|bass|alto|tenor|baritone|perc|none)[-+]?\d*")
_VOICE_PROPERTY = re.compile(r"(?:clef|octave|transpose|t|middle|m|stafflines)=\S+")


def clean_tempo(value: str) -> str:
    """A ``Q:`` value without its quoted words: '1/4=132 "Vivace"' -> "1/4=132"; "" when only words remain."""
    return _WHITESPACE.sub(" ", _QUOTED.sub(" ", value)).strip()


def _musical_field(letter: str, value: str) -> str | None:
    """The field as kept ("K:G"), or None when it is dropped (not musical, or nothing musical left)."""
    if letter not in KEPT_FIELDS:
        return None
    value = clean_tempo(value) if letter == "Q" else _WHITESPACE.sub(" ", value).strip()
    return f"{letter}:{value}" if value else None


def _voice_properties(definition: str) -> str:
    """The clef and transposition properties of a ``V:`` definition's text after its id (names dropped)."""
    kept = [word for word in _WHITESPACE.split(_QUOTED.sub(" ", definition).strip())
            if _CLEF_WORD.fullmatch(word) or _VOICE_PROPERTY.fullmatch(word)]
    return " ".join(kept)


def _keep_quoted(match: re.Match[str]) -> str:
    text = match.group(0)
    inner = text[1:-1] if text.endswith('"') and len(text) > 1 else text[1:]
    return text if _CHORD_SYMBOL.fullmatch(inner) else ""


def _keep_inline(match: re.Match[str]) -> str:
    kept = _musical_field(match.group(1), match.group(2))
    return f"[{kept}]" if kept else ""


def _is_field_line(line: str, in_body: bool) -> re.Match[str] | None:
    """The field match of a line, or None for music. In the body a note letter before ":|" or "::" is music."""
    match = _FIELD_LINE.match(line)
    if match is None:
        return None
    if in_body and match.group(1) in _NOTE_LETTERS and (not match.group(2) or match.group(2)[0] in "|:"):
        return None
    return match


@dataclass
class _Voice:
    properties: str
    text: list[str] = field(default_factory=list)


@dataclass
class _Tune:
    header: list[str]
    voices: dict[str, _Voice]
    order: list[str]

    def voice(self, ident: str, properties: str = "") -> _Voice:
        if ident not in self.voices:
            self.voices[ident] = _Voice(properties)
            self.order.append(ident)
        elif properties and not self.voices[ident].properties:
            self.voices[ident].properties = properties
        return self.voices[ident]


def _tune_lines(text: str) -> list[str]:
    """The lines of the one tune in `text`, from its ``X:`` line (or the start when it has none)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if len(starts) > 1:
        numbers = ", ".join(lines[i][2:].strip() for i in starts[:5])
        raise AbcError(f"the text holds {len(starts)} tunes (X: {numbers}); pass one tune at a time")
    return lines[starts[0]:] if starts else lines


def _parse(text: str) -> _Tune:
    tune = _Tune(header=[], voices={}, order=[])
    current: str | None = None  # the voice body music goes to; None until the body names or needs one
    in_body = False
    continued = False  # whether the last field line was kept, so a "+:" line continues it
    for raw in _tune_lines(text):
        if raw.startswith("%%"):
            continue
        line = _COMMENT.sub("", raw).rstrip()
        if not line.strip():
            continue
        match = _is_field_line(line, in_body)
        if match is None:
            continued = False
            if in_body:  # text before the K: line is not music
                current = _add_music(tune, _current_voice(tune, current), line)
            continue
        letter, value = match.group(1), match.group(2)
        if letter == "+":
            if continued:
                tune.header[-1] = f"{tune.header[-1]} {value.strip()}".rstrip()
            continue
        continued = False
        if letter == "V":
            words = value.split(maxsplit=1)
            if words:
                ident = words[0]
                tune.voice(ident, _voice_properties(words[1] if len(words) > 1 else ""))
                current = ident if in_body else current
            continue
        kept = _musical_field(letter, value)
        if kept is None:
            continue
        if in_body:
            current = _current_voice(tune, current)
            tune.voice(current).text.append(f"[{kept}]")
        else:
            tune.header.append(kept)
            continued = True
            in_body = letter == "K"
    if not in_body:
        raise AbcError("no K: field: ABC needs one to end the header")
    return tune


def _current_voice(tune: _Tune, current: str | None) -> str:
    """The voice for music before any ``V:`` switch: the first one defined, else an unnamed one."""
    if current is not None:
        return current
    if not tune.order:
        tune.voice("")
    return tune.order[0]


def _split_voices(line: str, current: str) -> list[tuple[str, str]]:
    """(voice id, text) pieces of a music line, split at inline ``[V:..]`` fields."""
    pieces = []
    position = 0
    for match in re.finditer(r"\[V:\s*([^\]\s]*)[^\]]*\]", line):
        pieces.append((current, line[position:match.start()]))
        current = match.group(1)
        position = match.end()
    pieces.append((current, line[position:]))
    return pieces


def _add_music(tune: _Tune, current: str, line: str) -> str:
    """Add a music line's pieces to their voices; returns the voice the line ends in."""
    line = _QUOTED.sub(_keep_quoted, line.rstrip("\\").rstrip())
    for ident, piece in _split_voices(line, current):
        piece = _INLINE_FIELD.sub(_keep_inline, piece)
        tune.voice(ident)
        if piece.strip():
            tune.voices[ident].text.append(piece)
        current = ident
    return current


def _skip_to(text: str, start: int, closing: str) -> int:
    """The index after the `closing` character that ends the group opened at `start` (or the text's end)."""
    end = text.find(closing, start + 1)
    return len(text) if end < 0 else end + 1


def split_bars(music: str) -> list[str]:
    """The bars of one voice's music, each with the barline that closes it (the last one may have none).

    A barline at the very start (``|:``) opens the first bar; a bar without notes gives its barline to the bar
    before it (a repeated identical barline is dropped); quoted chord symbols, ``!decorations!``, ``{grace}``
    notes, ``[chords]`` and inline fields are never split.
    """
    bars: list[str] = []
    pending = ""  # barlines and inline fields waiting for the next bar's notes
    buffer: list[str] = []
    i = 0
    while i < len(music):
        char = music[i]
        end = i + 1
        if char == '"':
            end = _skip_to(music, i, '"')
        elif char == "!":
            closing = music.find("!", i + 1)
            if closing < 0 or "|" in music[i + 1:closing]:
                i += 1  # a lone "!" is an old line-break mark, not music
                continue
            end = closing + 1
        elif char == "{":
            end = _skip_to(music, i, "}")
        elif char == "[" and i + 1 < len(music) and music[i + 1] != "|" and not music[i + 1].isdigit():
            end = _skip_to(music, i, "]")
        elif char in "|:[.":
            barline = _BARLINE.match(music, i)
            if barline is not None and (char != "." or music.startswith(".|", i)):
                token = _WHITESPACE.sub("", barline.group(0))
                text = _WHITESPACE.sub(" ", "".join(buffer)).strip()
                buffer = []
                i = barline.end()
                if _INLINE_FIELD.sub("", text).strip():
                    bars.append(pending + text + token)
                    pending = ""
                elif bars and not pending:
                    if not bars[-1].endswith(token):
                        bars[-1] += token
                    pending = text
                else:
                    pending += text + token
                continue
        buffer.append(music[i:end])
        i = end
    text = _WHITESPACE.sub(" ", "".join(buffer)).strip()
    if _INLINE_FIELD.sub("", text).strip():
        bars.append(pending + text)
    return bars


def abc_patches(abc_text: str) -> list[str]:
    """One tune's ABC as CLaMP 2's encoder patches: each kept header line, then one patch per voice-bar.

    Header patches end with a newline; bar patches are ``[V:n]`` plus the bar, the last voice's bar of each bar
    index ending with a newline. Raises :class:`AbcError` when the text is not one readable tune.
    """
    tune = _parse(abc_text)
    voices = [(ident, tune.voices[ident]) for ident in tune.order]
    bars = [(voice.properties, split_bars(" ".join(voice.text))) for _, voice in voices]
    bars = [(properties, voice_bars) for properties, voice_bars in bars if voice_bars]
    if not bars:
        raise AbcError("the tune has no bars of music after its K: field")
    patches = [line + "\n" for line in tune.header]
    if len(bars) > 1 or bars[0][0]:
        patches += [f"V:{number}{' ' + properties if properties else ''}\n"
                    for number, (properties, _) in enumerate(bars, start=1)]
    lengths = {len(voice_bars) for _, voice_bars in bars}
    if len(lengths) > 1:
        logger.debug("voices have %s bars; interleaving each as far as it goes", sorted(lengths))
    for index in range(max(lengths)):
        row = [f"[V:{number}]{voice_bars[index]}" for number, (_, voice_bars) in enumerate(bars, start=1)
               if index < len(voice_bars)]
        row[-1] += "\n"
        patches += row
    return patches


def interleaved_abc(abc_text: str) -> str:
    """The tune as CLaMP 2's interleaved ABC text: the concatenation of :func:`abc_patches`."""
    return "".join(abc_patches(abc_text))

"""ABC as CLaMP 2 reads it: label-bearing fields never reach the encoder, bars are interleaved voice by voice."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tunespace.symbolic import AbcError, abc_patches, interleaved_abc
from tunespace.symbolic.abc import clean_tempo, split_bars

needs_music21 = pytest.mark.skipif(importlib.util.find_spec("music21") is None, reason="music21 is not installed")

LEAKY_TUNE = """%abc-2.1
X:7
T:Quimper Harbour Reel
T:alternative Zanzibar
C:Yolanda Wimbledon
O:Brittany, Finistere
R:Reel
B:Kerwin Songbook
S:Xavier Session
N:learnt from Ulrich
Z:transcribed by Hortense
H:played at Vannes
A:Morbihan
D:Pembroke Records
F:http://example.org/quimper
G:Flute
I:linebreak $
P:AB
W:Lyrics after tune
M:4/4
L:1/8
Q:1/4=120 "Allegro"
V:1 name="Fiddle" clef=treble
K:G % in G
P:A
|:"G"GABc "^Kerlouan"d2B2|"Am7"[CE]A {g}AG [T:Tregunc]E4:|
w:Laride la la
%%MIDI program 1
[P:B]|1 g2ga [N:Plouha]b2ag:|2 "D.C."f2fe [K:D]d4|]
"""
LEAKY_WORDS = ("Quimper", "Harbour", "Reel", "Zanzibar", "Yolanda", "Wimbledon", "Brittany", "Finistere", "Kerwin",
               "Songbook", "Xavier", "Session", "Ulrich", "Hortense", "Vannes", "Morbihan", "Pembroke", "Records",
               "example", "Flute", "linebreak", "Lyrics", "Allegro", "Fiddle", "Kerlouan", "Laride", "MIDI",
               "program", "Tregunc", "Plouha", "D.C.", "abc-2.1")


def test_label_fields_are_stripped_and_musical_ones_kept_exactly():
    assert abc_patches(LEAKY_TUNE) == [
        "M:4/4\n", "L:1/8\n", "Q:1/4=120\n", "K:G\n", "V:1 clef=treble\n",
        '[V:1]|:"G"GABc d2B2|\n',
        '[V:1]"Am7"[CE]A {g}AG E4:||1\n',
        "[V:1]g2ga b2ag:|2\n",
        "[V:1]f2fe [K:D]d4|]\n",
    ]


def test_no_word_of_a_label_field_survives_in_the_hand_written_tune():
    text = "".join(abc_patches(LEAKY_TUNE)).lower()
    assert [word for word in LEAKY_WORDS if word.lower() in text] == []


# Words that are musical wherever they stand (the K: field's mode, clefs): a title may share them.
MUSICAL_WORDS = {"major", "minor", "dorian", "phrygian", "lydian", "mixolydian", "aeolian", "locrian", "ionian",
                 "treble", "bass", "alto", "tenor"}
LABEL_FIELD = re.compile(r"([TORBCNSZHADFGWwP]):(.*)")
WORD = re.compile(r"[A-Za-z]{4,}")


@needs_music21
def test_no_word_of_the_evaluated_fields_survives_in_any_shipped_tune():
    """Every tune shipped with music21: no title, origin, rhythm, book, notes, composer... word reaches a patch.

    A word made of note letters only ("Dead", "Face") could be a run of notes, so those are not looked for.
    """
    from tunespace.corpus.tunes import read_tunes

    tunes = read_tunes()
    assert len(tunes) > 10_000
    leaks = []
    for tune_id, abc in zip(tunes["tune_id"], tunes["abc"]):
        words = {word.lower() for line in abc.split("\n") if (match := LABEL_FIELD.match(line))
                 for word in WORD.findall(match.group(2))}
        words = {word for word in words - MUSICAL_WORDS if set(word) - set("abcdefg")}
        text = "".join(abc_patches(abc)).lower()
        leaks += [(tune_id, word) for word in words if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text)]
    assert leaks == []


@needs_music21
def test_every_shipped_tune_keeps_its_key_and_meter():
    from tunespace.corpus.tunes import read_tunes

    tunes = read_tunes(["oneills"])
    for abc in tunes["abc"]:
        patches = abc_patches(abc)
        header = [patch for patch in patches if not patch.startswith("[V:")]
        assert sum(patch.startswith("K:") for patch in header) == 1
        assert any(patch.startswith("M:") for patch in header)
        assert all(patch.startswith("[V:1]") for patch in patches[len(header):])


TWO_VOICES = """X:1
T:Duet
M:2/4
L:1/8
V:1 clef=treble nm="Oboe"
V:2 clef=bass nm="Cello"
K:D
V:1
|:d2 fa|"A7"g2 e2|
V:2
|:D,4|A,,4|
V:1
[K:G]{a}g>f ed:|
V:2
[K:G][G,B,]4:|
"""


def test_two_voices_are_interleaved_bar_by_bar():
    assert abc_patches(TWO_VOICES) == [
        "M:2/4\n", "L:1/8\n", "K:D\n", "V:1 clef=treble\n", "V:2 clef=bass\n",
        "[V:1]|:d2 fa|", "[V:2]|:D,4|\n",
        '[V:1]"A7"g2 e2|', "[V:2]A,,4|\n",
        "[V:1][K:G]{a}g>f ed:|", "[V:2][K:G][G,B,]4:|\n",
    ]
    assert interleaved_abc(TWO_VOICES) == "".join(abc_patches(TWO_VOICES))


def test_inline_voice_switches_and_named_voices_are_renumbered():
    tune = "X:2\nM:3/4\nL:1/4\nV:Soprano\nV:Alto\nK:C\n[V:Soprano] c d e|f3|]\n[V:Alto] E F G|A3|]\n"
    assert abc_patches(tune) == ["M:3/4\n", "L:1/4\n", "K:C\n", "V:1\n", "V:2\n",
                                 "[V:1]c d e|", "[V:2]E F G|\n", "[V:1]f3|]", "[V:2]A3|]\n"]


def test_voices_of_unequal_length_are_interleaved_as_far_as_each_goes():
    tune = "X:3\nL:1/4\nK:C\nV:1\nC D|E F|G A|\nV:2\nc d|\n"
    assert abc_patches(tune)[2:] == ["V:1\n", "V:2\n", "[V:1]C D|", "[V:2]c d|\n", "[V:1]E F|\n", "[V:1]G A|\n"]


def test_body_field_lines_become_inline_fields_and_lyrics_go():
    tune = "X:4\nL:1/8\nK:C\nCDEF|\nM:3/4\nw:words here\nGAB|\nK:Am\nQ:\"Slow\"\nT:Second part\nc2d2e2|\n"
    assert abc_patches(tune) == ["L:1/8\n", "K:C\n", "[V:1]CDEF|\n", "[V:1][M:3/4] GAB|\n", "[V:1][K:Am] c2d2e2|\n"]


@pytest.mark.parametrize("music, bars", [
    ("|:abc|def:|", ["|:abc|", "def:|"]),
    ("abc|def", ["abc|", "def"]),
    ("abc| |def|]", ["abc|", "def|]"]),  # an empty bar adds nothing; the same barline is not repeated
    ("abc||:def:|", ["abc||:", "def:|"]),
    ("abc|1 def:|2 gab|]", ["abc|1", "def:|2", "gab|]"]),
    ("abc| [2 def|", ["abc|[2", "def|"]),
    ("[M:C|]abc|[K:D]|def::gab|", ["[M:C|]abc|", "[K:D]def::", "gab|"]),
    ('"G"a!trill!b{/c}[ceg]|"^x|y"d .| e|', ['"G"a!trill!b{/c}[ceg]|', '"^x|y"d.|', "e|"]),
    ("a  b   c|", ["a b c|"]),
])
def test_split_bars(music, bars):
    assert split_bars(music) == bars


def test_tempo_keeps_the_beat_and_drops_words():
    assert clean_tempo('1/4=132 "Vivace"') == "1/4=132"
    assert clean_tempo('"Allegro"') == ""


@pytest.mark.parametrize("text, message", [
    ("X:1\nT:no key\nabc|\n", "no K: field"),
    ("X:1\nK:G\n", "no bars"),
    ("X:1\nK:G\nabc|\n\nX:2\nK:D\ndef|\n", "2 tunes"),
])
def test_what_is_not_one_tune_is_a_named_error(text, message):
    with pytest.raises(AbcError, match=message):
        abc_patches(text)


def test_a_tune_without_an_x_line_is_read_whole():
    assert abc_patches("M:6/8\nK:D\nd2e fgf|\n") == ["M:6/8\n", "K:D\n", "[V:1]d2e fgf|\n"]


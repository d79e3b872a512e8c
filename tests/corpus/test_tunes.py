"""Reading the music21 ABC collections: header parsing on small hand-written tunes, then the installed corpus."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tunespace.corpus import tunes
from tunespace.corpus.tunes import (
    COLLECTIONS,
    DANCE_TYPES,
    TUNE_COLUMNS,
    CorpusNotInstalledError,
    UnknownCollectionError,
    clean_composer,
    clean_genre,
    dance_in_title,
    essen_origin,
    normalise_dance,
    parse_abc_file,
    parse_key,
    parse_meter,
    parse_tempo,
    read_tunes,
    read_tunes_with_skips,
    split_title,
)
from tunespace.errors import DatasetNotFoundError

MODES = {"major", "minor", "dorian", "phrygian", "lydian", "mixolydian", "locrian"}
needs_music21 = pytest.mark.skipif(importlib.util.find_spec("music21") is None, reason="music21 is not installed")


@pytest.mark.parametrize("value, expected", [
    ("G", ("G", "major")), ("Em", ("E", "minor")), ("ADor", ("A", "dorian")), ("D mix", ("D", "mixolydian")),
    ("Dmix", ("D", "mixolydian")), ("E Minor", ("E", "minor")), ("Amin", ("A", "minor")),
    ("A min -8va", ("A", "minor")), ("E phr bass", ("E", "phrygian")), ("Glyd", ("G", "lydian")),
    ("G Dorian", ("G", "dorian")), ("D Major", ("D", "major")), ("Bb", ("Bb", "major")), ("F#m", ("F#", "minor")),
    ("Ebm", ("Eb", "minor")), ("Bloc", ("B", "locrian")), ("EM", ("E", "minor")),  # ABC modes ignore case
    ("Dmix=c", ("D", "mixolydian")), ("Dmixm", ("D", "mixolydian")),
    ("Hp", ("A", "mixolydian")), ("HP", ("A", "mixolydian")),  # Highland bagpipe key
    ("H", ("B", "major")), ("Es", ("Eb", "major")), ("Fis", ("F#", "major")),  # German names in Essen
    ("Bn", ("B", "")), ("none", ("", "")),
])
def test_parse_key(value, expected):
    assert parse_key(value) == expected


@pytest.mark.parametrize("value, unit, expected", [
    # explicit beats: the beat is the note length written, whatever L: is
    ("1/4=120", 1 / 8, 120.0), ("3/8=120", 1 / 8, 180.0), ("1/2=104", 1 / 8, 208.0), ("1/8=120", 1 / 8, 60.0),
    ("3/8=60", 1 / 8, 90.0), ("3/8=60", 1 / 16, 90.0), ("1/4 =50", 1 / 8, 50.0), (" 1 / 4 = 96", 1 / 8, 96.0),
    # several note lengths: the beat is their sum (1/8 + 3/8 = a half note)
    ("1/8 3/8=40", 1 / 8, 80.0), ("1/4 3/8 1/4 3/8=40", 1 / 8, 200.0),
    # words in quotes are ignored, before or after
    ('"Allegro" 1/4=120', 1 / 8, 120.0), ('1/4=80 "Slow"', 1 / 8, 80.0), ('"Allegro" 3/8=60', 1 / 8, 90.0),
    # bare numbers: quarter notes per minute, as abc2midi and music21 read them, whatever L: is
    ("120", 1 / 8, 120.0), ("120", 1 / 4, 120.0), ("60", 1 / 16, 60.0), ("190", 1 / 8, 190.0),
    # legacy letter forms: the beat is that many unit notes (L:)
    ("C=120", 1 / 8, 60.0), ("C=120", 1 / 4, 120.0), ("C=120", 1 / 16, 30.0), ("C2=120", 1 / 8, 120.0),
    ("C3=60", 1 / 8, 90.0), ("C/2=120", 1 / 8, 30.0), ("C3/2=80", 1 / 8, 60.0), ("c2 = 100", 1 / 16, 50.0),
])
def test_parse_tempo_gives_quarter_notes_per_minute(value, unit, expected):
    assert parse_tempo(value, unit) == pytest.approx(expected)


@pytest.mark.parametrize("value", ['"Slowly and Smoothly"', '"Allegro"', "Allegro", "", "1/4=", "0", "C", "C=",
                                   "0/4=120"])
def test_parse_tempo_without_a_number_is_nan(value):
    assert math.isnan(parse_tempo(value))


def test_a_bare_tempo_reads_as_quarter_notes_in_a_whole_tune():
    """O'Neill's "Q:60" under 2/4 with no L: (unit 1/16) is 60 bpm; read as unit notes it gave 15 bpm."""
    rows, _ = parse_abc_file("X:1\nT:An Suisin Ban\nM:2/4\nQ:60\nK:G\nGABc|d2B2|\n", "oneills", "air")
    assert rows[0]["tempo_bpm"] == pytest.approx(60.0)
    rows, _ = parse_abc_file("X:1\nT:Legacy\nM:2/4\nQ:C2=60\nK:G\nGABc|d2B2|\n", "oneills", "air")
    assert rows[0]["tempo_bpm"] == pytest.approx(30.0)  # two sixteenths a beat, 60 beats a minute


@pytest.mark.parametrize("value, expected", [
    ("6/8", "6/8"), (" 2/4", "2/4"), ("C", "4/4"), ("C|", "2/2"), ("none", ""), ("FREI4/4", ""), ("2/2]", "2/2"),
    ("", ""), ("9/8 ", "9/8"),
])
def test_parse_meter(value, expected):
    assert parse_meter(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("Europa, Island", ("Iceland", "Iceland")),
    ("Asien, China, Han, Shanxi", ("Shanxi", "China")),
    ("Europa, Mitteleuropa, Deutschland, Westfalen", ("Westfalen", "Germany")),
    ("Europa, Mitteleuropa, Deutschland, Westfalen, Paderborn", ("Westfalen", "Germany")),
    ("Europa, Mitteleuropa, Deutschland", ("Germany", "Germany")),
    ("Mitteleuropa, Deutschland / Frankreich, Lothringen", ("Lothringen", "Germany")),
    ("Europa, Mitteleuropa, Deutschland; Frankreich, Elsass", ("Germany", "Germany")),
    ("Lothringen", ("Lothringen", "France")),
    ("Europa, Mitteleuropa, Lothringen, Weiler", ("Lothringen", "France")),
    ("Luxemburg", ("Luxembourg", "Luxembourg")),
    ("Irland", ("Ireland", "Ireland")),
    ("Mitteleuropa, Deutschland (DDR) , Brandenburg", ("Brandenburg", "Germany")),
    ("Europa, Mitteleuropa, Schweiz, Kt. Graubuenden, Chur", ("Graubuenden", "Switzerland")),
    ("Mitteleuropa, Niederlande, flaemisch", ("Netherlands", "Netherlands")),
    ("Nord - Amerika, USA, Neuengland", ("Neuengland", "United States")),
    ("China, Shanxi Zuoquan", ("Shanxi", "China")),
    ("China, bei Liaoning, Haicheng", ("Liaoning", "China")),
    ("Asien, Ostasien, China, Sha1nxi1", ("Shanxi", "China")),
    ("Yunnan, Menghai", ("Yunnan", "China")),
    ("China, Dongbei, Nordosten", ("Dongbei", "China")),
    ("Osteuropa, UdSSR, Russland, Wolgakolonie", ("Russland", "Soviet Union")),
    ("Osteuropa? (juedisch)", ("", "")),
    ("", ("", "")),
])
def test_essen_origin(value, expected):
    assert essen_origin(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("LANIGAN'S BALL -- JIG", ("Lanigan's Ball", "JIG")),
    ("BILLY O'ROURKE'S -- JIG", ("Billy O'Rourke's", "JIG")),
    ("7th Regiment -- Reel", ("7th Regiment", "Reel")),
    ("Fair Maid of Cavan., The", ("The Fair Maid of Cavan", "")),
    ("The Rocky Road to Dublin", ("The Rocky Road to Dublin", "")),
    ("Das  Hildebrandslied ", ("Das Hildebrandslied", "")),
])
def test_split_title(value, expected):
    assert split_title(value) == expected


@pytest.mark.parametrize("label, expected", [
    ("Reel", "reel"), ("REEL", "reel"), (" jig", "jig"), ("double jig", "jig"), ("doublejig", "jig"),
    ("slipjig", "slip jig"), ("Slip Jig", "slip jig"), ("highland fling", "highland fling"),
    ("fling", "highland fling"), ("Strathspey", "strathspey"), ("air", "air"), ("clog", "clog"),
    ("Gavotte", "gavotte"), ("quickstep", "march"), ("", ""), ("song", ""),
])
def test_normalise_dance(label, expected):
    assert normalise_dance(label) == expected
    assert expected == "" or expected in DANCE_TYPES


@pytest.mark.parametrize("title, expected", [
    ("The Duke of York's March", "march"), ("Lady Mary Ramsay's Strathspey", "strathspey"),
    ("Wrecker's Daughter Quickstep", "march"), ("The Marchioness of Huntly", ""), ("Sligo Air", "air"),
    ("The Fair at Dungarvan", ""), ("Miss Gordon's Slip Jig", "slip jig"), ("Lord Elcho's Rant", "reel"),
])
def test_dance_in_title(title, expected):
    assert dance_in_title(title) == expected


@pytest.mark.parametrize("value, expected", [
    ("O'Carolan", ("O'Carolan", "")), ("Irish.", ("", "Ireland")), ("SCOTCH.", ("", "Scotland")),
    ('"collected by F.O\'Neill"', ("", "")), ("(Collected from F. O'Neill)", ("", "")),
    ("By Dibdin.", ("Dibdin", "")), ("FRANK LIVINGSTON.", ("Frank Livingston", "")),
    ("G.L.TRACY", ("G.L.Tracy", "")), ("Josquin des Prez \\footnotemark", ("Josquin des Prez", "")), ("", ("", "")),
])
def test_clean_composer(value, expected):
    assert clean_composer(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("Liebes - Lied", "Liebes-Lied"), ("Romanze, Ballade, Lied", "Romanze, Ballade, Lied"), ("Xiaodiao]", "Xiaodiao"),
    ("Staende -, Soldaten -, Kriegs - Lied", "Staende-, Soldaten-, Kriegs-Lied"), ("???", ""), ("???]", ""),
    ("yyy", ""), ("", ""),
])
def test_clean_genre(value, expected):
    assert clean_genre(value) == expected


ESSEN_FILE = """
X:1
T: Das Hildebrandslied
N: A0001
O: Europa, Mitteleuropa, Deutschland, Westfalen
R: Romanze, Ballade, Lied
M: 4/2
L: 1/4
K: G
G2 | _B2B2c2c2 | d4d4

X:2
T: Ohne Noten
O: Luxemburg
M: 3/4
L: 1/8
K: F
% only a comment follows the key
"Am" !fermata!

X:3
T: Ohne Tonart
O: Lothringen
M: 2/4
L: 1/8
EFGA | B4

X:4
T: Chinesisches Lied
O: China, Shanxi Hequ
R: Shange]
M: 2/4
L: 1/16
K: H
B4c4 | d8
"""

IRISH_FILE = """% a comment before the first tune
X: 1200
T: The Bank of Turf
T: Second title
B: "O'Neill's 1200"
Z: "Transcribed by someone"
N: "Spirited"
C: "collected by F. O'Neill"
M: C|
L: 1/8
Q: 1/2=100
K: ADor
eA~A2 eAAB | cBcd egfe :|

X: 1801
T: Brian Boru's March
B: "O'Neill's 1801"
M: 6/8
L: 1/8
K: G
GAB d2B | c2A B2G |]

X: 1802
T: LANIGAN'S BALL -- JIG
R: double jig
B: "O'Neill's 1802"
M: 6/8
K: D
DFA dAF | GBd cAF |
"""


def test_multi_tune_file_splits_on_x_and_skips_tunes_without_body_or_key():
    rows, skipped = parse_abc_file(ESSEN_FILE, "essen", "lied")
    assert [row["tune_id"] for row in rows] == ["essen/lied/1", "essen/lied/4"]
    assert skipped == [{"tune_id": "essen/lied/2", "reason": "no notes after K:"},
                       {"tune_id": "essen/lied/3", "reason": "no K: field"}]
    first, chinese = rows
    assert first == {**first, "collection": "essen", "title": "Das Hildebrandslied", "region": "Westfalen",
                     "country": "Germany", "genre": "Romanze, Ballade, Lied", "dance_type": "", "tonic": "G",
                     "mode": "major", "meter": "4/2", "composer": ""}
    assert math.isnan(first["tempo_bpm"])
    assert first["abc"].startswith("X:1\nT: Das Hildebrandslied\n") and first["abc"].endswith("d4d4\n")
    assert "X:2" not in first["abc"]
    assert (chinese["region"], chinese["country"], chinese["genre"], chinese["tonic"]) == (
        "Shanxi", "China", "Shange", "B")


def test_irish_tunes_get_dance_type_from_r_title_or_book_section():
    rows, skipped = parse_abc_file(IRISH_FILE, "oneills", "1200-1802")
    assert skipped == []
    section, titled, tagged = rows
    assert section["tune_id"] == "oneills/1200-1802/1200"
    assert (section["title"], section["dance_type"], section["tonic"], section["mode"], section["meter"]) == (
        "The Bank of Turf", "reel", "A", "dorian", "2/2")  # 1176-1555 is the reels section
    assert section["tempo_bpm"] == pytest.approx(200.0)
    assert (section["region"], section["country"], section["composer"], section["genre"]) == (
        "Ireland", "Ireland", "", "")
    assert titled["dance_type"] == "march"  # 1801-1850 is miscellaneous: the title decides
    assert (tagged["title"], tagged["dance_type"]) == ("Lanigan's Ball", "jig")
    assert math.isnan(tagged["tempo_bpm"])


def test_origin_words_in_composer_or_origin_fields_set_the_country():
    text = "X:1\nT:Reel\nC:Irish.\nR:reel\nK:D\nDFA|\n\nX:2\nT:Strathspey\nO:SCOTCH\nK:A\nA2B|\n"
    rows, _ = parse_abc_file(text, "ryans", "tunes")
    assert [(row["country"], row["region"], row["composer"]) for row in rows] == [
        ("Ireland", "Ireland", ""), ("Scotland", "Scotland", "")]
    assert rows[1]["dance_type"] == "strathspey"  # from the title when there is no R:


def test_repeated_x_numbers_in_one_file_stay_unique():
    rows, _ = parse_abc_file("X:1\nK:C\nCDE|\nX:1\nK:C\nEDC|\n", "airds", "book")
    assert [row["tune_id"] for row in rows] == ["airds/book/1", "airds/book/1~2"]


def _write_corpus(root: Path) -> None:
    (root / "essenFolksong").mkdir(parents=True)
    (root / "essenFolksong" / "lied.abc").write_text(ESSEN_FILE, encoding="utf-8")
    (root / "essenFolksong" / "test0.abc").write_text("X:1\nT: Test\nO: Irland\nK: G\nGAB|\n", encoding="utf-8")
    # DOS code page 437 read as Latin-1 and saved as UTF-8, as in some Essen files
    (root / "essenFolksong" / "dos.abc").write_text(
        "X:1\nT: J\u0084gerlied vom Schlo\u00e1\nO: Luxemburg\nK: G\nGAB|\n", encoding="utf-8")
    (root / "oneills1850").mkdir()
    (root / "oneills1850" / "1200-1802.abc").write_text(IRISH_FILE, encoding="utf-8")
    (root / "ryansMammoth").mkdir()
    (root / "ryansMammoth" / "Latin1Reel.abc").write_bytes("X:1\nT:S\xe9an's Reel\nK:G\nGAB|\n".encode("latin-1"))


def test_read_tunes_with_skips_on_a_folder_laid_out_like_music21(tmp_path):
    _write_corpus(tmp_path)
    found, skipped = read_tunes_with_skips(["ryans", "essen", "oneills"], root=tmp_path)
    assert list(found.columns) == list(TUNE_COLUMNS)
    # canonical collection order, files sorted by name, tunes in file order
    assert found["tune_id"].tolist() == [
        "essen/dos/1", "essen/lied/1", "essen/lied/4", "oneills/1200-1802/1200", "oneills/1200-1802/1801",
        "oneills/1200-1802/1802", "ryans/Latin1Reel/1"]
    assert found["tempo_bpm"].dtype == "float64"
    assert found.set_index("tune_id").loc["essen/dos/1", "title"] == "Jägerlied vom Schloß"
    assert found.set_index("tune_id").loc["ryans/Latin1Reel/1", "title"] == "Séan's Reel"
    assert skipped.to_dict("records") == [
        {"tune_id": "essen/lied/2", "file": "essenFolksong/lied.abc", "reason": "no notes after K:"},
        {"tune_id": "essen/lied/3", "file": "essenFolksong/lied.abc", "reason": "no K: field"},
        {"tune_id": "essen/test0/1", "file": "essenFolksong/test0.abc",
         "reason": "Essen test file: repeated tunes with made-up origins"}]
    again, _ = read_tunes_with_skips(["oneills", "essen", "ryans"], root=tmp_path)
    pd.testing.assert_frame_equal(found, again)


def test_unknown_collection_and_missing_folder_are_named_errors(tmp_path):
    with pytest.raises(UnknownCollectionError, match="nosuch"):
        read_tunes_with_skips(["essen", "nosuch"], root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="airds"):
        read_tunes_with_skips(["airds"], root=tmp_path)


def test_corpus_root_without_music21_says_how_to_install(monkeypatch):
    monkeypatch.setattr(tunes.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CorpusNotInstalledError, match="pip install music21"):
        tunes.corpus_root()


# The installed corpus ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_tunes_with_skips()


@needs_music21
def test_real_corpus_size_ids_and_collections(corpus):
    found, skipped = corpus
    assert len(found) > 12_000
    assert found["tune_id"].is_unique
    assert set(found["collection"]) == set(COLLECTIONS)
    assert all(tune_id.startswith(f"{name}/") for tune_id, name in zip(found["tune_id"], found["collection"]))
    assert (found["abc"].str.startswith("X:") & found["abc"].str.contains("\nK:")).all()
    assert (skipped["reason"] != "").all() and not set(skipped["tune_id"]) & set(found["tune_id"])


@needs_music21
def test_real_corpus_fields(corpus):
    found, _ = corpus
    by_collection = found.groupby("collection")
    assert (by_collection["dance_type"].apply(lambda s: (s != "").mean())["oneills"]) > 0.9
    assert (by_collection["dance_type"].apply(lambda s: (s != "").mean())["ryans"]) > 0.9
    assert set(found["dance_type"]) <= set(DANCE_TYPES) | {""}
    assert (found.loc[found["collection"] == "essen", "dance_type"] == "").all()
    assert set(found["mode"]) <= MODES | {""} and (found["mode"] == "").sum() < 10
    assert {"minor", "dorian", "mixolydian"} <= set(found["mode"])
    assert found["tonic"].str.fullmatch(r"[A-G][#b]?").all()
    assert found["meter"].str.fullmatch(r"(\d+/\d+)?").all()
    tempo = found["tempo_bpm"].dropna()
    assert len(tempo) > 1000 and tempo.between(10, 400).all()
    essen = found[found["collection"] == "essen"]
    assert (essen["country"] != "").mean() > 0.99 and (essen["genre"] != "").mean() > 0.9
    assert {"Germany", "China", "Ireland", "Luxembourg"} <= set(essen["country"])
    assert (found.loc[found["collection"] == "oneills", "country"] == "Ireland").all()
    assert not found["title"].str.contains("[\x80-\x9f]").any()  # DOS letters repaired


@needs_music21
def test_read_tunes_is_deterministic_and_filters(corpus):
    found, _ = corpus
    irish = read_tunes(["oneills"])
    pd.testing.assert_frame_equal(irish, found[found["collection"] == "oneills"].reset_index(drop=True))


@needs_music21
def test_reading_never_imports_music21():
    """Reading stays cheap because it never loads music21; a check of that, not of wall-clock time."""
    script = ("import sys; from tunespace.corpus.tunes import read_tunes; "
              "read_tunes(); print('music21' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False"]

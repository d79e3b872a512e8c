"""The real tunes behind the built-in corpus: the ABC folk collections that ship inside the music21 package.

music21 is a source of files here, never imported: its import and its ABC parser cost about 60 ms a tune, while
the header fields this module needs come out of plain string work, so all ~13,000 tunes read in half a second.
Each tune keeps its full ABC text (``abc``) for whatever parses the notes later.

Decisions:

* Rows come in file order: collections in the order of :data:`COLLECTIONS`, files sorted by name, tunes in the
  order they stand in the file. ``tune_id`` is ``collection/file_stem/X`` (a second tune with the same X in one
  file would get ``X~2``; the shipped files have none).
* Text is UTF-8; the Essen files that hide DOS code-page letters in it are repaired (see :func:`_read_text`).
* A tune is dropped, and listed by :func:`read_tunes_with_skips` with the reason, when it has no ``K:`` field,
  when no note follows its ``K:`` line, or when it comes from one of the Essen test files (``test0``, ``test1``,
  ``testd``, ``teste``): those hold the same few tunes again, with origins made up to test software (one melody
  is labelled Irish, German and Hungarian in turn).
* ``country`` is an English country name. For Essen it is the first country the ``O:`` line names once the
  continents are set aside ("Europa, Mitteleuropa, Deutschland, Westfalen" -> Germany); a line that starts with a
  region gets the country the region lies in today (Lothringen, Elsass -> France; Tirol -> Austria; a Chinese
  province -> China). The historical states the collection names (Yugoslavia, Czechoslovakia, Soviet Union) stay.
  Of "Deutschland / Frankreich, Lothringen" the first alternative is read (Germany, Lothringen); whatever
  follows a ";" (a second origin) is not.
* ``region`` is the first place below the country, in the source's own spelling ("Westfalen", "Lothringen",
  "Shanxi"), or the country itself when the line names nothing below it. Deeper levels (counties, villages) are
  left out on purpose: most of them occur once or twice and would only add noise to captions and tags. For
  China the region is the province, found even when the line runs it together with a county ("Shanxi
  Zuoquan") or prefixes it ("bei Liaoning"), else the first place named ("Dongbei"); tone digits in pinyin
  are dropped ("Sha1nxi1" -> "Shanxi").
* Outside Essen the origin is known only where a whole collection has one (O'Neill's: Ireland; the two
  miscFolk books: the United States, and Northumberland in England) or where a tune says so with a bare origin
  word in ``O:`` or ``C:`` ("SCOTCH", "Irish."), which is then not taken for a composer.
* ``dance_type`` (not for Essen) comes from, in order: the ``R:`` field; a " -- TYPE" suffix of the title (Ryan's);
  for O'Neill's, the section of the book the tune's number falls in (its ``B:`` number, else ``X:``); a dance
  word in the title. Labels are normalised to one vocabulary: "double jig" -> jig, "slipjig" -> slip jig,
  "fling" -> highland fling, "quickstep" -> march, "rant" -> reel, "long dance" -> set dance, "lament" and
  "slow air" -> air; "clog", "minuet", "gavotte" and "walkaround" are kept as they are.
* ``genre`` is the Essen ``R:`` text with the brackets and placeholders ("???", "yyy") removed and " - " closed
  up ("Liebes - Lied" -> "Liebes-Lied"); other collections have none.
* ``tonic`` is a letter with "#" or "b" (German "H", "Es", "Fis" are read too); ``mode`` is major, minor, dorian,
  phrygian, lydian, mixolydian or locrian, major when ``K:`` names no mode, as ABC says, and empty when the
  mode text is not one of these. The bagpipe key ``K:Hp`` is A mixolydian. Essen gives a mode only where its
  converter wrote one, so most Essen tunes read as major.
* ``meter`` is "a/b" ("C" -> 4/4, "C|" -> 2/2), empty for free meter ("none", Essen's "FREI").
* ``tempo_bpm`` is quarter notes per minute from the first ``Q:``, read as abc2midi reads it: "Q:3/8=120" is 180,
  "Q:1/8 3/8=40" is 80 (the beat is the sum), words in quotes are ignored. A bare "Q:120" is 120 quarter notes
  a minute: abc2midi has read it so since 2004 (a 2013 change to unit notes, as the ABC 1.6 text has it, was
  withdrawn the next day) and music21 does too; counting unit notes gave airs of 15 bpm (O'Neill's "Q:60" under
  2/4, whose unit is 1/16). The legacy "Q:C=120" counts unit notes (``L:``), "Q:C2=120" notes twice as long.
  NaN when ``Q:`` is absent or only words; the builder then uses the dance type's usual tempo.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from tunespace.errors import DatasetNotFoundError, TunespaceError

logger = logging.getLogger(__name__)


class CorpusNotInstalledError(DatasetNotFoundError):
    """music21, whose package folder holds the tunes, is not installed."""


class UnknownCollectionError(TunespaceError, ValueError):
    """A collection name that is not in :data:`COLLECTIONS`."""


class Collection(NamedTuple):
    folder: str  # under music21/corpus
    title: str  # human name, used in captions and metadata text


COLLECTIONS: dict[str, Collection] = {
    "essen": Collection("essenFolksong", "Essen folksong collection"),
    "oneills": Collection("oneills1850", "O'Neill's Music of Ireland (1850)"),
    "ryans": Collection("ryansMammoth", "Ryan's Mammoth Collection"),
    "airds": Collection("airdsAirs", "Aird's Airs"),
    "miscfolk": Collection("miscFolk", "American fife tunes and Northumbrian Minstrelsy"),
}
"""Short name -> folder under music21's corpus and human name, in the order rows are returned."""

TUNE_COLUMNS = ("tune_id", "collection", "title", "region", "country", "genre", "dance_type", "tonic", "mode",
                "meter", "tempo_bpm", "composer", "abc")
SKIP_COLUMNS = ("tune_id", "file", "reason")

_ESSEN_TEST_FILES = frozenset({"test0", "test1", "testd", "teste"})

# (region, country) where a whole collection or book has one origin.
_ORIGIN_BY_COLLECTION = {"oneills": ("Ireland", "Ireland")}
_ORIGIN_BY_FILE = {("miscfolk", "americanfifeopus"): ("United States", "United States"),
                   ("miscfolk", "northumbrianminstrelsyopus"): ("Northumberland", "England")}
_ORIGIN_WORDS = {"irish": "Ireland", "scotch": "Scotland", "scottish": "Scotland", "scots": "Scotland",
                 "english": "England", "welsh": "Wales", "american": "United States"}

# Essen O: lines, lower-cased with " - " closed up.
_AREAS = frozenset({"europa", "mitteleuropa", "osteuropa", "westeuropa", "nordeuropa", "suedeuropa", "suedosteuropa",
                    "asien", "ostasien", "amerika", "mittelamerika", "nord-amerika", "sued-amerika",
                    "miteleuropa"})  # sic, a typo in the source
_COUNTRIES = {
    "deutschland": "Germany", "oesterreich": "Austria", "schweiz": "Switzerland", "schweizland": "Switzerland",
    "franzoesische schweiz": "Switzerland", "niederlande": "Netherlands", "belgien": "Belgium",
    "frankreich": "France", "luxemburg": "Luxembourg", "irland": "Ireland", "island": "Iceland",
    "england": "England", "ungarn": "Hungary", "polen": "Poland", "jugoslawien": "Yugoslavia",
    "rumaenien": "Romania", "tschechoslowakei": "Czechoslovakia", "udssr": "Soviet Union", "russland": "Russia",
    "schweden": "Sweden", "daenemark": "Denmark", "norwegen": "Norway", "finnland": "Finland",
    "italien": "Italy", "griechenland": "Greece", "usa": "United States", "kanada": "Canada",
    "mexiko": "Mexico", "brasilien": "Brazil", "china": "China",
}
_REGION_COUNTRY = {"lothringen": "France", "elsass": "France", "tirol": "Austria", "steiermark": "Austria",
                   "oberoesterreich": "Austria", "ober-oesterreich": "Austria", "unter-oesterreich": "Austria",
                   "nieder-oesterreich": "Austria", "appenzell": "Switzerland",
                   "emmenthal": "Switzerland", "emmental": "Switzerland", "siebethal": "Switzerland",
                   "oberhaslithal": "Switzerland"}
CHINESE_PROVINCES = frozenset({
    "anhui", "fujian", "gansu", "guangdong", "guangxi", "guizhou", "hainan", "hebei", "heilongjiang", "henan",
    "hubei", "hunan", "jiangsu", "jiangxi", "jilin", "liaoning", "neimeng", "ningxia", "qinghai", "shaanxi",
    "shandong", "shanxi", "sichuan", "taiwan", "xinjiang", "xizang", "yunnan", "zhejiang"})
_ADMIN_PREFIX = re.compile(r"^(?:Kt\.|Kanton|Kr\.|Kreis|Kom\.|Komitat|Provinz|Bez\.|Gem\.)\s*")

DANCE_TYPES = ("reel", "jig", "slip jig", "hornpipe", "strathspey", "highland fling", "air", "polka", "march",
               "waltz", "set dance", "slide", "clog", "minuet", "gavotte", "walkaround")
"""The normalised dance-type vocabulary."""
_DANCE_ALIASES = {"double jig": "jig", "doublejig": "jig", "single jig": "jig", "slipjig": "slip jig",
                  "hop jig": "slip jig", "fling": "highland fling", "quickstep": "march", "quick step": "march",
                  "rant": "reel", "long dance": "set dance", "lament": "air", "slow air": "air",
                  "walk around": "walkaround"}
_DANCE_WORDS = {**{name: name for name in DANCE_TYPES}, **_DANCE_ALIASES}
_DANCE_IN_TITLE = re.compile(r"\b(" + "|".join(sorted((re.escape(w).replace(r"\ ", r"\s+") for w in _DANCE_WORDS),
                                                      key=len, reverse=True)) + r")s?\b", re.IGNORECASE)
# O'Neill's Music of Ireland is ordered by kind; (last number of the section, dance type).
_ONEILLS_SECTIONS = ((700, "air"),  # airs and songs 1-625, O'Carolan's compositions 626-700
                     (1115, "jig"), (1175, "slip jig"), (1555, "reel"), (1780, "hornpipe"),
                     (1800, "set dance"), (1850, ""))  # 1801-1850: marches and miscellaneous
_ONEILLS_NUMBER = re.compile(r"O'Neill's\s+(\d+)")

_MODES = {"maj": "major", "ion": "major", "min": "minor", "aeo": "minor", "m": "minor", "dor": "dorian",
          "phr": "phrygian", "lyd": "lydian", "mix": "mixolydian", "loc": "locrian"}
_KEY = re.compile(r"([A-Ha-h])(#|b|is|es|s(?![a-z]))?\s*(.*)")
_KEY_EXTRAS = re.compile(r"^(?:bass|treble|alto|tenor|clef=|octave=|transpose=|middle=|[-+]8va|treble8|[=^_])")
_FIELD = re.compile(r"([A-Za-z]):(.*)")
_FRACTION = re.compile(r"(\d+)\s*/\s*(\d+)")
_QUOTED = re.compile(r'"[^"]*"')
_BEAT = re.compile(r"(?<![\d/])(\d+)(?:\s*/\s*(\d+))?")  # "3/8" or a whole number of whole notes
_LEGACY_BEAT = re.compile(r"[A-Ga-g](\d*)(/*)(\d*)")  # "C", "C2", "C/2", "C3/2": unit notes
_NOTE = re.compile(r"[A-Ga-g]")
_BODY_NOISE = re.compile(r'"[^"]*"|![^!]*!|\[[A-Za-z]:[^\]]*\]')
_HYPHEN = re.compile(r"\s*-\s*")
_PARENTHESES = re.compile(r"\([^)]*\)?|[()?]")
_ARTICLE = re.compile(r"(.+?),\s*(The|A|An)", re.IGNORECASE)
_CAPITAL = re.compile(r"(^o'|^|[.\-])([a-z])")
_LATEX = re.compile(r"\\\w+")
_BY = re.compile(r"^[Bb]y\s+")
_COLLECTED = re.compile(r"\(?\s*collected\s+(by|from)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"[?y\s]*")
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)")
_LETTERS = re.compile(r"[a-z]*")
_DIGITS = re.compile(r"\d")
_C1_CONTROL = re.compile("[\x80-\x9f]")
_DOS_REPAIR = {**{code: bytes([code]).decode("cp437") for code in range(0x80, 0xA0)},
               0x9E: "ß", 0xE1: "ß"}  # 0x9E is "ß" in the Atari ST set that some files mix in; 0xE1 in cp437


def corpus_root() -> Path:
    """music21's corpus folder, found without importing music21 (its import is slow and not needed here)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or spec.origin is None:
        raise CorpusNotInstalledError(
            "the built-in corpus reads the ABC tunes shipped with music21, which is not installed: "
            "pip install music21")
    root = Path(spec.origin).parent / "corpus"
    if not root.is_dir():
        raise CorpusNotInstalledError(f"music21 is installed but has no corpus folder at {root}")
    return root


def read_tunes(collections: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per usable tune of the named collections (all by default); see :func:`read_tunes_with_skips`."""
    tunes, _ = read_tunes_with_skips(collections)
    return tunes


def read_tunes_with_skips(collections: Iterable[str] | None = None,
                          root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usable tunes (columns :data:`TUNE_COLUMNS`) and the dropped ones (``tune_id``, ``file``, ``reason``).

    `root` replaces music21's corpus folder, for a copy of it or a test folder laid out the same way.
    """
    names = _collection_names(collections)
    base = corpus_root() if root is None else Path(root)
    rows: list[dict[str, object]] = []
    skipped: list[dict[str, str]] = []
    for name in names:
        folder = base / COLLECTIONS[name].folder
        if not folder.is_dir():
            raise DatasetNotFoundError(f"collection {name!r}: no folder {folder}")
        for path in sorted(folder.glob("*.abc")):
            file_rows, file_skips = parse_abc_file(_read_text(path), name, path.stem)
            rows.extend(file_rows)
            skipped.extend({**skip, "file": str(path.relative_to(base))} for skip in file_skips)
    tunes = pd.DataFrame(rows, columns=list(TUNE_COLUMNS))
    tunes["tempo_bpm"] = tunes["tempo_bpm"].astype(np.float64)
    skips = pd.DataFrame(skipped, columns=list(SKIP_COLUMNS))
    logger.info("read %d tunes from %s; %d skipped", len(tunes), ", ".join(names), len(skips))
    return tunes, skips


def parse_abc_file(text: str, collection: str, stem: str) -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    """Split one ABC file on its ``X:`` lines into tune rows and skip records (``tune_id``, ``reason``)."""
    rows: list[dict[str, object]] = []
    skipped: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for number, lines in split_tunes(text):
        seen[number] = seen.get(number, 0) + 1
        tune_id = f"{collection}/{stem}/{number}" + (f"~{seen[number]}" if seen[number] > 1 else "")
        if collection == "essen" and stem in _ESSEN_TEST_FILES:
            skipped.append({"tune_id": tune_id, "reason": "Essen test file: repeated tunes with made-up origins"})
            continue
        row, reason = parse_tune(lines, collection, stem)
        if row is None:
            skipped.append({"tune_id": tune_id, "reason": reason})
        else:
            rows.append({"tune_id": tune_id, **row})
    return rows, skipped


def split_tunes(text: str) -> list[tuple[str, list[str]]]:
    """(X number, lines) of each tune; text before the first ``X:`` (comments in the shipped files) is ignored."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    tunes = []
    for start, end in zip(starts, starts[1:] + [len(lines)]):
        block = lines[start:end]
        while block and not block[-1].strip():
            block.pop()
        value = block[0][2:].split("%", 1)[0].strip()
        tunes.append((str(int(value)) if value.isdigit() else value, block))
    return tunes


def parse_tune(lines: list[str], collection: str, stem: str = "") -> tuple[dict[str, object] | None, str]:
    """The fields of one tune (every column but ``tune_id``), or None and why it cannot be used."""
    fields: dict[str, list[str]] = {}
    key_line = None
    for i, line in enumerate(lines):
        match = _FIELD.match(line)
        if match is None:
            continue
        letter, value = match.group(1), match.group(2).split("%", 1)[0].strip()
        if letter == "K":
            key_line = i
            fields["K"] = [value]
            break
        fields.setdefault(letter, []).append(value)
    if key_line is None:
        return None, "no K: field"
    if not any(_is_music(line) for line in lines[key_line + 1:]):
        return None, "no notes after K:"

    raw_title = _first(fields, "T") or next((line[2:].strip() for line in lines if line.startswith("T:")), "")
    title, title_dance = split_title(raw_title)
    composer, origin_hint = clean_composer(_first(fields, "C"))
    if collection == "essen":
        region, country = essen_origin(_first(fields, "O"))
        genre = clean_genre(_first(fields, "R"))
        dance_type = ""
    else:
        hint = origin_hint or _origin_word(_first(fields, "O"))
        region, country = _ORIGIN_BY_FILE.get(
            (collection, stem), _ORIGIN_BY_COLLECTION.get(collection, (hint, hint) if hint else ("", "")))
        genre = ""
        dance_type = (normalise_dance(_first(fields, "R")) or normalise_dance(title_dance)
                      or (_oneills_section(fields) if collection == "oneills" else "")
                      or dance_in_title(title))
    tonic, mode = parse_key(fields["K"][0])
    meter = parse_meter(_first(fields, "M"))
    unit = parse_unit_length(_first(fields, "L"), meter)
    return {
        "collection": collection, "title": title, "region": region, "country": country, "genre": genre,
        "dance_type": dance_type, "tonic": tonic, "mode": mode, "meter": meter,
        "tempo_bpm": parse_tempo(_first(fields, "Q"), unit), "composer": composer,
        "abc": "\n".join(lines) + "\n",
    }, ""


@functools.lru_cache(maxsize=None)
def parse_key(value: str) -> tuple[str, str]:
    """(tonic, mode) of a ``K:`` value: "ADor" -> ("A", "dorian"), "Bb" -> ("Bb", "major"), "Hp" -> ("A", ...)."""
    value = value.strip()
    if value.lower() == "hp":  # Highland bagpipe: A mixolydian (F and C sharp, G natural)
        return "A", "mixolydian"
    match = _KEY.fullmatch(value)
    if match is None:
        return "", ""
    letter, accidental, rest = match.groups()
    letter = letter.upper()
    if letter == "H":  # German name of B
        letter = "B"
    tonic = letter + {"#": "#", "is": "#", "b": "b", "es": "b", "s": "b"}.get(accidental or "", "")
    words = [word for word in rest.split() if not _KEY_EXTRAS.match(word.lower())]
    if not words:
        return tonic, "major"
    word = _LETTERS.match(words[0].lower()).group(0)
    mode = _MODES.get(word[:3]) if len(word) >= 3 else _MODES.get(word)
    return tonic, mode or ""


@functools.lru_cache(maxsize=None)
def parse_meter(value: str) -> str:
    """"6/8" from an ``M:`` value; "C" is 4/4, "C|" 2/2; empty for free meter or none."""
    value = value.strip().rstrip("]").strip()
    if value in ("C", "c"):
        return "4/4"
    if value in ("C|", "c|"):
        return "2/2"
    if value.upper().startswith("FREI") or value.lower() in ("", "none"):
        return ""
    match = _FRACTION.fullmatch(value)
    return f"{match.group(1)}/{match.group(2)}" if match else ""


@functools.lru_cache(maxsize=None)
def parse_unit_length(value: str, meter: str) -> float:
    """The ``L:`` note length in whole notes; ABC's default is 1/16 under a meter below 3/4, else 1/8."""
    match = _FRACTION.search(value)
    if match and int(match.group(2)):
        return int(match.group(1)) / int(match.group(2))
    if meter:
        top, bottom = (int(part) for part in meter.split("/"))
        if bottom and top / bottom < 0.75:
            return 1 / 16
    return 1 / 8


@functools.lru_cache(maxsize=None)
def parse_tempo(value: str, unit_length: float = 1 / 8) -> float:
    """Quarter notes per minute from a ``Q:`` value, or NaN when it gives no number.

    "1/4=120", "3/8=120" (beats of a dotted quarter), "1/8 3/8=40" (beats summed), '"Allegro" 1/4=120', the bare
    "120" (quarter notes, as abc2midi and music21 read it) and the legacy "C=120", "C2=120", "C/2=120", whose
    beat is that many unit notes of length `unit_length` (the tune's ``L:``).
    """
    text = _QUOTED.sub(" ", value).strip()
    if "=" in text:
        beat_text, _, rate_text = text.partition("=")
        legacy = _LEGACY_BEAT.fullmatch(beat_text.strip())
        if legacy:
            beat = unit_length * _note_length(*legacy.groups())
        else:
            beat = sum(int(top) / int(bottom or 1) for top, bottom in _BEAT.findall(beat_text) if int(bottom or 1))
    else:
        beat, rate_text = 0.25, text
    rate = _NUMBER.match(rate_text)
    if rate is None or beat <= 0:
        return math.nan
    bpm = float(rate.group(1)) * beat / 0.25
    return bpm if bpm > 0 else math.nan


def _note_length(top: str, slashes: str, bottom: str) -> float:
    """An ABC note length in unit notes: "2" is 2, "/2" and "/" are 1/2, "//" is 1/4, "3/2" is 3/2."""
    length = float(top or 1)
    if slashes:
        length /= float(bottom) if bottom else 2.0 ** len(slashes)
    return length


def split_title(value: str) -> tuple[str, str]:
    """(title, dance word) of a ``T:`` value: "LANIGAN'S BALL -- JIG" -> ("Lanigan's Ball", "JIG").

    Titles in capitals are put in title case, a trailing ", The" moves to the front, a closing period goes.
    """
    title, _, dance = value.partition(" -- ")
    title = " ".join(title.split()).rstrip(".").strip()
    if "," in title:
        article = _ARTICLE.fullmatch(title)
        if article:
            title = f"{article.group(2)} {article.group(1).rstrip('.')}"
    if title.isupper():
        title = " ".join(_capitalise(word) for word in title.split(" "))
    return title, dance.strip()


def normalise_dance(label: str) -> str:
    """A dance label in the normalised vocabulary (:data:`DANCE_TYPES`), or "" when it names none."""
    return _DANCE_WORDS.get(" ".join(label.strip().strip(".").lower().split()), "")


def dance_in_title(title: str) -> str:
    """The dance type a title names ("The Duke of York's March" -> march), the last one when it names several."""
    found = _DANCE_IN_TITLE.findall(title)
    return normalise_dance(found[-1]) if found else ""


@functools.lru_cache(maxsize=None)
def clean_composer(value: str) -> tuple[str, str]:
    """(composer, origin country) from a ``C:`` value: a bare origin word ("Irish.") is an origin, not a person,
    and "collected by ..." names a collector, not a composer."""
    text = _BY.sub("", _LATEX.sub("", value).replace('"', "").strip().strip(".,").strip())
    if not text or _COLLECTED.match(text):
        return "", ""
    origin = _origin_word(text)
    if origin:
        return "", origin
    if text.isupper():
        text = " ".join(_capitalise(word) for word in text.split(" "))
    return text, ""


@functools.lru_cache(maxsize=None)
def clean_genre(value: str) -> str:
    """The Essen ``R:`` label without brackets or placeholders, hyphens closed up: "Liebes - Lied" -> "Liebes-Lied"."""
    text = " ".join(_HYPHEN.sub("-", value.strip().strip("[]")).split()).strip(" ,;.")
    return "" if _PLACEHOLDER.fullmatch(text) else text


@functools.lru_cache(maxsize=None)
def essen_origin(value: str) -> tuple[str, str]:
    """(region, country) of an Essen ``O:`` line; see the module notes for the rules."""
    parts = []
    for part in value.split(";", 1)[0].split(","):
        part = _HYPHEN.sub("-", " ".join(_PARENTHESES.sub(" ", part.split("/", 1)[0]).split())).strip(" .")
        if part and part.lower() not in _AREAS:
            parts.append(part)
    if not parts:
        return "", ""
    first = parts[0].lower()
    if first in _COUNTRIES:
        country, below = _COUNTRIES[first], parts[1:]
    elif first in _REGION_COUNTRY:
        country, below = _REGION_COUNTRY[first], parts
    elif _province(parts[0]):
        country, below = "China", parts
    else:
        return "", ""  # a typo, an adjective ("flaemisch") or a place too small to place
    region = next((p for p in map(_province, below) if p), "") if country == "China" else ""
    region = region or next((_ADMIN_PREFIX.sub("", p) for p in below if p[0].isupper()), "")
    return region or country, country


def _province(part: str) -> str:
    """The Chinese province a part of an O: line names, in plain pinyin ("Shanxi"), or ""."""
    for word in _DIGITS.sub("", part).split():
        if word.lower() in CHINESE_PROVINCES:
            return word.capitalize()
    return ""


def _oneills_section(fields: dict[str, list[str]]) -> str:
    """The dance type of the O'Neill's book section the tune's number falls in."""
    match = _ONEILLS_NUMBER.search(" ".join(fields.get("B", [])))
    number_text = match.group(1) if match else _first(fields, "X")
    if not number_text.isdigit():
        return ""
    number = int(number_text)
    return next((kind for last, kind in _ONEILLS_SECTIONS if number <= last), "")


def _origin_word(value: str) -> str:
    return _ORIGIN_WORDS.get(value.strip().strip(".").lower(), "")


def _capitalise(word: str) -> str:
    """"O'ROURKE'S" -> "O'Rourke's", "G.L.TRACY" -> "G.L.Tracy": capitals only where a name part starts."""
    return _CAPITAL.sub(lambda m: m.group(1).upper() + m.group(2).upper(), word.lower())


def _is_music(line: str) -> bool:
    """A body line with at least one note (fields, comments, chord names and decorations aside)."""
    if not line.strip() or line.startswith("%") or _FIELD.match(line):
        return False
    return _NOTE.search(_BODY_NOISE.sub("", line.split("%", 1)[0])) is not None


def _first(fields: dict[str, list[str]], letter: str) -> str:
    values = fields.get(letter)
    return values[0] if values else ""


def _collection_names(collections: Iterable[str] | None) -> list[str]:
    """The asked collections in canonical order, so the rows never depend on the order they were named in."""
    if collections is None:
        return list(COLLECTIONS)
    asked = set(collections)
    unknown = sorted(asked - set(COLLECTIONS))
    if unknown:
        raise UnknownCollectionError(
            f"unknown collection(s) {', '.join(unknown)}; choose from {', '.join(COLLECTIONS)}")
    return [name for name in COLLECTIONS if name in asked]


def _read_text(path: Path) -> str:
    """The file as UTF-8 (Latin-1 if it is not valid UTF-8), with DOS-codepage letters repaired.

    Some Essen files were DOS text read as Latin-1 before being saved as UTF-8, so "ä" arrives as the control
    character U+0084 and "ß" as U+009E or "á". A file holding such control characters is mapped back through
    code page 437; other files (the Irish ones use "á" as itself) are left alone.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if _C1_CONTROL.search(text):
        text = text.translate(_DOS_REPAIR)
    return text

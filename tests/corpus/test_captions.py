"""Captions, metadata text and tags: pinned phrasings, graceful gaps, and every real tune in three languages."""

from __future__ import annotations

import importlib.util
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.corpus.captions import (
    DANCES,
    FAMILIES,
    GENRES,
    INSTRUMENTS,
    LANGUAGES,
    TEMPO_CLASSES,
    VARIANTS,
    CaptionError,
    captions_table,
    describe,
    genre_key,
    metadata_text,
    tempo_class,
    track_tags,
)
from tunespace.corpus.tunes import COLLECTIONS, DANCE_TYPES

needs_music21 = pytest.mark.skipif(importlib.util.find_spec("music21") is None, reason="music21 is not installed")

REEL = {
    "track_id": "oneills/1176-1275/1190", "title": "Rocky Road to Dublin", "collection": "oneills",
    "collection_name": "O'Neill's Music of Ireland (1850)", "region": "Ireland", "country": "Ireland",
    "genre": "", "dance_type": "reel", "tonic": "D", "mode": "major", "meter": "4/4", "tempo_bpm": 200.0,
    "instrument": "violin", "instrument_family": "strings",
}
LOVE_SONG = {
    "track_id": "essen/erk10/5", "title": "Es waren zwei Königskinder", "collection": "essen",
    "collection_name": "Essen folksong collection", "region": "Westfalen", "country": "Germany",
    "genre": "Liebes-Lied, Leid, Klage", "dance_type": "", "tonic": "Bb", "mode": "minor", "meter": "3/4",
    "tempo_bpm": 72.4, "instrument": "church organ", "instrument_family": "organ",
}
BROKEN = re.compile(r"\b(?:None|nan|NaN|NA|null)\b|, ,|,,|\(\)|\s[,.;:]|，，|（）|：；|;;|\s{2}")
WORDS = {  # what a caption must name, by language: instrument and dance type
    "en": lambda track: (track["instrument"], DANCES[track["dance_type"]][0]),
    "de": lambda track: (INSTRUMENTS[track["instrument"]][0][1], DANCES[track["dance_type"]][1][1]),
    "zh": lambda track: (INSTRUMENTS[track["instrument"]][1], DANCES[track["dance_type"]][2]),
}


@pytest.mark.parametrize("bpm, expected", [
    (40.0, "slow"), (89.9, "slow"), (90.0, "moderate"), (129.9, "moderate"), (130.0, "fast"), (250, "fast"),
    (float("nan"), ""), (None, ""), (pd.NA, ""), (math.inf, ""),
])
def test_tempo_class_boundaries(bpm, expected):
    assert tempo_class(bpm) == expected


def test_tempo_classes_are_ordered_and_a_bad_tempo_is_an_error():
    bounds = [upper for _, upper in TEMPO_CLASSES]
    assert bounds == sorted(bounds) and bounds[-1] == math.inf
    with pytest.raises(CaptionError):
        tempo_class(-5.0)


@pytest.mark.parametrize("genre, expected", [
    ("Liebes-Lied", "liebeslied"), ("Liebeslieder", "liebeslied"), ("Romanze, Ballade, Lied", "romanze"),
    ("Staende-, Soldaten-, Kriegs-Lied", "staendelied"), ("Kinder-, Wiegen-Lied", "kinderlied"),
    ("Scherz-, Spottlied", "scherzlied"), ("erzaehlendes Volks-Lied, Sage, Mord", "erzaehlendes volkslied"),
    ("Jägerlied", "jaegerlied"), ("Xiaodiao. Geming lishi minge", "xiaodiao"), ('"erzählendes Lied"',
                                                                                  "erzaehlendes lied"),
    ("???, Tanz-Lied", "tanzlied"), ("", ""), (None, ""), (float("nan"), ""),
])
def test_genre_key(genre, expected):
    assert genre_key(genre) == expected


def test_first_phrasing_in_each_language_is_pinned():
    assert describe(REEL, "en", 0) == (
        "A fast Irish reel in D major and 4/4 time, at about 200 beats per minute, played on the violin.")
    assert describe(REEL, "de", 0) == (
        "Ein schnelles irisches Reel in D-Dur im 4/4-Takt, mit etwa 200 Schlägen pro Minute, gespielt auf der Geige.")
    assert describe(REEL, "zh", 0) == "一首快速的爱尔兰里尔舞曲，D大调，4/4拍，每分钟约200拍，由小提琴演奏。"
    assert describe(LOVE_SONG, "en", 0) == (
        "A slow German love song from Westphalia in B-flat minor and 3/4 time, at about 72 beats per minute, "
        "played on the church organ.")
    assert describe(LOVE_SONG, "de", 0) == (
        "Ein langsames deutsches Liebeslied aus Westfalen in b-Moll im 3/4-Takt, mit etwa 72 Schlägen pro Minute, "
        "gespielt auf der Kirchenorgel.")
    assert describe(LOVE_SONG, "zh", 0) == "一首慢速的德国情歌，来自威斯特法伦，降B小调，3/4拍，每分钟约72拍，由教堂管风琴演奏。"


def test_other_phrasings_carry_the_same_facts():
    assert describe(REEL, "en", 1) == (
        "Reel from Ireland. Key: D major; meter: 4/4; tempo: fast (200 BPM); instrument: violin (bowed string "
        "instrument); source: O'Neill's Music of Ireland (1850).")
    assert describe(REEL, "de", 2) == (
        "Die Geige, ein Streichinstrument, spielt dieses schnelle irische Reel in D-Dur im 4/4-Takt mit etwa 200 "
        "Schlägen pro Minute.")
    assert describe(REEL, "zh", 2) == "这首快速的爱尔兰里尔舞曲由小提琴（弦乐器）演奏，采用D大调和4/4拍，速度约为每分钟200拍。"


@pytest.mark.parametrize("dance, variant, expected", [
    ("jig", 0, "Ein schneller irischer Jig"), ("hornpipe", 0, "Eine schnelle irische Hornpipe"),
    ("reel", 0, "Ein schnelles irisches Reel"), ("jig", 2, "spielt diesen schnellen irischen Jig"),
    ("hornpipe", 2, "spielt diese schnelle irische Hornpipe"), ("march", 1, "Marsch aus Irland."),
])
def test_german_adjectives_agree_with_the_gender_of_the_dance(dance, variant, expected):
    assert expected in describe({**REEL, "dance_type": dance}, "de", variant)


@pytest.mark.parametrize("tonic, mode, expected", [
    ("B", "minor", "h-Moll"), ("Bb", "major", "B-Dur"), ("F#", "minor", "fis-Moll"), ("Eb", "major", "Es-Dur"),
    ("A", "dorian", "A-Dorisch"), ("D", "mixolydian", "D-Mixolydisch"), ("Ab", "major", "As-Dur"),
])
def test_german_key_names(tonic, mode, expected):
    assert f"in {expected} " in describe({**REEL, "tonic": tonic, "mode": mode}, "de", 0)


def test_variants_differ_and_name_instrument_and_dance_in_each_language():
    texts = [describe(REEL, language, variant) for language in LANGUAGES for variant in range(VARIANTS)]
    assert len(set(texts)) == len(texts)
    for language in LANGUAGES:
        for variant in range(VARIANTS):
            text = describe(REEL, language, variant)
            assert all(word.lower() in text.lower() for word in WORDS[language](REEL)), text


def test_unknown_labels_fall_back_to_the_original_string():
    track = {**REEL, "dance_type": "hambo", "instrument": "nyckelharpa", "instrument_family": "bowed",
             "country": "Sweden", "region": "Dalarna"}
    for language in LANGUAGES:
        for variant in range(VARIANTS):
            text = describe(track, language, variant)
            assert "nyckelharpa" in text and "hambo" in text.lower() and "Dalarna" in text, text
    essen = {**LOVE_SONG, "genre": "Ansinge-Lied, Heische"}
    assert "folk song (Ansingelied)" in describe(essen, "en", 0)
    assert "Volkslied (Ansingelied)" in describe(essen, "de", 0)


def test_an_empty_track_still_reads_well():
    assert [describe({"track_id": "x"}, "en", variant) for variant in range(VARIANTS)] == [
        "A tune.", "Tune.", "This is a tune."]
    assert describe({"track_id": "x"}, "de", 0) == "Eine Melodie."
    assert describe({"track_id": "x"}, "zh", 0) == "一首乐曲。"


OPTIONAL = ("title", "collection", "collection_name", "region", "country", "genre", "dance_type", "tonic", "mode",
            "meter", "tempo_bpm", "instrument", "instrument_family")


@settings(max_examples=150, deadline=None)
@given(missing=st.sets(st.sampled_from(OPTIONAL)), empty=st.sampled_from([None, float("nan"), pd.NA, "", "  "]),
       base=st.sampled_from([REEL, LOVE_SONG]))
def test_missing_fields_are_left_out_gracefully(missing, empty, base):
    track = {key: empty if key in missing else value for key, value in base.items()}
    for language in LANGUAGES:
        for variant in range(VARIANTS):
            text = describe(track, language, variant)
            assert not BROKEN.search(text), text
            assert text.endswith("." if language != "zh" else "。") and text[0] == text[0].upper(), text
    for tag in track_tags(track):
        assert re.fullmatch(r"[a-z]+:\S+", tag), tag


def test_unknown_language_or_variant_is_an_error():
    with pytest.raises(CaptionError, match="fr"):
        describe(REEL, "fr", 0)
    with pytest.raises(CaptionError, match="variant"):
        describe(REEL, "en", VARIANTS)
    with pytest.raises(CaptionError):
        captions_table(pd.DataFrame([REEL]), variants=VARIANTS + 1)
    with pytest.raises(CaptionError):
        captions_table(pd.DataFrame([REEL]).drop(columns="track_id"))


def test_metadata_text_is_title_and_collection_only():
    assert metadata_text(REEL) == "Rocky Road to Dublin — O'Neill's Music of Ireland (1850)"
    assert metadata_text({"title": "Lied", "collection": "essen"}) == "Lied — Essen folksong collection"
    assert metadata_text({"collection": "airds", "title": float("nan")}) == "Aird's Airs"
    for attribute in ("reel", "D major", "violin", "4/4", "fast", "Irish"):
        assert attribute.lower() not in metadata_text(REEL).lower()


def test_tags():
    assert track_tags(REEL) == ["dance:reel", "region:ireland", "mode:major", "meter:4/4", "family:strings",
                                "tempo:fast"]
    assert track_tags(LOVE_SONG) == ["genre:liebeslied", "region:westfalen", "country:germany", "mode:minor",
                                     "meter:3/4", "family:organ", "tempo:slow"]
    assert track_tags({**REEL, "dance_type": "slip jig"})[0] == "dance:slip_jig"
    assert track_tags({"track_id": "x"}) == []


def test_captions_table_is_long_ordered_and_deterministic():
    tracks = pd.DataFrame([REEL, LOVE_SONG, {"track_id": "bare"}])
    table = captions_table(tracks)
    assert list(table.columns) == ["track_id", "language", "variant", "text"]
    assert len(table) == 3 * len(LANGUAGES) * VARIANTS
    assert table["track_id"].tolist()[:9] == [REEL["track_id"]] * 9
    assert table[["language", "variant"]].head(4).values.tolist() == [["en", 0], ["en", 1], ["en", 2], ["de", 0]]
    assert table.loc[4, "text"] == describe(REEL, "de", 1)
    assert table.loc[9 + 8, "text"] == describe(LOVE_SONG, "zh", 2)
    pd.testing.assert_frame_equal(table, captions_table(tracks.copy()))
    small = captions_table(tracks, languages=("de",), variants=2)
    assert small["language"].eq("de").all() and small["variant"].tolist() == [0, 1] * 3


def test_tables_cover_the_vocabularies():
    assert set(DANCE_TYPES) <= set(DANCES)
    assert {"liebeslied", "ballade", "romanze", "xiaodiao", "shange", "kinderlied"} <= set(GENRES)
    render = pytest.importorskip("tunespace.corpus.render")
    for family, instruments in render.INSTRUMENT_FAMILIES.items():
        assert family in FAMILIES
        assert {name for _, name in instruments} <= set(INSTRUMENTS)


# The installed corpus ------------------------------------------------------------------------------------------


@needs_music21
def test_every_real_tune_gets_nine_clean_distinct_captions():
    from tunespace.corpus.tunes import read_tunes

    tracks = read_tunes().rename(columns={"tune_id": "track_id"})
    instruments = sorted(INSTRUMENTS)
    tracks["instrument"] = [instruments[i % len(instruments)] for i in range(len(tracks))]
    tracks["instrument_family"] = [sorted(FAMILIES)[i % len(FAMILIES)] for i in range(len(tracks))]
    tracks["tempo_bpm"] = tracks["tempo_bpm"].fillna(pd.Series(np.linspace(60, 220, len(tracks)), index=tracks.index))
    tracks["collection_name"] = tracks["collection"].map({key: value.title for key, value in COLLECTIONS.items()})
    table = captions_table(tracks)
    assert len(table) == len(tracks) * len(LANGUAGES) * VARIANTS
    assert not table["text"].str.contains(BROKEN).any()
    assert table.groupby("track_id")["text"].nunique().eq(len(LANGUAGES) * VARIANTS).all()
    by_id = tracks.set_index("track_id")
    danced = by_id[by_id["dance_type"] != ""].index
    sample = table[table["track_id"].isin(danced[::25])]
    for row in sample.itertuples(index=False):
        track = by_id.loc[row.track_id]
        for word in WORDS[row.language](track):
            assert word.lower() in row.text.lower(), row.text
    tags = [tag for record in tracks.iloc[::7].to_dict("records") for tag in track_tags(record)]
    assert {tag.split(":", 1)[0] for tag in tags} == {"dance", "genre", "region", "country", "mode", "meter",
                                                      "family", "tempo"}
    pd.testing.assert_frame_equal(table.head(450), captions_table(tracks.head(50)))

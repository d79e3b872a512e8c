"""Words for every track: descriptions in English, German and Chinese, the weak metadata text, and tags.

The descriptions are what text-to-music search and captioning models learn from, so each track gets several
phrasings per language (:func:`describe`); a model that only matches one template would learn the template,
not the music. They are built from the metadata alone (origin, dance type or genre, key, meter, tempo,
instrument), with a fact that is missing simply left out. :func:`metadata_text` is the deliberately weak text
(title and collection, no attributes) that HTCL-style training uses, and :func:`track_tags` the tag set the
tagging evaluation scores against.

Translations are small tables of the labels the corpus actually has; a label outside them is written as it
came (an unknown Essen genre as "folk song (label)"), never dropped and never replaced by a guess. German noun
phrases are declined by gender, so adjectives agree: "ein schnelles irisches Reel", "diese schnelle Hornpipe".
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from tunespace.corpus.tunes import COLLECTIONS
from tunespace.errors import TunespaceError


class CaptionError(TunespaceError, ValueError):
    """A caption was asked for in a language, variant or tempo this module does not know."""


LANGUAGES = ("en", "de", "zh")
VARIANTS = 3
"""Phrasings per language."""

TEMPO_CLASSES: tuple[tuple[str, float], ...] = (("slow", 90.0), ("moderate", 130.0), ("fast", math.inf))
"""(class, upper bound in quarter notes per minute, exclusive), slowest first."""

_Np = tuple[tuple[str, ...], str, str]  # German noun phrase: adjective stems, noun, gender (m, f, n)

# Dance types (tunes.DANCE_TYPES): English, German noun phrase, Chinese.
DANCES: dict[str, tuple[str, _Np, str]] = {
    "reel": ("reel", ((), "Reel", "n"), "里尔舞曲"),
    "jig": ("jig", ((), "Jig", "m"), "吉格舞曲"),
    "slip jig": ("slip jig", ((), "Slip Jig", "m"), "滑步吉格舞曲"),
    "hornpipe": ("hornpipe", ((), "Hornpipe", "f"), "号笛舞曲"),
    "strathspey": ("strathspey", ((), "Strathspey", "m"), "斯特拉斯佩舞曲"),
    "highland fling": ("highland fling", ((), "Highland Fling", "m"), "高地弗林舞曲"),
    "air": ("air", ((), "Air", "n"), "抒情曲调"),
    "polka": ("polka", ((), "Polka", "f"), "波尔卡"),
    "march": ("march", ((), "Marsch", "m"), "进行曲"),
    "waltz": ("waltz", ((), "Walzer", "m"), "圆舞曲"),
    "set dance": ("set dance", ((), "Set Dance", "m"), "定式舞曲"),
    "slide": ("slide", ((), "Slide", "m"), "斯莱德舞曲"),
    "clog": ("clog dance", ((), "Clog-Tanz", "m"), "木屐舞曲"),
    "minuet": ("minuet", ((), "Menuett", "n"), "小步舞曲"),
    "gavotte": ("gavotte", ((), "Gavotte", "f"), "加沃特舞曲"),
    "walkaround": ("walkaround", ((), "Walkaround", "m"), "绕场舞曲"),
}

# Essen genres, keyed by genre_key(): English, German noun phrase, Chinese.
_SACRED = ("sacred song", (("geistlich",), "Lied", "n"), "宗教歌曲")
_LOVE = ("love song", ((), "Liebeslied", "n"), "情歌")
_NARRATIVE = ("narrative song", (("erzählend",), "Volkslied", "n"), "叙事民歌")
_OCCUPATIONAL = ("occupational song", ((), "Berufslied", "n"), "行业歌曲")
GENRES: dict[str, tuple[str, _Np, str]] = {
    "lied": ("song", ((), "Lied", "n"), "歌曲"),
    "ballade": ("ballad", ((), "Ballade", "f"), "叙事歌"),
    "romanze": ("romance", ((), "Romanze", "f"), "浪漫曲"),
    "liebeslied": _LOVE, "liebe": _LOVE, "liebesklage": _LOVE,
    "erzaehlendes volkslied": _NARRATIVE, "erzaehlendes lied": _NARRATIVE, "erzaehlung": _NARRATIVE,
    "staendelied": _OCCUPATIONAL, "berufslied": _OCCUPATIONAL, "handwerkerlied": _OCCUPATIONAL,
    "kinderlied": ("children's song", ((), "Kinderlied", "n"), "儿歌"),
    "wiegenlied": ("lullaby", ((), "Wiegenlied", "n"), "摇篮曲"),
    "geistlich": _SACRED, "geistliches": _SACRED, "geistliche": _SACRED, "geistliches lied": _SACRED,
    "religioeses lied": _SACRED,
    "tanzlied": ("dance song", ((), "Tanzlied", "n"), "舞蹈歌曲"),
    "sagenlied": ("legend song", ((), "Sagenlied", "n"), "传说歌曲"),
    "sage": ("legend song", ((), "Sagenlied", "n"), "传说歌曲"),
    "jugendlied": ("youth song", ((), "Jugendlied", "n"), "青年歌曲"),
    "scherzlied": ("humorous song", ((), "Scherzlied", "n"), "诙谐歌曲"),
    "spottlied": ("mocking song", ((), "Spottlied", "n"), "讽刺歌曲"),
    "abschiedslied": ("farewell song", ((), "Abschiedslied", "n"), "离别歌曲"),
    "geselligkeitslied": ("convivial song", ((), "Geselligkeitslied", "n"), "联欢歌曲"),
    "soldatenlied": ("soldiers' song", ((), "Soldatenlied", "n"), "士兵歌曲"),
    "kriegslied": ("war song", ((), "Kriegslied", "n"), "战争歌曲"),
    "trinklied": ("drinking song", ((), "Trinklied", "n"), "饮酒歌"),
    "zechlied": ("drinking song", ((), "Trinklied", "n"), "饮酒歌"),
    "studentenlied": ("student song", ((), "Studentenlied", "n"), "学生歌曲"),
    "historisches lied": ("historical song", (("historisch",), "Lied", "n"), "历史歌曲"),
    "historische": ("historical song", (("historisch",), "Lied", "n"), "历史歌曲"),
    "lyrisches lied": ("lyrical song", (("lyrisch",), "Lied", "n"), "抒情歌曲"),
    "hochzeitslied": ("wedding song", ((), "Hochzeitslied", "n"), "婚礼歌曲"),
    "morallied": ("moral song", ((), "Morallied", "n"), "劝世歌"),
    "naturlied": ("nature song", ((), "Naturlied", "n"), "自然歌曲"),
    "wanderlied": ("walking song", ((), "Wanderlied", "n"), "漫游歌曲"),
    "vaterlandslied": ("patriotic song", ((), "Vaterlandslied", "n"), "爱国歌曲"),
    "politisch": ("political song", (("politisch",), "Lied", "n"), "政治歌曲"),
    "jaegerlied": ("hunting song", ((), "Jägerlied", "n"), "狩猎歌曲"),
    "xiaodiao": ("xiaodiao ditty", ((), "Xiaodiao-Weise", "f"), "民间小调"),
    "shange": ("mountain song", ((), "Berglied", "n"), "山歌"),
    "haozi": ("work song", ((), "Arbeitslied", "n"), "劳动号子"),
    "wuge": ("dance song", ((), "Tanzlied", "n"), "舞歌"),
}
_FOLK_SONG = ("folk song", ((), "Volkslied", "n"), "民歌")  # an Essen genre outside GENRES, label appended
_TUNE = ("tune", ((), "Melodie", "f"), "乐曲")  # neither dance type nor genre

# Countries (tunes' English names): English adjective, German name after "aus", German adjective stem, Chinese.
COUNTRIES: dict[str, tuple[str, str, str, str]] = {
    "Ireland": ("Irish", "Irland", "irisch", "爱尔兰"),
    "Scotland": ("Scottish", "Schottland", "schottisch", "苏格兰"),
    "England": ("English", "England", "englisch", "英格兰"),
    "United States": ("American", "den USA", "amerikanisch", "美国"),
    "Germany": ("German", "Deutschland", "deutsch", "德国"),
    "China": ("Chinese", "China", "chinesisch", "中国"),
    "Luxembourg": ("Luxembourgish", "Luxemburg", "luxemburgisch", "卢森堡"),
    "France": ("French", "Frankreich", "französisch", "法国"),
    "Austria": ("Austrian", "Österreich", "österreichisch", "奥地利"),
    "Switzerland": ("Swiss", "der Schweiz", "schweizerisch", "瑞士"),
    "Netherlands": ("Dutch", "den Niederlanden", "niederländisch", "荷兰"),
    "Yugoslavia": ("Yugoslav", "Jugoslawien", "jugoslawisch", "南斯拉夫"),
    "Soviet Union": ("Soviet", "der Sowjetunion", "sowjetisch", "苏联"),
    "Hungary": ("Hungarian", "Ungarn", "ungarisch", "匈牙利"),
    "Czechoslovakia": ("Czechoslovak", "der Tschechoslowakei", "tschechoslowakisch", "捷克斯洛伐克"),
    "Romania": ("Romanian", "Rumänien", "rumänisch", "罗马尼亚"),
    "Poland": ("Polish", "Polen", "polnisch", "波兰"),
    "Sweden": ("Swedish", "Schweden", "schwedisch", "瑞典"),
    "Denmark": ("Danish", "Dänemark", "dänisch", "丹麦"),
    "Italy": ("Italian", "Italien", "italienisch", "意大利"),
}

# Regions (tunes' source spelling): English, German, Chinese; the common ones and the Chinese provinces.
REGIONS: dict[str, tuple[str, str, str]] = {
    "Lothringen": ("Lorraine", "Lothringen", "洛林"), "Hessen": ("Hesse", "Hessen", "黑森"),
    "Schlesien": ("Silesia", "Schlesien", "西里西亚"), "Niederrhein": ("the Lower Rhine", "Niederrhein", "下莱茵"),
    "Rheinland": ("the Rhineland", "Rheinland", "莱茵兰"), "Westfalen": ("Westphalia", "Westfalen", "威斯特法伦"),
    "Gottschee": ("Gottschee", "Gottschee", "科切维"), "Brandenburg": ("Brandenburg", "Brandenburg", "勃兰登堡"),
    "Thueringen": ("Thuringia", "Thüringen", "图林根"), "Schwaben": ("Swabia", "Schwaben", "施瓦本"),
    "Sachsen": ("Saxony", "Sachsen", "萨克森"), "Franken": ("Franconia", "Franken", "弗兰肯"),
    "Bayern": ("Bavaria", "Bayern", "巴伐利亚"), "Pommern": ("Pomerania", "Pommern", "波美拉尼亚"),
    "Tirol": ("Tyrol", "Tirol", "蒂罗尔"), "Boehmen": ("Bohemia", "Böhmen", "波希米亚"),
    "Steiermark": ("Styria", "Steiermark", "施蒂利亚"),
    "Siebenbuergen": ("Transylvania", "Siebenbürgen", "特兰西瓦尼亚"), "Elsass": ("Alsace", "Elsass", "阿尔萨斯"),
    "Northumberland": ("Northumberland", "Northumberland", "诺森伯兰"),
    **{name: (name, name, chinese) for name, chinese in {
        "Anhui": "安徽", "Fujian": "福建", "Gansu": "甘肃", "Guangdong": "广东", "Guangxi": "广西",
        "Guizhou": "贵州", "Hainan": "海南", "Hebei": "河北", "Heilongjiang": "黑龙江", "Henan": "河南",
        "Hubei": "湖北", "Hunan": "湖南", "Jiangsu": "江苏", "Jiangxi": "江西", "Jilin": "吉林",
        "Liaoning": "辽宁", "Neimeng": "内蒙古", "Ningxia": "宁夏", "Qinghai": "青海", "Shaanxi": "陕西",
        "Shandong": "山东", "Shanxi": "山西", "Sichuan": "四川", "Taiwan": "台湾", "Xinjiang": "新疆",
        "Xizang": "西藏", "Yunnan": "云南", "Zhejiang": "浙江"}.items()},
}

# Instruments (render.INSTRUMENT_FAMILIES names): German noun phrase, Chinese; ensembles are played "by".
INSTRUMENTS: dict[str, tuple[_Np, str]] = {
    "acoustic grand piano": (((), "Konzertflügel", "m"), "三角钢琴"),
    "bright acoustic piano": ((("hell",), "Klavier", "n"), "明亮音色钢琴"),
    "electric piano": (((), "E-Piano", "n"), "电钢琴"),
    "violin": (((), "Geige", "f"), "小提琴"),
    "viola": (((), "Bratsche", "f"), "中提琴"),
    "cello": (((), "Cello", "n"), "大提琴"),
    "string ensemble": (((), "Streichensemble", "n"), "弦乐合奏团"),
    "flute": (((), "Querflöte", "f"), "长笛"),
    "clarinet": (((), "Klarinette", "f"), "单簧管"),
    "oboe": (((), "Oboe", "f"), "双簧管"),
    "recorder": (((), "Blockflöte", "f"), "竖笛"),
    "nylon-string guitar": (((), "Konzertgitarre", "f"), "尼龙弦吉他"),
    "steel-string guitar": (((), "Westerngitarre", "f"), "钢弦吉他"),
    "harp": (((), "Harfe", "f"), "竖琴"),
    "banjo": (((), "Banjo", "n"), "班卓琴"),
    "church organ": (((), "Kirchenorgel", "f"), "教堂管风琴"),
    "drawbar organ": (((), "Hammondorgel", "f"), "拉杆电风琴"),
    "reed organ": (((), "Harmonium", "n"), "簧风琴"),
    "accordion": (((), "Akkordeon", "n"), "手风琴"),
    "harmonica": (((), "Mundharmonika", "f"), "口琴"),
    "bandoneon": (((), "Bandoneon", "n"), "班多钮手风琴"),
}

# Instrument families (render.INSTRUMENT_FAMILIES keys): English, German noun phrase, Chinese.
FAMILIES: dict[str, tuple[str, _Np, str]] = {
    "piano": ("keyboard instrument", ((), "Tasteninstrument", "n"), "键盘乐器"),
    "strings": ("bowed string instrument", ((), "Streichinstrument", "n"), "弦乐器"),
    "winds": ("woodwind instrument", ((), "Holzblasinstrument", "n"), "木管乐器"),
    "plucked": ("plucked string instrument", ((), "Zupfinstrument", "n"), "弹拨乐器"),
    "organ": ("organ", ((), "Orgel", "f"), "风琴类乐器"),
    "accordion": ("free-reed instrument", ((), "Handzuginstrument", "n"), "簧片乐器"),
}

MODES: dict[str, tuple[str, str, str]] = {  # English, German, Chinese
    "major": ("major", "Dur", "大调"), "minor": ("minor", "Moll", "小调"),
    "dorian": ("Dorian", "Dorisch", "多利亚调式"), "phrygian": ("Phrygian", "Phrygisch", "弗里几亚调式"),
    "lydian": ("Lydian", "Lydisch", "利底亚调式"), "mixolydian": ("Mixolydian", "Mixolydisch", "混合利底亚调式"),
    "locrian": ("Locrian", "Lokrisch", "洛克里亚调式"),
}
TEMPO_WORDS: dict[str, tuple[str, str, str]] = {  # English, German adjective stem, Chinese
    "slow": ("slow", "langsam", "慢速"), "moderate": ("moderate", "mäßig schnell", "中速"),
    "fast": ("fast", "schnell", "快速"),
}

# German articles and adjective endings by (determiner, case) and gender.
_DE_FORMS: dict[str, dict[str, tuple[str, str]]] = {
    "indefinite nominative": {"m": ("ein", "er"), "f": ("eine", "e"), "n": ("ein", "es")},
    "indefinite dative": {"m": ("einem", "en"), "f": ("einer", "en"), "n": ("einem", "en")},
    "definite nominative": {"m": ("der", "e"), "f": ("die", "e"), "n": ("das", "e")},
    "definite dative": {"m": ("dem", "en"), "f": ("der", "en"), "n": ("dem", "en")},
    "demonstrative accusative": {"m": ("diesen", "en"), "f": ("diese", "e"), "n": ("dieses", "e")},
    "bare nominative": {"m": ("", "er"), "f": ("", "e"), "n": ("", "es")},
}
_DE_SHARP = {"C": "Cis", "D": "Dis", "E": "Eis", "F": "Fis", "G": "Gis", "A": "Ais", "B": "His"}
_DE_FLAT = {"C": "Ces", "D": "Des", "E": "Es", "F": "Fes", "G": "Ges", "A": "As", "B": "B"}
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue"})
_GENRE_ITEMS = re.compile(r"[,;.]")
_HEAD = re.compile(r"-(\w+)$")
_JOINED = re.compile(r"-(\w)")
_PLACEHOLDER = re.compile(r"[?y\s]*")


def tempo_class(bpm: object) -> str:
    """"slow", "moderate" or "fast" for a tempo in quarter notes per minute; "" when there is no tempo."""
    value = _number(bpm)
    if value is None:
        return ""
    if value <= 0:
        raise CaptionError(f"a tempo must be positive, not {value} bpm")
    return next(name for name, upper in TEMPO_CLASSES if value < upper)


def genre_key(genre: object) -> str:
    """The head of an Essen genre label as a lower-case ASCII key: "Staende-, Soldaten-, Kriegs-Lied" -> staendelied.

    The first item of the label names the kind of song; a suspended compound ("Kinder-, Wiegen-Lied") gets the
    head of the item that completes it, plurals ("Liebeslieder") become singular.
    """
    label = _genre_label(_text(genre))
    return label.translate(_UMLAUTS).lower().replace("-", "") if label else ""


def describe(track: Mapping[str, object], language: str, variant: int) -> str:
    """Description number `variant` (0 to VARIANTS - 1) of a track in `language` ("en", "de" or "zh")."""
    return _builder(language, variant)(_Facts.of(track))


def metadata_text(track: Mapping[str, object]) -> str:
    """Title and collection only, "Rocky Road to Dublin — O'Neill's Music of Ireland (1850)": no attributes."""
    collection = _text(track.get("collection"))
    name = _text(track.get("collection_name")) or (COLLECTIONS[collection].title if collection in COLLECTIONS
                                                   else collection)
    return " — ".join(part for part in (_text(track.get("title")), name) if part)


def track_tags(track: Mapping[str, object]) -> list[str]:
    """Prefixed lower-case tags, spaces as "_": dance: (or genre:), region:, country: (only when it differs
    from the region), mode:, meter:, family:, tempo:; a missing fact gives no tag."""
    facts = _Facts.of(track)
    pairs = [("dance", facts.dance) if facts.dance else ("genre", facts.genre),
             ("region", facts.region),
             ("country", facts.country if facts.country != facts.region else ""),
             ("mode", facts.mode), ("meter", facts.meter), ("family", facts.family), ("tempo", facts.tempo)]
    return [f"{prefix}:{'_'.join(value.lower().split())}" for prefix, value in pairs if value]


def captions_table(tracks: pd.DataFrame, languages: Sequence[str] = LANGUAGES, variants: int = VARIANTS
                   ) -> pd.DataFrame:
    """Long table (track_id, language, variant, text): every variant in every language for every track.

    Rows follow the tracks' order, then `languages`, then variant.
    """
    if "track_id" not in tracks.columns:
        raise CaptionError("the tracks table has no track_id column")
    if variants < 1:
        raise CaptionError(f"variants must be at least 1, not {variants}")
    builders = [[_builder(language, variant) for variant in range(variants)] for language in languages]
    facts = [_Facts.of(record) for record in tracks.to_dict("records")]
    texts = [build(fact) for fact in facts for row in builders for build in row]
    per_track = len(languages) * variants
    return pd.DataFrame({
        "track_id": tracks["track_id"].astype(str).repeat(per_track).to_numpy(),
        "language": pd.Series([language for language in languages for _ in range(variants)] * len(facts),
                              dtype="string"),
        "variant": pd.Series(list(range(variants)) * (len(languages) * len(facts)), dtype="int64"),
        "text": pd.Series(texts, dtype="string"),
    })


@dataclass(frozen=True)
class _Facts:
    """A track's metadata cleaned once: empty strings for what is missing, the tempo as a number or None."""

    dance: str
    genre: str  # genre_key
    genre_label: str
    region: str
    country: str
    tonic: str
    mode: str
    meter: str
    bpm: float | None
    tempo: str
    instrument: str
    family: str
    source: str

    @classmethod
    def of(cls, track: Mapping[str, object]) -> _Facts:
        genre_label = _genre_label(_text(track.get("genre")))
        bpm = _number(track.get("tempo_bpm"))
        return cls(dance=_text(track.get("dance_type")).lower(), genre=genre_key(genre_label),
                   genre_label=genre_label, region=_text(track.get("region")), country=_text(track.get("country")),
                   tonic=_text(track.get("tonic")), mode=_text(track.get("mode")).lower(),
                   meter=_text(track.get("meter")), bpm=bpm, tempo=tempo_class(bpm),
                   instrument=_text(track.get("instrument")).lower(),
                   family=_text(track.get("instrument_family")).lower(), source=metadata_text({
                       "collection": track.get("collection"), "collection_name": track.get("collection_name")}))

    @functools.cached_property
    def kind(self) -> tuple[str, _Np, str]:
        """(English, German noun phrase, Chinese) for what the piece is: dance type, genre, or just a tune."""
        if self.dance:
            return DANCES.get(self.dance, (self.dance, ((), self.dance[:1].upper() + self.dance[1:], "m"), self.dance))
        if self.genre:
            if self.genre in GENRES:
                return GENRES[self.genre]
            english, (stems, noun, gender), chinese = _FOLK_SONG
            label = self.genre_label
            return f"{english} ({label})", (stems, f"{noun} ({label})", gender), f"{chinese}（{label}）"
        return _TUNE

    def bpm_text(self) -> str:
        return "" if self.bpm is None else str(round(self.bpm))

    def region_below(self) -> str:
        """The region when it says more than the country."""
        return self.region if self.region != self.country else ""


# English ------------------------------------------------------------------------------------------------------


def _en_key(facts: _Facts) -> str:
    mode = MODES[facts.mode][0] if facts.mode in MODES else facts.mode
    tonic = facts.tonic.replace("#", "-sharp").replace("b", "-flat") if facts.tonic[1:] else facts.tonic
    return " ".join(part for part in (tonic, mode) if part)


def _en_place(facts: _Facts) -> str:
    """"Westphalia, Germany", "Ireland" or "" for a 'from' phrase."""
    region = REGIONS.get(facts.region_below(), (facts.region_below(),))[0]
    return ", ".join(part for part in (region, facts.country) if part)


def _en_origin(facts: _Facts) -> tuple[str, str]:
    """(adjective, 'from' phrase): "Irish" and "" or "" and "from Ireland", the region always in the phrase."""
    if facts.country in COUNTRIES:
        below = facts.region_below()
        return COUNTRIES[facts.country][0], f"from {REGIONS.get(below, (below,))[0]}" if below else ""
    place = _en_place(facts)
    return "", f"from {place}" if place else ""


def _en_instrument(facts: _Facts) -> str:
    if not facts.instrument:
        return ""
    return f"a {facts.instrument}" if "ensemble" in facts.instrument else f"the {facts.instrument}"


def _en_family(facts: _Facts) -> str:
    return FAMILIES[facts.family][0] if facts.family in FAMILIES else facts.family


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _en_0(facts: _Facts) -> str:
    adjective, origin = _en_origin(facts)
    head = _article(" ".join(w for w in (TEMPO_WORDS.get(facts.tempo, ("",))[0], adjective, facts.kind[0]) if w))
    key, meter = _en_key(facts), f"{facts.meter} time" if facts.meter else ""
    music = " and ".join(part for part in (key, meter) if part)
    parts = [" ".join(part for part in (head, origin, f"in {music}" if music else "") if part)]
    if facts.bpm is not None:
        parts.append(f"at about {facts.bpm_text()} beats per minute")
    instrument = _en_instrument(facts)
    if instrument:
        parts.append(f"{'played by' if instrument.startswith('a ') else 'played on'} {instrument}")
    return _sentence(", ".join(parts))


def _en_1(facts: _Facts) -> str:
    place = _en_place(facts)
    head = facts.kind[0] + (f" from {place}" if place else "")
    tempo = " ".join(part for part in (facts.tempo, f"({facts.bpm_text()} BPM)" if facts.bpm is not None else "")
                     if part)
    family = _en_family(facts)
    instrument = f"{facts.instrument} ({family})" if facts.instrument and family else facts.instrument or family
    fields = [("key", _en_key(facts)), ("meter", facts.meter), ("tempo", tempo), ("instrument", instrument),
              ("source", facts.source)]
    details = "; ".join(f"{name}: {value}" for name, value in fields if value)
    return _sentence(head) + (f" {_sentence(details)}" if details else "")


def _en_2(facts: _Facts) -> str:
    adjective, origin = _en_origin(facts)
    piece = " ".join(w for w in (TEMPO_WORDS.get(facts.tempo, ("",))[0], adjective, facts.kind[0], origin) if w)
    key = _en_key(facts)
    tail = [f"in {key}" if key else "", f"keeping {facts.meter} time" if facts.meter else "",
            f"at around {facts.bpm_text()} beats per minute" if facts.bpm is not None else ""]
    tail_text = ", ".join(part for part in tail if part)
    instrument, family = _en_instrument(facts), _en_family(facts)
    if instrument:
        if facts.family in FAMILIES and instrument.startswith("the ") and family not in instrument:
            instrument = f"{instrument}, {_article(family)},"
        text = f"{instrument} plays this {piece}"
    else:
        text = f"this is {_article(piece)}"
    return _sentence(text + (f", {tail_text}" if tail_text else ""))


# German -------------------------------------------------------------------------------------------------------


def _de_np(np_: _Np, form: str, extra: Sequence[str] = ()) -> str:
    """A declined German noun phrase: `extra` adjective stems come before the phrase's own."""
    stems, noun, gender = np_
    article, ending = _DE_FORMS[form][gender]
    return " ".join(word for word in (article, *(stem + ending for stem in (*extra, *stems)), noun) if word)


def _de_tonic(tonic: str) -> str:
    letter, accidental = tonic[:1].upper(), tonic[1:]
    if accidental == "#":
        return _DE_SHARP.get(letter, tonic)
    if accidental == "b":
        return _DE_FLAT.get(letter, tonic)
    return "H" if letter == "B" else tonic


def _de_key(facts: _Facts) -> str:
    mode = MODES[facts.mode][1] if facts.mode in MODES else facts.mode
    if not facts.tonic:
        return mode
    tonic = _de_tonic(facts.tonic)
    if facts.mode == "minor":
        tonic = tonic.lower()
    return f"{tonic}-{mode}" if mode else tonic


def _de_region(facts: _Facts) -> str:
    below = facts.region_below()
    return REGIONS[below][1] if below in REGIONS else below


def _de_place(facts: _Facts) -> str:
    country = COUNTRIES[facts.country][1] if facts.country in COUNTRIES else facts.country
    return ", ".join(part for part in (_de_region(facts), country) if part)


def _de_origin(facts: _Facts) -> tuple[tuple[str, ...], str]:
    """(adjective stems, 'aus' phrase), as in English."""
    if facts.country in COUNTRIES:
        region = _de_region(facts)
        return (COUNTRIES[facts.country][2],), f"aus {region}" if region else ""
    place = _de_place(facts)
    return (), f"aus {place}" if place else ""


def _de_instrument(facts: _Facts, form: str) -> str:
    if facts.instrument in INSTRUMENTS:
        return _de_np(INSTRUMENTS[facts.instrument][0], form)
    return _de_np(((), f"Instrument {facts.instrument}", "n"), form) if facts.instrument else ""


def _de_music(facts: _Facts) -> str:
    key, meter = _de_key(facts), f"im {facts.meter}-Takt" if facts.meter else ""
    return " ".join(part for part in (f"in {key}" if key else "", meter) if part)


def _de_0(facts: _Facts) -> str:
    adjectives, origin = _de_origin(facts)
    tempo = (TEMPO_WORDS[facts.tempo][1],) if facts.tempo in TEMPO_WORDS else ()
    head = _de_np(facts.kind[1], "indefinite nominative", (*tempo, *adjectives))
    parts = [" ".join(part for part in (head, origin, _de_music(facts)) if part)]
    if facts.bpm is not None:
        parts.append(f"mit etwa {facts.bpm_text()} Schlägen pro Minute")
    if facts.instrument:
        ensemble = "ensemble" in facts.instrument
        played = _de_instrument(facts, "indefinite dative" if ensemble else "definite dative")
        parts.append(f"gespielt {'von' if ensemble else 'auf'} {played}")
    return _sentence(", ".join(parts))


def _de_1(facts: _Facts) -> str:
    place = _de_place(facts)
    head = _de_np(facts.kind[1], "bare nominative") + (f" aus {place}" if place else "")
    tempo = " ".join(part for part in (TEMPO_WORDS[facts.tempo][1] if facts.tempo in TEMPO_WORDS else "",
                                        f"({facts.bpm_text()} BPM)" if facts.bpm is not None else "") if part)
    instrument = _de_np(INSTRUMENTS[facts.instrument][0], "bare nominative") if facts.instrument in INSTRUMENTS \
        else facts.instrument
    family = _de_np(FAMILIES[facts.family][1], "bare nominative") if facts.family in FAMILIES else facts.family
    played = f"{instrument} ({family})" if instrument and family else instrument or family
    fields = [("Tonart", _de_key(facts)), ("Takt", facts.meter), ("Tempo", tempo), ("Instrument", played),
              ("Quelle", facts.source)]
    details = "; ".join(f"{name}: {value}" for name, value in fields if value)
    return _sentence(head) + (f" {_sentence(details)}" if details else "")


def _de_2(facts: _Facts) -> str:
    adjectives, origin = _de_origin(facts)
    tempo = (TEMPO_WORDS[facts.tempo][1],) if facts.tempo in TEMPO_WORDS else ()
    tail = [origin, _de_music(facts),
            f"mit etwa {facts.bpm_text()} Schlägen pro Minute" if facts.bpm is not None else ""]
    tail_text = " ".join(part for part in tail if part)
    if facts.instrument:
        ensemble = "ensemble" in facts.instrument
        player = _de_instrument(facts, "indefinite nominative" if ensemble else "definite nominative")
        if facts.family in FAMILIES and not ensemble:
            family = _de_np(FAMILIES[facts.family][1], "indefinite nominative")
            player = f"{player}, {family},"
        piece = _de_np(facts.kind[1], "demonstrative accusative", (*tempo, *adjectives))
        text = f"{player} spielt {piece}"
    else:
        text = "dies ist " + _de_np(facts.kind[1], "indefinite nominative", (*tempo, *adjectives))
    return _sentence(" ".join(part for part in (text, tail_text) if part))


# Chinese ------------------------------------------------------------------------------------------------------


def _zh_key(facts: _Facts) -> str:
    mode = MODES[facts.mode][2] if facts.mode in MODES else facts.mode
    tonic = facts.tonic[:1].upper()
    if facts.tonic[1:] == "#":
        tonic = "升" + tonic
    elif facts.tonic[1:] == "b":
        tonic = "降" + tonic
    if facts.tonic and not mode:
        return f"{tonic}调"
    return f"{tonic}{mode}"


def _zh_country(facts: _Facts) -> str:
    return COUNTRIES[facts.country][3] if facts.country in COUNTRIES else facts.country


def _zh_region(facts: _Facts) -> str:
    below = facts.region_below()
    return REGIONS[below][2] if below in REGIONS else below


def _zh_instrument(facts: _Facts) -> str:
    return INSTRUMENTS[facts.instrument][1] if facts.instrument in INSTRUMENTS else facts.instrument


def _zh_family(facts: _Facts) -> str:
    return FAMILIES[facts.family][2] if facts.family in FAMILIES else facts.family


def _zh_piece(facts: _Facts) -> str:
    """"快速的爱尔兰里尔舞曲": tempo, country and kind."""
    tempo = _zh_tempo(facts)
    return f"{tempo}{'的' if tempo else ''}{_zh_country(facts)}{facts.kind[2]}"


def _zh_tempo(facts: _Facts) -> str:
    return TEMPO_WORDS[facts.tempo][2] if facts.tempo in TEMPO_WORDS else ""


def _zh_0(facts: _Facts) -> str:
    region = _zh_region(facts)
    parts = [f"一首{_zh_piece(facts)}", f"来自{region}" if region else "", _zh_key(facts),
             f"{facts.meter}拍" if facts.meter else "", f"每分钟约{facts.bpm_text()}拍" if facts.bpm is not None else ""]
    text = "，".join(part for part in parts if part)
    instrument = _zh_instrument(facts)
    return text + (f"，由{instrument}演奏。" if instrument else "。")


def _zh_1(facts: _Facts) -> str:
    place = f"{_zh_country(facts)}{_zh_region(facts)}"
    head = facts.kind[2] + (f"，来自{place}" if place else "")
    tempo = _zh_tempo(facts) + (
        f"（{facts.bpm_text()} BPM）" if facts.bpm is not None else "")
    instrument, family = _zh_instrument(facts), _zh_family(facts)
    played = f"{instrument}（{family}）" if instrument and family else instrument or family
    fields = [("调性", _zh_key(facts)), ("拍号", facts.meter), ("速度", tempo), ("乐器", played),
              ("出处", facts.source)]
    details = "；".join(f"{name}：{value}" for name, value in fields if value)
    return f"{head}。" + (f"{details}。" if details else "")


def _zh_2(facts: _Facts) -> str:
    region = _zh_region(facts)
    if region:  # "来自中国宁夏的中速民间小调"
        piece = f"来自{_zh_country(facts)}{region}的{_zh_tempo(facts)}{facts.kind[2]}"
    else:
        piece = _zh_piece(facts)
    instrument, family = _zh_instrument(facts), _zh_family(facts)
    if instrument:
        text = f"这首{piece}由{instrument}{'（' + family + '）' if family else ''}演奏"
    else:
        text = f"这是一首{piece}"
    music = "和".join(part for part in (_zh_key(facts), f"{facts.meter}拍" if facts.meter else "") if part)
    tail = [f"采用{music}" if music else "", f"速度约为每分钟{facts.bpm_text()}拍" if facts.bpm is not None else ""]
    return "，".join([text, *(part for part in tail if part)]) + "。"


# -------------------------------------------------------------------------------------------------------------

_BUILDERS: dict[str, tuple[Callable[[_Facts], str], ...]] = {
    "en": (_en_0, _en_1, _en_2), "de": (_de_0, _de_1, _de_2), "zh": (_zh_0, _zh_1, _zh_2)}


def _builder(language: str, variant: int) -> Callable[[_Facts], str]:
    if language not in _BUILDERS:
        raise CaptionError(f"no captions in language {language!r}; choose from {', '.join(_BUILDERS)}")
    builders = _BUILDERS[language]
    if not 0 <= variant < len(builders):
        raise CaptionError(f"variant {variant} out of range: {language} has variants 0 to {len(builders) - 1}")
    return builders[variant]


def _sentence(text: str) -> str:
    """Capitalised first letter and a closing period."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".") if text else ""


def _genre_label(genre: str) -> str:
    """The first real item of an Essen genre label, a suspended compound completed: "Kinder-Lied"."""
    items = [item.strip().strip('"') for item in _GENRE_ITEMS.split(genre)]
    items = [item for item in items if item and not _PLACEHOLDER.fullmatch(item)]
    if not items:
        return ""
    first = items[0]
    if first.endswith("-"):
        head = next((match.group(1) for item in items[1:] for match in [_HEAD.search(item)] if match), "Lied")
        first += head
    first = _JOINED.sub(lambda match: match.group(1).lower(), first)
    return first[:-2] if first.lower().endswith("lieder") else first


def _text(value: object) -> str:
    """A metadata value as clean text; None, NaN and pandas' NA are ""."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _number(value: object) -> float | None:
    """A finite float, or None for anything missing or not a finite number."""
    if value is None or value is pd.NA or isinstance(value, (str, bool)):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None

"""Build the built-in corpus: real tunes -> performances (ABC, MIDI, audio) -> texts and tags -> listeners.

The result is a data-model folder (`tracks`, `interactions`, `playlists` Parquet tables; paths inside the tracks
table are relative to the folder) plus `captions.parquet` (several descriptions per track and language),
`users.parquet` (simulated listeners), `playlist_sessions.parquet` (who made each playlist and when),
`skipped.parquet` (tunes that could not be used, with the reason) and `build.json` (sizes, timings, the corpus
config and every listener parameter the simulation ran with, defaults included, so that a log can be remade or
compared with one simulated under other listener settings).

`relisten_corpus` remakes only the listening log of a built corpus under other listener settings, into a new
folder that shares the source's tracks, captions and (through symlinks) its audio, so that logs differing in one
parameter can be compared on the very same catalogue without rendering it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.corpus.captions import captions_table, metadata_text, tempo_class, track_tags
from tunespace.corpus.listeners import ListenerConfig, Listening, simulate_listeners
from tunespace.corpus.render import INSTRUMENT_FAMILIES, RenderSpec, find_soundfont, render_many
from tunespace.corpus.tunes import COLLECTIONS, read_tunes_with_skips
from tunespace.data.dataset import Dataset
from tunespace.errors import TunespaceError
from tunespace.io import atomic_path, write_parquet, write_text

logger = logging.getLogger(__name__)

SIZES = {"small": 300, "medium": 2000, "full": None}  # tracks; None = every usable tune
LISTENERS = {"small": 300, "medium": 1500, "full": 6000}
START = "2024-01-01"
CUTOFF = "2025-01-01"  # 12 months of train, the 13th month for validation and test, as in the paper

# Typical performance tempo (quarter notes per minute) by dance type or genre, before per-track variation.
BASE_TEMPO = {"reel": 200.0, "jig": 180.0, "slip jig": 180.0, "hornpipe": 150.0, "strathspey": 130.0,
              "polka": 220.0, "march": 200.0, "waltz": 150.0, "air": 80.0, "slide": 190.0, "set dance": 150.0}
DEFAULT_TEMPO = 110.0
TEMPO_SPREAD = (0.8, 1.25)  # each performance is this much slower or faster than the base tempo
# ListenerConfig fields the corpus sets itself: `listeners` (or the size), the window that CUTOFF assumes, `seed`
LISTENER_FIELDS_SET_BY_CORPUS = ("users", "start", "seed")
# What a relistened corpus shares with its source: files copied byte for byte (small), folders linked (audio is large)
SHARED_FILES = ("tracks.parquet", "captions.parquet", "skipped.parquet")
SHARED_FOLDERS = ("audio", "abc", "midi", "emb")


class CorpusError(TunespaceError):
    """The corpus cannot be built as asked."""


@dataclass(frozen=True)
class CorpusConfig:
    size: str = "small"
    seed: int = 0
    sample_rate: int = 16000
    max_seconds: float = 30.0
    workers: int = 2
    tracks: int | None = None  # overrides the size's number of tracks
    listeners: int | None = None  # overrides the size's number of listeners
    # ListenerConfig fields to change (semantic_weight, latent_weight, zipf_exponent, temperature, ...)
    listener: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise CorpusError(f"unknown corpus size {self.size!r}; choose from {', '.join(SIZES)}")
        object.__setattr__(self, "listener", _listener_overrides(self.listener))
        self.listener_config()  # out-of-range values fail now, not after the renders

    def listener_config(self) -> ListenerConfig:
        """The listener simulation's parameters: the defaults, the corpus's users, window and seed, then `listener`."""
        users = self.listeners or LISTENERS[self.size]
        return ListenerConfig(**{**self.listener, "users": users, "start": START, "seed": self.seed})


def _listener_overrides(overrides: Mapping[str, object]) -> dict[str, float | int]:
    """`overrides` checked against ListenerConfig's fields and cast to each field's type (3.0 -> 3 for counts)."""
    kinds = {f.name: type(f.default) for f in fields(ListenerConfig)}
    checked: dict[str, float | int] = {}
    for name, value in overrides.items():
        if name in LISTENER_FIELDS_SET_BY_CORPUS:
            raise CorpusError(f"listener parameter {name!r} is set by the corpus itself "
                              "(users: the listeners count; seed: the corpus seed; start: the corpus window)")
        if name not in kinds:
            choices = ", ".join(n for n in kinds if n not in LISTENER_FIELDS_SET_BY_CORPUS)
            raise CorpusError(f"unknown listener parameter {name!r}; choose from {choices}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CorpusError(f"listener parameter {name}={value!r} is not a number")
        if kinds[name] is int and not (math.isfinite(value) and float(value).is_integer()):
            raise CorpusError(f"listener parameter {name}={value!r} must be a whole number")
        checked[name] = kinds[name](value)
    return checked


def select_tunes(tunes: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample of `limit` tunes (None: all) that keeps every collection represented (round-robin over
    shuffled collections)."""
    if limit is None or limit >= len(tunes):
        return tunes.sort_values("tune_id").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    queues = {name: list(rng.permutation(group.index.to_numpy()))
              for name, group in tunes.groupby("collection", sort=True)}
    chosen: list[int] = []
    while len(chosen) < limit:
        for name in sorted(queues):
            if queues[name] and len(chosen) < limit:
                chosen.append(queues[name].pop())
    return tunes.loc[chosen].sort_values("tune_id").reset_index(drop=True)


def _performance(tunes: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Instrument and tempo of each track, drawn from a generator seeded by the corpus seed and the tune id."""
    families = sorted(INSTRUMENT_FAMILIES)
    rows = []
    for tune in tunes.itertuples(index=False):
        digest = int(hashlib.sha256(f"{seed}:{tune.tune_id}".encode()).hexdigest()[:16], 16)
        rng = np.random.default_rng(digest)
        family = families[rng.integers(len(families))]
        program, instrument = INSTRUMENT_FAMILIES[family][rng.integers(len(INSTRUMENT_FAMILIES[family]))]
        base = tune.tempo_bpm if np.isfinite(tune.tempo_bpm) else BASE_TEMPO.get(tune.dance_type, DEFAULT_TEMPO)
        rows.append({"instrument_family": family, "instrument": instrument, "program": int(program),
                     "tempo_bpm": round(float(base * rng.uniform(*TEMPO_SPREAD)), 1),
                     "render_seed": int(digest % 2**31)})
    return pd.DataFrame(rows, index=tunes.index)


def build_corpus(out: str | Path, config: CorpusConfig = CorpusConfig(),
                 progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[str, object]:
    """Build (or finish building: renders are cached by content) the corpus into `out`; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    tunes, unusable = read_tunes_with_skips()
    tunes = select_tunes(tunes, config.tracks or SIZES[config.size], config.seed)
    performed = tunes.drop(columns=["tempo_bpm"]).join(
        _performance(tunes, config.seed)).rename(columns={"tune_id": "track_id"})
    timings["select_s"] = time.perf_counter() - started

    started = time.perf_counter()
    soundfont = find_soundfont()
    specs = [RenderSpec(track_id=row.track_id, abc=row.abc, program=row.program, tempo_bpm=row.tempo_bpm,
                        seed=row.render_seed, sample_rate=config.sample_rate, max_seconds=config.max_seconds)
             for row in performed.itertuples(index=False)]
    callback = progress("rendering", len(specs)) if progress else None
    rendered, failed = render_many(specs, out, soundfont=soundfont, workers=config.workers, progress=callback)
    timings["render_s"] = time.perf_counter() - started

    started = time.perf_counter()
    abc_paths = []
    for row in performed.itertuples(index=False):
        relative = f"abc/{hashlib.sha256(row.abc.encode()).hexdigest()[:20]}.abc"
        target = out / relative
        if not target.exists():
            write_text(row.abc, target)
        abc_paths.append(relative)
    performed["abc_path"] = abc_paths
    tracks = performed.merge(rendered.drop(columns=["program", "tempo_bpm"]), on="track_id", how="inner")
    tracks = tracks.rename(columns={"seconds": "duration"})
    tracks["artist_id"] = tracks["collection"]
    tracks["album_id"] = tracks["track_id"].str.rsplit("/", n=1).str[0]
    tracks["collection_name"] = tracks["collection"].map({k: v[1] for k, v in COLLECTIONS.items()})
    tracks["tempo_class"] = tracks["tempo_bpm"].map(tempo_class)
    records = tracks.to_dict("records")
    tracks["metadata_text"] = [metadata_text(r) for r in records]
    tracks["tags"] = ["|".join(track_tags(r)) for r in records]
    captions = captions_table(tracks)
    tracks = tracks.drop(columns=["abc", "render_seed", "cached"], errors="ignore")
    timings["text_s"] = time.perf_counter() - started

    started = time.perf_counter()
    listener_config = config.listener_config()
    listeners = listener_config.users
    listening = simulate_listeners(tracks, listener_config)
    dataset = Dataset.from_frames(listening.interactions, tracks, listening.playlists, name="tunespace-corpus")
    dataset.save(out)
    write_parquet(captions, out / "captions.parquet")
    _write_listening(listening, out)
    skipped = pd.concat([unusable.assign(stage="parse"), failed.assign(stage="render")], ignore_index=True)
    write_parquet(skipped.astype("string"), out / "skipped.parquet")
    timings["listeners_s"] = time.perf_counter() - started

    audio_minutes = float(tracks["duration"].sum() / 60)
    fresh = rendered.loc[~rendered["cached"].astype(bool), "seconds"].sum() / 60 if len(rendered) else 0.0
    report = {
        "config": asdict(config), "soundfont": str(soundfont), "tracks": len(tracks), "skipped": len(skipped),
        "users": listeners, "interactions": len(listening.interactions),
        "playlists": int(listening.playlists["playlist_id"].nunique()), "audio_minutes": audio_minutes,
        "rendered_now": int((~rendered["cached"].astype(bool)).sum()) if len(rendered) else 0,
        "timings": timings,
        # only what this run rendered counts for speed; cached renders cost nothing
        "audio_minutes_rendered_per_second": float(fresh) / max(timings["render_s"], 1e-9) if fresh else None,
        "cutoff": CUTOFF,
        "listener_config": asdict(listener_config),  # every parameter of the simulation, defaults included
    }
    write_text(json.dumps(report, indent=2), out / "build.json")
    return report


def _write_listening(listening: Listening, out: Path) -> None:
    """The tables beside the data model that describe the listeners (shared by build and relisten)."""
    write_parquet(listening.users, out / "users.parquet")
    # who made each playlist and when: lets a temporal protocol keep only playlists made before its cutoff
    write_parquet(listening.playlist_sessions, out / "playlist_sessions.parquet")


def _recorded_listener_config(build_json: Path, recorded: Mapping[str, object]) -> dict[str, object]:
    """The source's listener parameters, refusing names this version's ListenerConfig does not know (the log
    could not be remade faithfully); names it lacks take today's defaults, with a warning."""
    names = {f.name for f in fields(ListenerConfig)}
    unknown = sorted(set(recorded) - names)
    if unknown:
        raise CorpusError(f"{build_json}: listener_config has parameters this version does not know: "
                          f"{', '.join(unknown)}")
    missing = sorted(names - set(recorded))
    if missing:
        logger.warning("%s: listener_config lacks %s; using today's defaults", build_json, ", ".join(missing))
    return dict(recorded)


def _read_source(source: Path) -> tuple[dict, pd.DataFrame]:
    """SOURCE's build.json and tracks table, or a CorpusError naming the missing or unreadable file."""
    build_json, tracks_file = source / "build.json", source / "tracks.parquet"
    for file in (build_json, tracks_file):
        if not file.is_file():
            raise CorpusError(f"{file}: not found; {source} is not a built corpus (run `tunespace corpus build`)")
    try:
        report = json.loads(build_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorpusError(f"{build_json}: not readable JSON ({error})") from error
    if not isinstance(report, dict) or not isinstance(report.get("listener_config"), dict):
        raise CorpusError(f"{build_json}: no listener_config (built before listener parameters were recorded)")
    return report, pd.read_parquet(tracks_file)


def _share(source: Path, staging: Path) -> None:
    """Copy the small shared files and link the shared folders (absolute links: `out` may move, `source` not)."""
    for name in SHARED_FILES:
        if (source / name).is_file():
            with atomic_path(staging / name) as tmp:
                shutil.copyfile(source / name, tmp)
    for name in SHARED_FOLDERS:
        if (source / name).is_dir():
            os.symlink((source / name).resolve(), staging / name, target_is_directory=True)


def relisten_corpus(source: str | Path, out: str | Path, listener: Mapping[str, object] | None = None,
                    seed: int | None = None) -> dict[str, object]:
    """Simulate the listeners of the built corpus `source` again, with its recorded listener parameters changed by
    `listener` (and its listener seed by `seed`), into the new folder `out`; returns out's build.json.

    `out` gets new interactions, playlists, users and playlist_sessions tables; tracks, captions and skipped
    copied byte for byte; audio, abc, midi and emb as absolute symlinks to the source's folders (the tracks
    table's paths are relative to the corpus folder, so they resolve under `out`). `out` appears whole or not at
    all: it is staged in a hidden sibling folder and renamed into place. At unchanged parameters and seed the log
    is identical to the source's.
    """
    source, out = Path(source), Path(out)
    report, tracks = _read_source(source)
    if out.resolve() == source.resolve():
        raise CorpusError(f"{out}: is the source corpus itself; relisten into a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"{out}: exists and is not an empty folder; relisten into a new folder")
    overrides = _listener_overrides(listener or {})
    recorded = _recorded_listener_config(source / "build.json", report["listener_config"])
    config = ListenerConfig(**{**recorded, **overrides, **({} if seed is None else {"seed": seed})})

    started = time.perf_counter()
    listening = simulate_listeners(tracks, config)
    dataset = Dataset.from_frames(listening.interactions, tracks, listening.playlists, name="tunespace-corpus")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _share(source, staging)
        replace(dataset, tracks=None).save(staging)  # the copied tracks table stays byte for byte the source's
        _write_listening(listening, staging)
        corpus_config = dict(report.get("config") or {})
        corpus_config["listener"] = {**(corpus_config.get("listener") or {}), **overrides}
        relistened = {
            **{key: report.get(key) for key in ("soundfont", "tracks", "skipped", "audio_minutes")},
            "config": corpus_config, "users": config.users, "interactions": len(listening.interactions),
            "playlists": int(listening.playlists["playlist_id"].nunique()), "rendered_now": 0,
            "timings": {"listeners_s": time.perf_counter() - started},
            "audio_minutes_rendered_per_second": None, "cutoff": report.get("cutoff", CUTOFF),
            "listener_config": asdict(config),  # every parameter of the simulation, defaults included
            # the source's own origin too, when it was itself relistened: the whole chain back to a build
            "relistened_from": {"path": str(source.resolve()), "listener_config": report["listener_config"],
                                **({"relistened_from": report["relistened_from"]} if "relistened_from" in report
                                   else {})},
        }
        write_text(json.dumps(relistened, indent=2), staging / "build.json")
        staging.chmod(0o777 & ~_umask())
        os.replace(staging, out)  # an empty `out` is replaced; a non-empty one (a race) fails here
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # removes the links, never what they point to
        raise
    return relistened


def _umask() -> int:
    """The process umask (mkdtemp makes private 0700 folders; the corpus folder gets the usual permissions)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Render ABC tunes as performances (ABC -> MIDI -> mono audio) so that the audio carries instrument and tempo.

The built-in corpus needs audio whose content is known: each tune is played by one General MIDI instrument drawn
from `INSTRUMENT_FAMILIES` at a chosen tempo, with light, seeded humanisation so that two renders of one tune are
not sample-identical copies of a quantised score. The performance is:

- the ABC is parsed with symusic (abc2midi inside); chord-symbol accompaniment is switched off, so a tune is a solo
  performance of its notated voices by one instrument (a flute does not strum chords), and drum tracks are dropped;
- times are converted at `tempo_bpm` quarter notes per minute, overriding every tempo the score states itself;
- every voice gets `program`; velocities move by up to +-`VELOCITY_JITTER`, onsets by a few milliseconds and
  durations by a few percent, all from `numpy.random.default_rng(seed)`;
- the performance is cropped at `max_seconds` (notes starting later are dropped, the audio fades out over
  `FADE_SECONDS`); otherwise `TAIL_SECONDS` follow the last note so releases ring out, up to `max_seconds`;
- TinySoundFont synthesises it at `sample_rate`, the stereo mix is folded to mono and its peak set to -1 dBFS.

`render_many` renders in worker processes into a content-addressed cache (`cache_key`), so a rerun renders nothing.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
import symusic
import tinysoundfont

from tunespace.errors import TunespaceError
from tunespace.io import atomic_path, write_text

logger = logging.getLogger(__name__)

RENDERER_VERSION = "1"
"""Bump when a change to this module changes its output, so cached renders are redone."""

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

SOUNDFONT_LICENCES = """Soundfonts `find_soundfont` may return, and their licences:
- FluidR3_GM.sf2 (Frank Wen), Debian package fluid-soundfont-gm: MIT licence. Preferred when installed.
- TimGM6mb.sf2 (Tim Brechbill), shipped inside the pretty_midi package: GNU GPL version 2. Audio rendered with it
  is used here as research data; redistributing the soundfont itself falls under the GPL-2.
"""

INSTRUMENT_FAMILIES: dict[str, tuple[tuple[int, str], ...]] = {
    "piano": ((0, "acoustic grand piano"), (1, "bright acoustic piano"), (4, "electric piano")),
    "strings": ((40, "violin"), (41, "viola"), (42, "cello"), (48, "string ensemble")),
    "winds": ((73, "flute"), (71, "clarinet"), (68, "oboe"), (74, "recorder")),
    "plucked": ((24, "nylon-string guitar"), (25, "steel-string guitar"), (46, "harp"), (105, "banjo")),
    "organ": ((19, "church organ"), (16, "drawbar organ"), (20, "reed organ")),
    "accordion": ((21, "accordion"), (22, "harmonica"), (23, "bandoneon")),
}
"""General MIDI programs (0-based) the corpus draws instruments from, by family, with their English names."""

VELOCITY_JITTER = 8
ONSET_JITTER_SECONDS = 0.006  # standard deviation, clipped at 2.5 of them
DURATION_JITTER = 0.06  # standard deviation of the log duration factor
MIN_NOTE_SECONDS = 0.03
TAIL_SECONDS = 0.75
FADE_SECONDS = 0.5
END_FADE_SECONDS = 0.02  # the last samples of the tail, so the file never ends on a click
PEAK = 10 ** (-1 / 20)
SILENCE = 1e-5
DRAIN_SECONDS = 0.1  # synthesis after "all sounds off", so no voice of one render leaks into the next
CHORD_SPREAD = 1 / 32  # quarter notes between successive onsets within one chord, at most
DURATION_GRID = 24  # notated durations are compared on a grid of 1/24 quarter note
_CHANNELS = tuple(c for c in range(16) if c != 9)  # channel 10 is the General MIDI drum kit


class RenderError(TunespaceError, RuntimeError):
    """A tune cannot be rendered (ABC that does not parse, no notes, silent or non-finite audio)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class SoundfontNotFoundError(TunespaceError, FileNotFoundError):
    """Neither FluidR3_GM nor pretty_midi's TimGM6mb is installed."""


@dataclass(frozen=True)
class RenderSpec:
    """Everything that decides a render's output; its fields (with the soundfont) form the cache key."""

    track_id: str
    abc: str
    program: int
    tempo_bpm: float
    seed: int
    sample_rate: int = 16000
    max_seconds: float = 60.0


@dataclass(frozen=True)
class NoteStats:
    """Summaries of the performed notes: a latent factor that audio carries and words do not describe.

    A chord is the notes whose notated onsets lie within 1/32 quarter note of each other; the melody is the highest
    note of each chord. `ascending_share` counts rising intervals among the
    intervals that move (0.5 when none do); `rhythmic_variety` is the Shannon entropy, in bits, of the notated
    durations (from the chord's start) on a grid of 1/24 quarter note.
    """

    note_density: float
    pitch_mean: float
    pitch_range: float
    mean_abs_interval: float
    ascending_share: float
    rhythmic_variety: float


NOTE_STAT_COLUMNS = tuple(field.name for field in dataclasses.fields(NoteStats))


@dataclass(frozen=True)
class Rendered:
    """One performance: mono float32 audio in [-1, 1], its Standard MIDI File, length and note statistics."""

    audio: np.ndarray
    midi: bytes
    seconds: float
    notes: NoteStats


@dataclass(frozen=True)
class _Performance:
    """Performed notes in MIDI ticks, one row per note, sorted by onset; `notated_*` are before humanisation."""

    ticks_per_quarter: int
    channel: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    onset: np.ndarray
    offset: np.ndarray
    notated_onset: np.ndarray
    notated_duration: np.ndarray
    cropped: bool


def find_soundfont() -> Path:
    """The General MIDI soundfont to render with: FluidR3_GM when installed, else pretty_midi's TimGM6mb."""
    if FLUID_R3.is_file():
        return FLUID_R3
    spec = importlib.util.find_spec("pretty_midi")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "TimGM6mb.sf2"
        if candidate.is_file():
            return candidate
    raise SoundfontNotFoundError(
        f"no soundfont: install fluid-soundfont-gm ({FLUID_R3}) or pretty_midi, which ships TimGM6mb.sf2")


def cache_key(spec: RenderSpec, soundfont: Path) -> str:
    """A content hash of everything that decides the output, so a cached render is reused only when identical."""
    soundfont = Path(soundfont)
    payload = {
        "spec": dataclasses.asdict(spec),
        "soundfont": [soundfont.name, soundfont.stat().st_size],
        "renderer": RENDERER_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def render(spec: RenderSpec, soundfont: Path) -> Rendered:
    """Perform `spec.abc` as described in the module docstring; raises `RenderError` saying why it cannot."""
    _check_spec(spec)
    performance = _perform(_parse(spec.abc), spec)
    audio = _synthesise(performance, spec, Path(soundfont))
    return Rendered(audio=audio, midi=_midi(performance, spec), seconds=len(audio) / spec.sample_rate,
                    notes=_note_stats(performance, spec))


def _check_spec(spec: RenderSpec) -> None:
    if not 0 <= spec.program <= 127:
        raise RenderError(f"program {spec.program} is not a General MIDI program (0-127)")
    if not (math.isfinite(spec.tempo_bpm) and spec.tempo_bpm > 0):
        raise RenderError(f"tempo {spec.tempo_bpm} bpm is not a positive number")
    if spec.sample_rate <= 0 or not (math.isfinite(spec.max_seconds) and spec.max_seconds > 0):
        raise RenderError("sample_rate and max_seconds must be positive")


@contextlib.contextmanager
def _native_output_to_log() -> Iterator[None]:
    """Send what C++ code prints on file descriptors 1 and 2 to the debug log instead of the terminal.

    symusic's ABC parser prints warnings for most real tunes; on the terminal they would break progress bars.
    The descriptors are process-wide, so output other threads print meanwhile is logged too.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace").strip()
                if text:
                    logger.debug("ABC parser said:\n%s", text)
    finally:
        for fd in saved:
            os.close(fd)


def _parse(abc: str) -> symusic.Score:
    # abc2midi reads %%MIDI directives in the header, which starts at the X: line
    lines = abc.splitlines()
    header = next((i for i, line in enumerate(lines) if line.lstrip().startswith("X:")), None)
    if header is None:
        raise RenderError("ABC has no X: line")
    lines.insert(header + 1, "%%MIDI gchordoff")
    try:
        with _native_output_to_log():
            return symusic.Score.from_abc("\n".join(lines) + "\n")
    except RuntimeError as error:
        raise RenderError(f"ABC does not parse: {error}") from error


def _perform(score: symusic.Score, spec: RenderSpec) -> _Performance:
    """Humanise the score's notes at the spec's tempo and crop them at max_seconds."""
    tpq = int(score.ticks_per_quarter)
    tracks = [track.notes.numpy() for track in score.tracks if not track.is_drum and len(track.notes)]
    if not tracks:
        raise RenderError("the tune has no notes")
    channel = np.concatenate([np.full(len(t["time"]), _CHANNELS[i % len(_CHANNELS)]) for i, t in enumerate(tracks)])
    pitch = np.concatenate([t["pitch"] for t in tracks]).astype(np.int64)
    velocity = np.concatenate([t["velocity"] for t in tracks]).astype(np.int64)
    notated_onset = np.concatenate([t["time"] for t in tracks]).astype(np.int64)
    notated_duration = np.concatenate([t["duration"] for t in tracks]).astype(np.int64)

    ticks_per_second = spec.tempo_bpm * tpq / 60.0
    rng = np.random.default_rng(spec.seed)
    count = len(pitch)
    velocity = np.clip(velocity + rng.integers(-VELOCITY_JITTER, VELOCITY_JITTER + 1, count), 1, 127)
    shift = np.clip(rng.normal(0.0, ONSET_JITTER_SECONDS, count), -2.5 * ONSET_JITTER_SECONDS,
                    2.5 * ONSET_JITTER_SECONDS)
    onset = np.maximum(0, np.rint(notated_onset + shift * ticks_per_second)).astype(np.int64)
    factor = np.exp(rng.normal(0.0, DURATION_JITTER, count))
    duration = np.maximum(notated_duration * factor, MIN_NOTE_SECONDS * ticks_per_second)
    offset = onset + np.maximum(1, np.rint(duration)).astype(np.int64)

    limit = int(spec.max_seconds * ticks_per_second)
    cropped = bool(offset.max() > limit)
    keep = onset < limit
    offset = np.minimum(offset, limit)

    # a longer note must not swallow the next onset of the same key on its channel: its note-off would cut it
    by_key = np.lexsort((onset, pitch, channel))
    same_key = (channel[by_key][1:] == channel[by_key][:-1]) & (pitch[by_key][1:] == pitch[by_key][:-1])
    following = np.where(same_key, onset[by_key][1:], np.iinfo(np.int64).max)
    offset[by_key[:-1]] = np.minimum(offset[by_key[:-1]], following)
    keep &= offset > onset
    if not keep.any():
        raise RenderError("no notes start before max_seconds")

    order = np.flatnonzero(keep)[np.argsort(onset[keep], kind="stable")]
    return _Performance(ticks_per_quarter=tpq, channel=channel[order], pitch=pitch[order],
                        velocity=velocity[order], onset=onset[order], offset=offset[order],
                        notated_onset=notated_onset[order], notated_duration=notated_duration[order],
                        cropped=cropped)


def _midi(performance: _Performance, spec: RenderSpec) -> bytes:
    score = symusic.Score(performance.ticks_per_quarter)
    score.tempos.append(symusic.Tempo(0, qpm=spec.tempo_bpm))
    for channel in np.unique(performance.channel):
        mask = performance.channel == channel
        track = symusic.Track(name=f"voice {len(score.tracks) + 1}", program=spec.program, is_drum=False)
        track.notes = symusic.Note.from_numpy(
            time=performance.onset[mask].astype(np.int32),
            duration=(performance.offset[mask] - performance.onset[mask]).astype(np.int32),
            pitch=performance.pitch[mask].astype(np.int8),
            velocity=performance.velocity[mask].astype(np.int8))
        score.tracks.append(track)
    return bytes(score.dumps_midi())


@functools.lru_cache(maxsize=1)
def _synth(soundfont: str, sample_rate: int) -> tuple[tinysoundfont.Synth, int]:
    """One synthesiser per process, since loading a large soundfont costs far more than rendering a tune."""
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    return synth, synth.sfload(soundfont)


def _synthesise(performance: _Performance, spec: RenderSpec, soundfont: Path) -> np.ndarray:
    """Play the notes through TinySoundFont, sample-accurately, and return normalised mono float32 audio."""
    synth, sfid = _synth(str(soundfont.resolve()), spec.sample_rate)
    synth.sounds_off()
    synth.generate(int(DRAIN_SECONDS * spec.sample_rate))  # every voice is free again, so renders are repeatable
    for channel in np.unique(performance.channel):
        try:
            synth.program_select(int(channel), sfid, 0, spec.program)
        except RuntimeError as error:
            raise RenderError(f"the soundfont has no program {spec.program}: {error}") from error

    samples_per_tick = spec.sample_rate * 60.0 / (spec.tempo_bpm * performance.ticks_per_quarter)
    length = int(math.ceil(performance.offset.max() * samples_per_tick + TAIL_SECONDS * spec.sample_rate))
    length = min(length, int(round(spec.max_seconds * spec.sample_rate)))  # the tail, too, stops at max_seconds
    starts = np.rint(performance.onset * samples_per_tick).astype(np.int64)
    ends = np.rint(performance.offset * samples_per_tick).astype(np.int64)
    # note-offs sort before note-ons at the same sample, so a repeated key is released, then struck again
    times = np.concatenate([ends, starts])
    is_on = np.concatenate([np.zeros(len(ends), bool), np.ones(len(starts), bool)])
    notes = np.concatenate([np.arange(len(ends)), np.arange(len(starts))])
    events = np.lexsort((is_on, times))

    stereo = np.zeros((length, 2), dtype=np.float32)
    position = 0
    for event in events:
        at = min(int(times[event]), length)
        if at > position:
            synth.generate(at - position, memoryview(stereo[position:at]).cast("B"))
            position = at
        note = notes[event]
        channel, key = int(performance.channel[note]), int(performance.pitch[note])
        if is_on[event]:
            synth.noteon(channel, key, int(performance.velocity[note]))
        else:
            synth.noteoff(channel, key)
    if length > position:
        synth.generate(length - position, memoryview(stereo[position:]).cast("B"))

    audio = 0.5 * (stereo[:, 0] + stereo[:, 1])
    if not np.isfinite(audio).all():
        raise RenderError("the synthesiser produced non-finite samples")
    peak = float(np.abs(audio).max())
    if peak < SILENCE:
        raise RenderError("the rendered audio is silent")
    audio *= PEAK / peak
    fade = int((FADE_SECONDS if performance.cropped else END_FADE_SECONDS) * spec.sample_rate)
    fade = min(fade, length)
    audio[length - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio


def _note_stats(performance: _Performance, spec: RenderSpec) -> NoteStats:
    seconds_per_tick = 60.0 / (spec.tempo_bpm * performance.ticks_per_quarter)
    span = (performance.offset.max() - performance.onset.min()) * seconds_per_tick
    pitch = performance.pitch
    # chords: abc2midi staggers a chord's notes by a few ticks, so nearby notated onsets form one chord
    order = np.argsort(performance.notated_onset, kind="stable")
    onsets = performance.notated_onset[order]
    new_chord = np.concatenate([[True], np.diff(onsets) > performance.ticks_per_quarter * CHORD_SPREAD])
    chord = np.cumsum(new_chord) - 1
    melody = np.full(chord[-1] + 1, -1)
    np.maximum.at(melody, chord, pitch[order])  # the top note of each chord, in time order
    intervals = np.diff(melody)
    moving = intervals[intervals != 0]
    notated = onsets + performance.notated_duration[order] - onsets[new_chord][chord]  # from the chord's start
    grid = np.rint(notated * DURATION_GRID / performance.ticks_per_quarter)
    _, counts = np.unique(grid, return_counts=True)
    share = counts / counts.sum()
    entropy = float(-(share * np.log2(share)).sum())
    return NoteStats(
        note_density=float(len(pitch) / span),
        pitch_mean=float(pitch.mean()),
        pitch_range=float(pitch.max() - pitch.min()),
        mean_abs_interval=float(np.abs(intervals).mean()) if len(intervals) else 0.0,
        ascending_share=float((moving > 0).mean()) if len(moving) else 0.5,
        rhythmic_variety=abs(entropy),  # a single duration gives -0.0
    )


def _paths(key: str) -> tuple[str, str, str]:
    """Audio, MIDI and metadata paths of a cache entry, relative to the output folder."""
    return f"audio/{key}.flac", f"midi/{key}.mid", f"audio/{key}.json"


def _render_to_cache(spec: RenderSpec, key: str, out_dir: Path, soundfont: Path) -> dict[str, object]:
    """Render one spec and write its files atomically; the metadata JSON goes last and marks the entry complete."""
    audio_path, midi_path, meta_path = _paths(key)
    rendered = render(spec, soundfont)
    with atomic_path(out_dir / audio_path) as tmp:
        soundfile.write(tmp, rendered.audio, spec.sample_rate, format="FLAC", subtype="PCM_16")
    with atomic_path(out_dir / midi_path) as tmp:
        tmp.write_bytes(rendered.midi)
    meta = {"seconds": rendered.seconds, **dataclasses.asdict(rendered.notes)}
    write_text(json.dumps(meta, sort_keys=True), out_dir / meta_path)
    return meta


def _render_chunk(items: list[tuple[str, RenderSpec]], out_dir: Path,
                  soundfont: Path) -> list[tuple[str, dict[str, object] | None, str | None]]:
    """Render a chunk in a worker; a failure becomes a reason, so one bad tune never stops the run."""
    results: list[tuple[str, dict[str, object] | None, str | None]] = []
    for key, spec in items:
        try:
            results.append((key, _render_to_cache(spec, key, out_dir, soundfont), None))
        except RenderError as error:
            results.append((key, None, error.reason))
        except Exception as error:  # noqa: BLE001 - a bug on one odd tune must not lose the whole corpus
            logger.exception("unexpected failure rendering %s", spec.track_id)
            results.append((key, None, f"unexpected {type(error).__name__}: {error}"))
    return results


def _read_cached(out_dir: Path, key: str) -> dict[str, object] | None:
    audio_path, midi_path, meta_path = _paths(key)
    if not all((out_dir / path).is_file() for path in (audio_path, midi_path, meta_path)):
        return None
    try:
        return json.loads((out_dir / meta_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def render_many(specs: Sequence[RenderSpec], out_dir: Path, soundfont: Path | None = None, workers: int = 2,
                progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render every spec into `out_dir` (cached by content hash) and return (rendered, skipped) tables.

    Files: `audio/<key>.flac` (PCM_16), `midi/<key>.mid` and `audio/<key>.json` (length and `NoteStats`); an entry
    whose three files exist is reused. `workers` spawned processes render in chunks (1 renders in this process),
    so a script calling this with workers > 1 needs the usual `if __name__ == "__main__":` guard.
    `progress(n)` is called with the number of specs that just finished, cached ones included.
    """
    out_dir = Path(out_dir)
    soundfont = Path(soundfont) if soundfont is not None else find_soundfont()
    keys = [cache_key(spec, soundfont) for spec in specs]
    uses = collections.Counter(keys)
    outcome: dict[str, tuple[dict[str, object] | None, str | None]] = {}
    cached: set[str] = set()
    pending: dict[str, RenderSpec] = {}
    for key, spec in zip(keys, specs):
        if key in outcome or key in pending:
            continue
        meta = _read_cached(out_dir, key)
        if meta is None:
            pending[key] = spec
        else:
            outcome[key] = (meta, None)
            cached.add(key)
    reused = sum(uses[key] for key in cached)
    if progress is not None and reused:
        progress(reused)
    logger.info("rendering %d of %d specs (%d cached) with %s", len(pending), len(specs), len(cached),
                soundfont.name)

    def record(results: list[tuple[str, dict[str, object] | None, str | None]]) -> None:
        for key, meta, reason in results:
            outcome[key] = (meta, reason)
        if progress is not None:
            progress(sum(uses[key] for key, _, _ in results))

    items = list(pending.items())
    if workers <= 1 or len(items) <= 1:
        for item in items:
            record(_render_chunk([item], out_dir, soundfont))
    else:
        size = max(1, min(16, math.ceil(len(items) / (4 * workers))))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        # spawn: forking a process that runs threads (a progress bar, a torch pool) can deadlock the children
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers,
                                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_render_chunk, chunk, out_dir, soundfont): chunk for chunk in chunks}
            for future in concurrent.futures.as_completed(futures):
                try:
                    record(future.result())
                except BrokenProcessPool as error:
                    record([(key, None, f"worker process died: {error}") for key, _ in futures[future]])

    rendered_rows, skipped_rows = [], []
    for key, spec in zip(keys, specs):
        meta, reason = outcome[key]
        if meta is None:
            skipped_rows.append({"track_id": spec.track_id, "reason": reason})
            continue
        audio_path, midi_path, _ = _paths(key)
        rendered_rows.append({
            "track_id": spec.track_id, "audio_path": audio_path, "midi_path": midi_path,
            "seconds": float(meta["seconds"]), "program": spec.program, "tempo_bpm": spec.tempo_bpm,
            "cached": key in cached, **{name: float(meta[name]) for name in NOTE_STAT_COLUMNS},
        })
    columns = ["track_id", "audio_path", "midi_path", "seconds", "program", "tempo_bpm", "cached",
               *NOTE_STAT_COLUMNS]
    rendered = pd.DataFrame(rendered_rows, columns=columns)
    skipped = pd.DataFrame(skipped_rows, columns=["track_id", "reason"])
    if len(skipped):
        logger.warning("%d of %d specs could not be rendered", len(skipped), len(specs))
    return rendered, skipped

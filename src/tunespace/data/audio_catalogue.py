"""Make a tracks table from a plain folder of audio files, so music without any metadata file can be embedded.

What it writes into the data folder DATA:
- tracks.parquet, valid for the data model (`tunespace.data.schema.TRACKS`): track_id is the file's path relative
  to the audio folder (POSIX slashes, extension kept, so `a.wav` and `a.flac` never collide); audio_path is the
  file's path relative to DATA, because extraction (`tunespace embed --data DATA`) resolves audio_path against
  DATA. When the audio folder is outside DATA this path starts with `..`; moving DATA alone then breaks it, moving
  both together does not. duration is in seconds, from the file header. title, artist, album and genre come from
  the file's tags: with PyAV installed (the `decode` extra) every compressed file is read by ffmpeg, which gives
  ID3 (MP3), MP4/M4A, Vorbis and Opus tags; PCM files (WAV INFO chunks, FLAC comments) and, without PyAV, every
  file are read by libsndfile, which has no ID3 or MP4 tags (those columns stay empty then).
- skipped.parquet: every file that could not be read as audio (path relative to the audio folder, kind, reason),
  so a corrupt file or a stray text file is listed rather than silently dropped or fatal.
Hidden files and folders (name starting with ".") and anything inside DATA itself are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import soundfile

from tunespace.audio.decode import OPEN_ERRORS, AudioDecodeError, open_error
from tunespace.audio.stream import PCM_SUFFIXES, av_open, av_seconds, resolve_decoder
from tunespace.data.schema import TRACKS, validate_table
from tunespace.errors import TunespaceError
from tunespace.io import write_parquet

TAGS = ("title", "artist", "album", "genre")
TRACK_COLUMNS = ["track_id", "audio_path", "duration", *TAGS]
SKIPPED_COLUMNS = ["path", "kind", "reason"]


class CatalogueError(TunespaceError):
    """The audio folder or the output folder cannot be used as asked."""


@dataclass
class CatalogueReport:
    tracks: int
    skipped: int
    seconds: float  # total audio duration
    tracks_path: Path
    skipped_path: Path


def _files(folder: Path, exclude: Path) -> list[Path]:
    """Every visible regular-or-broken file under `folder`, sorted, leaving out `exclude` (the output folder)."""
    found: list[Path] = []
    for parent, dirs, names in os.walk(folder):
        here = Path(parent)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != exclude)
        found.extend(here / n for n in names if not n.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read(path: Path, decoder: str) -> tuple[float, dict[str, str]]:
    """Duration in seconds and the file's text tags; AudioDecodeError with the true reason otherwise."""
    if decoder == "av" and path.suffix.lower() not in PCM_SUFFIXES:
        return _read_av(path)
    try:
        with soundfile.SoundFile(str(path)) as handle:
            frames, rate = handle.frames, handle.samplerate
            metadata = handle.copy_metadata()
    except OPEN_ERRORS as error:
        raise open_error(path, error) from error
    if not rate or frames <= 0:
        raise AudioDecodeError(f"{path}: no samples")
    tags = {k: str(v).strip() for k, v in metadata.items() if k in TAGS and str(v).strip()}
    return frames / rate, tags


def _read_av(path: Path) -> tuple[float, dict[str, str]]:
    """The same through ffmpeg: container tags (ID3, MP4) and the audio stream's own (Vorbis/Opus comments)."""
    with av_open(path) as container:
        seconds = av_seconds(container)
        metadata = {**container.metadata, **container.streams.audio[0].metadata}
    if seconds <= 0:
        raise AudioDecodeError(f"{path}: no samples")
    tags = {k.lower(): str(v).strip() for k, v in metadata.items() if k.lower() in TAGS and str(v).strip()}
    return seconds, tags


def build_audio_catalogue(folder: str | Path, data: str | Path, decoder: str = "auto") -> CatalogueReport:
    """Scan `folder` for audio files and write DATA/tracks.parquet and DATA/skipped.parquet (see the module doc)."""
    folder, data = Path(folder), Path(data)
    decoder = resolve_decoder(decoder)
    if not folder.is_dir():
        raise CatalogueError(f"{folder}: not a folder of audio files")
    if data.exists() and not data.is_dir():
        raise CatalogueError(f"{data}: exists and is not a folder")
    rows: list[dict[str, object]] = []
    skipped: list[dict[str, str]] = []
    for path in _files(folder, data.resolve()):
        relative = path.relative_to(folder).as_posix()
        try:
            duration, tags = _read(path, decoder)
        except AudioDecodeError as error:
            reason = str(error).removeprefix(f"{path}: ")
            skipped.append({"path": relative, "kind": reason.split(" (")[0], "reason": reason})
            continue
        rows.append({"track_id": relative, "audio_path": Path(os.path.relpath(path, data)).as_posix(),
                     "duration": duration, **{tag: tags.get(tag) for tag in TAGS}})
    data.mkdir(parents=True, exist_ok=True)
    tracks_path, skipped_path = data / "tracks.parquet", data / "skipped.parquet"
    frame = pd.DataFrame(rows, columns=TRACK_COLUMNS)
    frame[list(TAGS)] = frame[list(TAGS)].astype("string")
    frame["duration"] = frame["duration"].astype("float64")
    write_parquet(validate_table(frame, TRACKS, str(tracks_path)), tracks_path)
    write_parquet(pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).astype(str), skipped_path)
    return CatalogueReport(tracks=len(rows), skipped=len(skipped), seconds=float(frame["duration"].sum()),
                           tracks_path=tracks_path, skipped_path=skipped_path)


__all__ = ["CatalogueError", "CatalogueReport", "build_audio_catalogue"]

"""Decode audio files to mono float32 at a chosen sample rate (soundfile + soxr).

libsndfile reports a missing file as "System error." and a text file named .mp3 as "File does not exist", so
every open goes through :func:`open_error`, which checks the path itself and says what is really wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import soundfile
import soxr

from tunespace.errors import TunespaceError

OPEN_ERRORS = (RuntimeError, soundfile.LibsndfileError, OSError)
# how libsndfile ("does not exist", "System error") and ffmpeg say that no audio format was recognised
NO_FORMAT_WORDS = ("does not exist", "System error", "Invalid data found when processing input")


class AudioDecodeError(TunespaceError):
    """A file could not be decoded into usable audio; the message says which and why."""


def open_error(path: str | Path, error: BaseException) -> AudioDecodeError:
    """The true reason a file failed to open: missing file, is a directory, not readable, empty file or not audio."""
    file = Path(path)
    if file.is_dir():
        return AudioDecodeError(f"{path}: is a directory")
    if not file.exists():
        return AudioDecodeError(f"{path}: missing file")
    if not os.access(file, os.R_OK):
        return AudioDecodeError(f"{path}: not readable (permission denied)")
    if file.stat().st_size == 0:
        return AudioDecodeError(f"{path}: not audio (empty file)")
    detail = re.sub(r"^Error opening .*?: ", "", str(error))  # libsndfile's prefix
    detail = re.sub(r"^\[Errno -?\d+\] ", "", detail).replace(f": '{path}'", "").strip().rstrip(".")  # ffmpeg's
    if not detail or any(words in detail for words in NO_FORMAT_WORDS):
        detail = "no audio format recognised"
    return AudioDecodeError(f"{path}: not audio ({detail})")


def audio_info(path: str | Path) -> soundfile._SoundFileInfo:
    """The header (rate, frames, channels), without decoding; AudioDecodeError with the true reason otherwise."""
    try:
        return soundfile.info(str(path))
    except OPEN_ERRORS as error:
        raise open_error(path, error) from error


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate`; channels are averaged, other rates resampled with soxr."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except OPEN_ERRORS as error:
        raise open_error(path, error) from error
    if audio.size == 0:
        raise AudioDecodeError(f"{path}: no samples")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(f"{path}: non-finite samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return mono

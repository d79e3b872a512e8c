"""Decode audio files to mono float32 at a chosen sample rate (soundfile + soxr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from tunespace.errors import TunespaceError


class AudioDecodeError(TunespaceError):
    """A file could not be decoded into usable audio; the message says which and why."""


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate`; channels are averaged, other rates resampled with soxr."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as error:
        raise AudioDecodeError(f"{path}: cannot decode ({error})") from error
    if audio.size == 0:
        raise AudioDecodeError(f"{path}: no samples")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(f"{path}: non-finite samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return mono

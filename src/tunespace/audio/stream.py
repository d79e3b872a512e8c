"""Stream a file as mono segments at a target sample rate, so a one-hour recording never sits in memory whole.

soundfile (libsndfile 1.1+) reads wav, flac, ogg/vorbis, opus and mp3; soxr resamples block by block with its
streaming resampler, which gives the same samples as resampling the whole file at once up to edge rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from tunespace.audio.decode import OPEN_ERRORS, AudioDecodeError, audio_info, open_error

_READ_BLOCK = 1 << 17  # source frames per read: ~3 s at 44.1 kHz


def audio_seconds(path: str | Path) -> float:
    """Duration from the header, without decoding; raises AudioDecodeError with the true reason if unreadable."""
    info = audio_info(path)
    return info.frames / info.samplerate if info.samplerate else 0.0


def stream_segments(path: str | Path, sample_rate: int, segment_samples: int) -> Iterator[np.ndarray]:
    """Yield mono float32 segments of `segment_samples` at `sample_rate`; the last one may be shorter.

    Channels are averaged (mixing down is what every backend expects); other rates go through soxr.
    Raises AudioDecodeError on unreadable or non-finite data, naming the file.
    """
    try:
        handle = soundfile.SoundFile(str(path))
    except OPEN_ERRORS as error:
        raise open_error(path, error) from error
    with handle:
        resampler = None if handle.samplerate == sample_rate else soxr.ResampleStream(
            handle.samplerate, sample_rate, 1, dtype="float32")
        pending: list[np.ndarray] = []
        held = 0
        while True:
            try:
                block = handle.read(_READ_BLOCK, dtype="float32", always_2d=True)
            except (RuntimeError, soundfile.LibsndfileError) as error:
                raise AudioDecodeError(f"{path}: decoding failed mid-file ({error})") from error
            last = len(block) < _READ_BLOCK
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if not np.isfinite(mono).all():
                raise AudioDecodeError(f"{path}: non-finite samples")
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
            if len(mono):
                pending.append(mono)
                held += len(mono)
            while held >= segment_samples:
                joined = np.concatenate(pending)
                yield joined[:segment_samples]
                rest = joined[segment_samples:]
                pending, held = ([rest] if len(rest) else []), len(rest)
            if last:
                break
        if held:
            yield np.concatenate(pending)

"""Stream a file as mono segments at a target sample rate, so a one-hour recording never sits in memory whole.

Two decoders. soundfile (libsndfile 1.1+) reads wav, flac, ogg/vorbis, opus and mp3. PyAV (the `decode` extra,
ffmpeg's decoders) reads those and AAC/M4A, WMA and the rest, and decodes Opus about 3x and Vorbis about 1.5x faster
(bench/audio_formats.py); "auto" uses PyAV for every compressed file when it is installed and soundfile for PCM
formats (wav, flac, aiff), where libsndfile is the faster of the two and both give the same samples. soxr resamples
block by block with its streaming resampler, which gives the same samples as resampling the whole file at once up
to edge rounding.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from tunespace.audio.decode import OPEN_ERRORS, AudioDecodeError, audio_info, open_error
from tunespace.errors import MissingExtraError, TunespaceError

_READ_BLOCK = 1 << 17  # source frames per read: ~3 s at 44.1 kHz
DECODERS = ("auto", "soundfile", "av")
PCM_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc", ".w64", ".caf", ".rf64"})


class DecoderError(TunespaceError, ValueError):
    """An unknown decoder name."""


def resolve_decoder(decoder: str = "auto") -> str:
    """"soundfile" or "av": "auto" is "av" when PyAV is installed; "av" without PyAV names the extra to install."""
    if decoder not in DECODERS:
        raise DecoderError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    installed = importlib.util.find_spec("av") is not None
    if decoder == "auto":
        return "av" if installed else "soundfile"
    if decoder == "av" and not installed:
        raise MissingExtraError("decoder 'av' needs PyAV: pip install 'tunespace[decode]'")
    return decoder


def _through_av(path: str | Path, decoder: str) -> bool:
    return resolve_decoder(decoder) == "av" and Path(path).suffix.lower() not in PCM_SUFFIXES


def audio_seconds(path: str | Path, decoder: str = "auto") -> float:
    """Duration from the header, without decoding; raises AudioDecodeError with the true reason if unreadable."""
    if _through_av(path, decoder):
        return _av_seconds(path)
    info = audio_info(path)
    return info.frames / info.samplerate if info.samplerate else 0.0


def stream_segments(path: str | Path, sample_rate: int, segment_samples: int,
                    decoder: str = "auto") -> Iterator[np.ndarray]:
    """Yield mono float32 segments of `segment_samples` at `sample_rate`; the last one may be shorter.

    Channels are averaged (mixing down is what every backend expects); other rates go through soxr.
    Raises AudioDecodeError on unreadable or non-finite data, naming the file.
    """
    rate, blocks = _av_blocks(path) if _through_av(path, decoder) else _soundfile_blocks(path)
    resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
    pending: list[np.ndarray] = []
    held = 0
    for block, last in _with_last(blocks):
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
    if held:
        yield np.concatenate(pending)


def _with_last(blocks: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    """Each block with whether it is the last (the streaming resampler flushes on it); an empty file gives one empty
    block, so the flush still happens."""
    previous = next(blocks, None)
    if previous is None:
        yield np.zeros((0, 1), dtype=np.float32), True
        return
    for block in blocks:
        yield previous, False
        previous = block
    yield previous, True


def _soundfile_blocks(path: str | Path) -> tuple[int, Iterator[np.ndarray]]:
    try:
        handle = soundfile.SoundFile(str(path))
    except OPEN_ERRORS as error:
        raise open_error(path, error) from error

    def blocks() -> Iterator[np.ndarray]:
        with handle:
            while True:
                try:
                    block = handle.read(_READ_BLOCK, dtype="float32", always_2d=True)
                except (RuntimeError, soundfile.LibsndfileError) as error:
                    raise AudioDecodeError(f"{path}: decoding failed mid-file ({error})") from error
                if len(block):
                    yield block
                if len(block) < _READ_BLOCK:
                    return

    return handle.samplerate, blocks()


def av_open(path: str | Path):  # returns an av container (imported lazily)
    """An ffmpeg container with at least one audio stream; AudioDecodeError with the true reason otherwise."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise open_error(path, error) from error
    if not container.streams.audio:
        container.close()
        raise AudioDecodeError(f"{path}: not audio (no audio stream)")
    return container


def av_seconds(container) -> float:  # an av container
    """The first audio stream's duration from the container header (0.0 when the header has none)."""
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else 0.0


def _av_seconds(path: str | Path) -> float:
    with av_open(path) as container:
        return av_seconds(container)


def _av_blocks(path: str | Path) -> tuple[int, Iterator[np.ndarray]]:
    """Frames as float32 [samples, channels] blocks at the stream's own rate (no resampling by ffmpeg: soxr does it,
    as for soundfile, so both decoders share one resampler)."""
    import av

    container = av_open(path)
    stream = container.streams.audio[0]
    stream.thread_type = "AUTO"
    converter = av.AudioResampler(format="fltp")  # sample format only: layout and rate stay the stream's

    def blocks() -> Iterator[np.ndarray]:
        with container:
            try:
                for frame in container.decode(stream):
                    for planar in converter.resample(frame):
                        yield planar.to_ndarray().T
                for planar in converter.resample(None):
                    yield planar.to_ndarray().T
            except av.FFmpegError as error:
                raise AudioDecodeError(f"{path}: decoding failed mid-file ({error})") from error

    return stream.rate, blocks()

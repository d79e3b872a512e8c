"""Open errors name the true cause, whichever entry point (whole file, header, stream) meets them."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from tunespace.audio.decode import AudioDecodeError, audio_info, load_audio
from tunespace.audio.stream import DecoderError, audio_seconds, resolve_decoder, stream_segments
from tunespace.errors import MissingExtraError


def _all_entry_points(path):
    yield lambda: load_audio(path, 16000)
    yield lambda: audio_seconds(path)
    yield lambda: list(stream_segments(path, 16000, 8000))
    yield lambda: audio_info(path)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: None, "missing file"),
    (lambda p: p.write_text("a text file\n"), "not audio (no audio format recognised)"),
    (lambda p: p.write_bytes(b""), "not audio (empty file)"),
    (lambda p: p.mkdir(), "is a directory"),
])
def test_each_unreadable_path_gets_its_true_reason(tmp_path, make, reason):
    path = tmp_path / "song.mp3"
    make(path)
    for call in _all_entry_points(path):
        with pytest.raises(AudioDecodeError) as caught:
            call()
        assert str(caught.value) == f"{path}: {reason}"


def test_a_readable_file_still_decodes(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.full(1600, 0.25, np.float32), 16000, subtype="FLOAT")
    assert audio_seconds(tmp_path / "a.wav") == 0.1
    np.testing.assert_allclose(load_audio(tmp_path / "a.wav", 16000), 0.25)


# ---------------------------------------------------------------- decoders: soundfile and PyAV (ffmpeg)

def tone(seconds: float = 2.0, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)


def write_m4a(path, signal: np.ndarray, rate: int, tags: dict[str, str]) -> None:
    """AAC in MP4, which libsndfile cannot read, encoded with ffmpeg's own AAC encoder through PyAV."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w", format="mp4") as container:
        container.metadata.update(tags)
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal.T), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("suffix,subtype,tolerance", [(".ogg", "VORBIS", 1e-5), (".opus", "OPUS", 0.02)])
def test_av_and_soundfile_decode_the_same_samples(tmp_path, suffix, subtype, tolerance):
    pytest.importorskip("av")
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, tone(), 48000, format="OGG", subtype=subtype)
    through_av = np.concatenate(list(stream_segments(path, 16000, 8000, decoder="av")))
    through_sf = np.concatenate(list(stream_segments(path, 16000, 8000, decoder="soundfile")))
    assert through_av.shape == through_sf.shape == (32000,)
    # Vorbis: the same decoder maths; Opus: ffmpeg's own decoder, not libopus, so close rather than equal
    assert np.abs(through_av - through_sf).max() < tolerance
    assert audio_seconds(path, "av") == pytest.approx(audio_seconds(path, "soundfile"), abs=0.03)


def test_m4a_is_read_only_through_av(tmp_path):
    path = tmp_path / "tone.m4a"
    write_m4a(path, tone(), 48000, {"title": "A Tone"})
    samples = np.concatenate(list(stream_segments(path, 16000, 16000, decoder="auto")))
    assert abs(len(samples) - 32000) < 16000 * 0.1 and 0.1 < np.abs(samples).max() < 0.5
    with pytest.raises(AudioDecodeError, match="not audio"):
        list(stream_segments(path, 16000, 16000, decoder="soundfile"))


def test_decoder_names_and_missing_pyav(monkeypatch):
    import importlib.util

    with pytest.raises(DecoderError, match="auto, soundfile, av"):
        resolve_decoder("ffmpeg")
    assert resolve_decoder("soundfile") == "soundfile"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    assert resolve_decoder("auto") == "soundfile"
    with pytest.raises(MissingExtraError, match=r"tunespace\[decode\]"):
        resolve_decoder("av")

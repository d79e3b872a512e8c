"""Open errors name the true cause, whichever entry point (whole file, header, stream) meets them."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from tunespace.audio.decode import AudioDecodeError, audio_info, load_audio
from tunespace.audio.stream import audio_seconds, stream_segments


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

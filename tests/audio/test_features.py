"""MFCCs match librosa (reference fixture) and the 104 statistics are what Music4All-Onion ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tunespace.audio.features import dct_matrix, hz_to_mel, mel_filterbank, mel_to_hz, mfcc, mfcc_stats

FIXTURES = Path(__file__).parent / "fixtures"


def chirp(sr: int = 16000) -> np.ndarray:
    t = np.arange(int(1.5 * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * (220 + 400 * t) * t) + 0.2 * np.sin(2 * np.pi * 1375 * t) * (t > 0.5)
            + 0.05 * np.sign(np.sin(2 * np.pi * 97 * t))).astype(np.float32)


def test_mfcc_matches_librosa_reference():
    reference = np.load(FIXTURES / "librosa_mfcc_chirp.npy")
    ours = mfcc(torch.from_numpy(chirp()), 16000).numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=2e-3 * np.abs(reference).max())


def test_mel_scale_round_trip_and_known_points():
    assert hz_to_mel(np.array([1000.0]))[0] == pytest.approx(15.0)  # Slaney: 1 kHz is mel 15
    assert hz_to_mel(np.array([200.0 / 3]))[0] == pytest.approx(1.0)
    freqs = np.array([0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs)), freqs, atol=1e-6)


def test_filterbank_shape_and_area_normalisation():
    bank = mel_filterbank(16000, 2048, 40).numpy()
    assert bank.shape == (40, 1025) and (bank >= 0).all()
    assert (bank.sum(axis=1) > 0).all()  # no empty filter


def test_dct_is_orthonormal():
    basis = dct_matrix(32, 32).numpy()
    np.testing.assert_allclose(basis @ basis.T, np.eye(32), atol=1e-5)


def test_mfcc_stats_layout_by_hand():
    audio = chirp()
    stats = mfcc_stats(audio, 16000)
    coefficients = mfcc(torch.from_numpy(audio), 16000).double().numpy()
    covariance = np.cov(coefficients)
    expected = np.concatenate([coefficients.mean(axis=1), covariance[np.triu_indices(13)]])
    assert stats.shape == (104,) and stats.dtype == np.float32
    np.testing.assert_allclose(stats, expected, rtol=1e-5, atol=1e-4)


def test_too_short_audio_is_refused():
    with pytest.raises(ValueError, match="too short"):
        mfcc_stats(np.zeros(10, dtype=np.float32), 16000)

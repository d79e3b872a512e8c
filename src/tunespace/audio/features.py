"""Log-mel spectrograms and MFCCs in torch, with librosa's definitions (Slaney mel scale and filter
normalisation, power in dB with an 80 dB floor, orthonormal DCT-II), so features match what the field computes.

`mfcc_stats` gives the 104 numbers Music4All-Onion ships per track: the mean of 13 MFCCs and the upper triangle
(diagonal included) of their covariance over frames.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

N_FFT = 2048
HOP = 512
N_MELS = 128
N_MFCC = 13


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    above = hz >= min_log_hz
    return np.where(above, min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep, mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """(n_mels, 1 + n_fft // 2) triangular filters, area-normalised ('slaney'), as librosa.filters.mel."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


@lru_cache(maxsize=4)
def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) orthonormal DCT-II, as scipy.fft.dct(type=2, norm='ortho')."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return torch.from_numpy(basis.astype(np.float32))


def mel_power(audio: torch.Tensor, sample_rate: int, n_fft: int = N_FFT, hop: int = HOP,
              n_mels: int = N_MELS) -> torch.Tensor:
    """Mel power spectrogram (..., n_mels, frames) of mono audio (..., samples); centred frames, zero padding."""
    window = torch.hann_window(n_fft, periodic=True, device=audio.device)
    spectrum = torch.stft(audio, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    return mel_filterbank(sample_rate, n_fft, n_mels).to(audio.device) @ spectrum.abs().pow(2)


def power_to_db(power: torch.Tensor, amin: float = 1e-10, top_db: float = 80.0) -> torch.Tensor:
    """10 log10(power) floored at `top_db` below each spectrogram's maximum (librosa.power_to_db, ref=1)."""
    db = 10.0 * torch.log10(power.clamp_min(amin))
    peak = db.amax(dim=(-2, -1), keepdim=True)
    return torch.maximum(db, peak - top_db)


def mfcc(audio: torch.Tensor, sample_rate: int, n_mfcc: int = N_MFCC) -> torch.Tensor:
    """MFCCs (..., n_mfcc, frames) as librosa.feature.mfcc with its defaults."""
    log_mel = power_to_db(mel_power(audio, sample_rate))
    return dct_matrix(log_mel.shape[-2], n_mfcc).to(audio.device) @ log_mel


def mfcc_stats(audio: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
    """104 numbers: mean of 13 MFCCs, then the upper triangle of their covariance (ddof=1), row by row."""
    signal = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    coefficients = mfcc(signal, sample_rate).double()
    if coefficients.shape[-1] < 2:
        raise ValueError("audio too short for MFCC statistics: fewer than two frames")
    covariance = torch.cov(coefficients)
    rows, cols = torch.triu_indices(N_MFCC, N_MFCC)
    return torch.cat([coefficients.mean(dim=-1), covariance[rows, cols]]).float().numpy()

"""`mfcc`: the Music4All-Onion MFCC statistics (mean and covariance of 13 MFCCs, 104 numbers) as a backend."""

from __future__ import annotations

import numpy as np
import torch

from tunespace.audio.features import HOP, N_MFCC, mfcc
from tunespace.encoders.base import AudioBackend, register_backend

_ROWS, _COLS = torch.triu_indices(N_MFCC, N_MFCC)


@register_backend("mfcc")
class MfccBackend(AudioBackend):
    """Frames carry each MFCC vector and its pairwise products, so a plain mean over frames gives the first and
    second moments; `finalize` turns them into the mean and the unbiased covariance (as `numpy.cov`)."""

    name = "mfcc"
    dim = N_MFCC + len(_ROWS)
    # 30 s pieces: a batch of 16 stays near 1 GiB of STFT work, and 30-s previews (Onion, the corpus) fit in one.
    segment_seconds = 30.0
    min_seconds = 2 * HOP / 16000

    def __init__(self, device: str | torch.device = "cpu", sample_rate: int = 16000) -> None:
        super().__init__(device)
        self.sample_rate = sample_rate
        self.min_seconds = 2 * HOP / sample_rate

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coefficients = mfcc(waveforms.to(self.device), self.sample_rate).transpose(1, 2)  # (B, T, 13)
        # The dB floor is relative to each signal's own peak; padding is silence, so it never sets the peak.
        wide = coefficients.double()
        products = wide[:, :, _ROWS] * wide[:, :, _COLS]
        frames = 1 + lengths.to(self.device) // HOP
        valid = torch.arange(coefficients.shape[1], device=self.device)[None, :] < frames[:, None]
        return torch.cat([wide, products], dim=-1), valid

    def finalize(self, mean: np.ndarray, count: np.ndarray) -> np.ndarray:
        mean = np.asarray(mean, dtype=np.float64)
        first = mean[:, :N_MFCC]
        outer = first[:, _ROWS.numpy()] * first[:, _COLS.numpy()]
        n = np.asarray(count, dtype=np.float64)[:, None]
        covariance = (mean[:, N_MFCC:] - outer) * n / np.maximum(n - 1, 1)
        return np.concatenate([first, covariance], axis=1).astype(np.float32)

"""`jukebox`: Jukebox-5B features as CALM / jukemir computed them (Castellon et al., 2021), through `jukemirlib`.

Why a thin wrapper rather than a port: the model is OpenAI Jukebox's 5B top-level prior (72 transformer layers of
width 4800 with factorised sparse attention and artist/genre conditioning) over the top-level codes of its VQ-VAE;
reimplementing that is neither small nor checkable without the 10 GB of weights. `jukemirlib` runs the original
`jukebox` code and is the reference for these features, so this backend calls it. Neither package is on PyPI:
install `jukebox` (github.com/openai/jukebox) and `jukemirlib` (github.com/rodrigo-castellon/jukemirlib) from
source, and put `vqvae.pth.tar` and `prior_level_2.pth.tar` (Jukebox 5B) in the `weights` folder, which becomes
jukemirlib's cache directory so nothing is downloaded. jukemirlib runs the VQ-VAE with CUDA tensors, so a GPU with
at least 13 GB is needed in practice.

What is kept from the reference: 44.1 kHz mono audio scaled to a peak of 1 (jukemirlib's `load_audio`; here per
segment, over its real samples), at most 8192 top-level tokens (2^20 samples, about 23.8 s) per forward pass, and
layer 36 of 72 (width 4800) as the default: the layer CALM found best for MIR probing and the one the study used.
Frames are the prior's per-token activations, 44100 / 128 = 344.5 per second; `samples // 128` of them are real.
Segments are encoded one at a time on their real samples only, so padding never reaches the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunespace.encoders.base import AudioBackend, BackendUnavailableError, register_backend

SAMPLE_RATE = 44100
TOKEN_HOP = 128  # samples per top-level VQ-VAE token
CONTEXT_TOKENS = 8192
LAYERS = 72
WIDTH = 4800
CHECKPOINTS = ("vqvae.pth.tar", "prior_level_2.pth.tar")
INSTALL_HINT = ("install OpenAI's jukebox (pip install git+https://github.com/openai/jukebox.git) and jukemirlib "
                "(pip install git+https://github.com/rodrigo-castellon/jukemirlib.git); neither is on PyPI")


def import_jukemirlib() -> Any:
    try:
        import jukemirlib
    except ImportError as error:
        raise BackendUnavailableError(f"jukebox: {INSTALL_HINT}") from error
    return jukemirlib


@register_backend("jukebox")
class JukeboxBackend(AudioBackend):
    """Jukebox-5B prior activations at 344.5 Hz from 44.1 kHz audio (see the module docstring)."""

    name = "jukebox"
    sample_rate = SAMPLE_RATE
    dim = WIDTH
    segment_seconds = CONTEXT_TOKENS * TOKEN_HOP / SAMPLE_RATE
    min_seconds = TOKEN_HOP / SAMPLE_RATE

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None,
                 layer: int = 36) -> None:
        super().__init__(device)
        if not 1 <= int(layer) <= LAYERS:
            raise ValueError(f"jukebox layer must be in 1..{LAYERS}, got {layer!r}")
        self.layer = int(layer)
        folder = Path(weights).expanduser() if weights is not None else None
        missing = [name for name in CHECKPOINTS if folder is None or not (folder / name).is_file()]
        if missing:
            raise BackendUnavailableError(f"jukebox: {folder or 'no weights folder given'} lacks "
                                          f"{', '.join(missing)} (Jukebox 5B's VQ-VAE and top prior); pass "
                                          "weights=FOLDER holding both")
        self.lib = import_jukemirlib()
        # jukemirlib reads its cache folder and device from module globals; pointing the cache at `weights`
        # makes it load the local files instead of downloading them.
        for module in (self.lib, getattr(self.lib, "constants", None)):
            if module is not None:
                module.CACHE_DIR = str(folder)
                module.DEVICE = self.device.type
        self.weights = folder

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.long().cpu()
        counts = torch.clamp(torch.div(lengths, TOKEN_HOP, rounding_mode="floor"), max=CONTEXT_TOKENS)
        width = min(waveforms.shape[1] // TOKEN_HOP, CONTEXT_TOKENS)
        features = torch.zeros(len(waveforms), width, self.dim)
        audio = waveforms.detach().float().cpu().numpy()
        for row in torch.nonzero(counts > 0).flatten().tolist():
            clip = audio[row, :int(lengths[row])].astype(np.float32)
            peak = float(np.abs(clip).max())
            if peak > 0:
                clip = clip / peak
            activations = np.asarray(self.lib.extract(audio=clip, layers=[self.layer])[self.layer])
            frames = min(len(activations), int(counts[row]))
            counts[row] = frames
            features[row, :frames] = torch.from_numpy(activations[:frames].astype(np.float32))
        valid = torch.arange(width)[None, :] < counts[:, None]
        return features.to(self.device), valid.to(self.device)

"""`htcl`: the audio tower of a trained HTCL run as an extraction backend (`--option run=RUN_FOLDER`), so its
track embeddings come out of the same resumable, sharded pipeline as every other backend's. It lives beside the
training code it reads; the encoder registry imports it by module path (tunespace.encoders.base)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from tunespace.encoders.audio_encoder import AudioEncoder
from tunespace.encoders.base import AudioBackend, BackendUnavailableError, register_backend


@register_backend("htcl")
class HTCLBackend(AudioBackend):
    """One frame per segment: the L2-normalised embedding of that window (windows as long as the training crops),
    so the pipeline's mean over frames is the mean over windows, as `tunespace htcl evaluate` computes it."""

    name = "htcl"
    min_seconds = 0.5

    def __init__(self, run: str | Path | None = None, device: str | torch.device = "cpu",
                 checkpoint: str = "last.pt") -> None:
        super().__init__(device)
        from tunespace.contrastive.htcl import load_config

        if run is None:
            raise BackendUnavailableError("the htcl backend needs the run folder: --option run=RUN_FOLDER")
        folder = Path(run)
        if not (folder / "config.yaml").exists() or not (folder / checkpoint).exists():
            raise BackendUnavailableError(f"{folder}: expected config.yaml and {checkpoint} of an HTCL run")
        config = load_config(folder / "config.yaml")
        self.sample_rate = config.audio.sample_rate
        self.dim = config.audio.embed_dim
        self.segment_seconds = config.stage.crop_seconds
        self.encoder = AudioEncoder(config.audio)
        state = torch.load(folder / checkpoint, map_location="cpu", weights_only=False)["model"]
        self.encoder.load_state_dict({k.removeprefix("audio."): v for k, v in state.items() if k.startswith("audio.")})
        self.encoder.to(self.device).eval()

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = F.normalize(self.encoder(waveforms.to(self.device), lengths.to(self.device)), dim=-1)
        return embedded[:, None, :], (lengths >= self.min_seconds * self.sample_rate)[:, None].to(self.device)

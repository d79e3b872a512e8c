"""`musicfm`: MusicFM (Won et al., 2023), the BEST-RQ music foundation model, rebuilt in torch around the
Conformer encoder of `transformers`, running the published checkpoint from a local folder.

Why a port: MusicFM is not on PyPI and its reference code needs torchaudio and fetches a Conformer config from the
Hugging Face Hub at construction. Its structure is small and fully specified by that code:
- front end: torchaudio's MelSpectrogram at 24 kHz (n_fft 2048, hop 240, Hann window, centred with reflect padding,
  128 HTK mel bands without filter normalisation, power 2), `AmplitudeToDB` (10 log10, floor 1e-10), the last frame
  dropped, then standardised with the checkpoint's global mean and std (`*_stats.json`): 100 frames/s;
- two residual 3x3 Conv2d blocks (stride 2 in time and frequency, batch norm), flattened channel-major over the
  32 remaining bands and projected to 1024: 25 frames/s;
- a 12-layer wav2vec 2.0 Conformer: rotary self-attention, 16 heads, swish feed-forward of 4096, depthwise
  convolution of kernel 31 (the `facebook/wav2vec2-conformer-rope-large-960h-ft` configuration it is built from).
Parameter names mirror the reference module, so its state dict loads directly. The BEST-RQ quantiser, the token
classifier and the CLS token are training-only and are not loaded.

The architecture has not been checked against the real checkpoint here (no network); loading does check that every
parameter of this module is present in the checkpoint with the right shape.

Padding: the mel front end reflects at the clip's end, the convolutions and batch norms see padding, and the
Conformer's depthwise convolution does not mask it, so a padded row would change real frames. Rows are encoded in
groups of equal length instead, which also makes an attention mask unnecessary.

Layers: hidden state 0 is the Conformer's input, i the output of Conformer layer i, 12 the final output after the
encoder's closing layer norm (the reference's `get_latent(layer_ix=...)` numbering). The default, 6, is the layer
the authors' README extracts; "mean" averages all 13.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunespace.encoders.base import AudioBackend, BackendUnavailableError, register_backend
from tunespace.encoders.hf import equal_length_groups, parse_layer, require_transformers

SAMPLE_RATE = 24000
N_FFT = 2048
HOP = 240
N_MELS = 128
FEATURE = "melspec_2048"
MIN_SAMPLES = N_FFT // 2 + 1  # reflect padding needs more samples than half a window
TRAINING_ONLY = ("quantizer_", "linear.", "cls_token")


def htk_mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> torch.Tensor:
    """(1 + n_fft // 2, n_mels) triangular HTK-scale filters without normalisation (torchaudio's default)."""
    freqs = np.linspace(0, sample_rate // 2, 1 + n_fft // 2)
    top = 2595.0 * math.log10(1.0 + (sample_rate / 2) / 700.0)
    edges = 700.0 * (10 ** (np.linspace(0.0, top, n_mels + 2) / 2595.0) - 1.0)
    widths = np.diff(edges)
    slopes = edges[None, :] - freqs[:, None]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32))


class _Spectrogram(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT))


class _MelScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fb", htk_mel_filterbank())


class _MelSpectrogram(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.spectrogram = _Spectrogram()
        self.mel_scale = _MelScale()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, N_FFT, hop_length=HOP, window=self.spectrogram.window, center=True,
                          pad_mode="reflect", return_complex=True).abs().pow(2)
        return torch.matmul(spec.transpose(1, 2), self.mel_scale.fb).transpose(1, 2)


class _LogMel(nn.Module):
    """(batch, samples) -> (batch, 128, samples // 240) dB mel frames, as the reference's preprocessing."""

    def __init__(self) -> None:
        super().__init__()
        self.melspec = _MelSpectrogram()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return (10.0 * torch.log10(self.melspec(audio).clamp_min(1e-10)))[..., :-1]


class _ResidualBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, stride=2)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.conv3 = nn.Conv2d(channels_in, channels_out, 3, padding=1, stride=2)
        self.bn3 = nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(self.bn3(self.conv3(x)) + out)


class _Subsampling(nn.Module):
    def __init__(self, conv_dim: int, encoder_dim: int, n_mels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_ResidualBlock(1, conv_dim), _ResidualBlock(conv_dim, conv_dim))
        self.linear = nn.Linear(conv_dim * (n_mels // 4), encoder_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv(mel.unsqueeze(1))  # (batch, channels, bands, time)
        batch, channels, bands, time = x.shape
        return self.linear(x.permute(0, 3, 1, 2).reshape(batch, time, channels * bands))


def conformer_config(transformers: Any, encoder_dim: int = 1024, depth: int = 12, ffn_dim: int = 4096,
                     kernel: int = 31, heads: int = 16) -> Any:
    """The Conformer configuration MusicFM builds from wav2vec2-conformer-rope-large (swish, rotary, 16 heads:
    the reference overrides only the width and the depth)."""
    config = transformers.Wav2Vec2ConformerConfig(
        hidden_size=encoder_dim, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=ffn_dim,
        hidden_act="swish", position_embeddings_type="rotary", rotary_embedding_base=10000,
        conv_depthwise_kernel_size=kernel, layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, conformer_conv_dropout=0.0, layerdrop=0.0)
    config._attn_implementation = "eager"
    return config


class MusicFMEncoder(nn.Module):
    """The inference path of MusicFM25Hz: waveform -> standardised log-mel -> conv subsampling -> Conformer."""

    def __init__(self, config: Any, mean: float, std: float, conv_dim: int = 512) -> None:
        super().__init__()
        from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

        self.mean, self.std = float(mean), float(std)
        setattr(self, f"preprocessor_{FEATURE}", _LogMel())
        self.conv = _Subsampling(conv_dim, config.hidden_size, N_MELS)
        self.conformer = Wav2Vec2ConformerEncoder(config)

    def hidden_states(self, audio: torch.Tensor, layer: int | None) -> torch.Tensor:
        """Hidden state `layer` (or the mean of all when None) for unpadded rows of equal length."""
        mel = getattr(self, f"preprocessor_{FEATURE}")(audio.float())
        x = self.conv((mel - self.mean) / self.std)
        states: list[torch.Tensor] = [x]
        hooks = [block.register_forward_hook(lambda _m, _i, out: states.append(out[0] if isinstance(out, tuple)
                                                                                 else out))
                 for block in self.conformer.layers]
        try:
            final = self.conformer(x).last_hidden_state
        finally:
            for hook in hooks:
                hook.remove()
        states[-1] = final
        if layer is not None:
            return states[layer]
        return sum(states) / len(states)


def architecture(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Sizes read off the checkpoint's tensors (KeyError when it is not a MusicFM state dict)."""
    depth = len({key.split(".")[2] for key in state if key.startswith("conformer.layers.")})
    if depth == 0:
        raise KeyError("conformer.layers")
    return {"encoder_dim": int(state["conv.linear.weight"].shape[0]),
            "conv_dim": int(state["conv.conv.0.conv1.weight"].shape[0]),
            "ffn_dim": int(state["conformer.layers.0.ffn1.intermediate_dense.weight"].shape[0]),
            "kernel": int(state["conformer.layers.0.conv_module.depthwise_conv.weight"].shape[-1]),
            "depth": depth}


def frame_counts(lengths: torch.Tensor) -> torch.Tensor:
    """25 Hz frames from `lengths` samples: samples // 240 mel frames, then two stride-2 convolutions (ceil)."""
    mel_frames = torch.div(lengths.long(), HOP, rounding_mode="floor")
    counts = torch.div(mel_frames + 3, 4, rounding_mode="floor")
    return torch.where(lengths >= MIN_SAMPLES, counts, torch.zeros_like(counts))


def _pick(folder: Path, given: str | None, pattern: str, what: str) -> Path:
    if given is not None:
        path = folder / given
        if not path.is_file():
            raise BackendUnavailableError(f"musicfm: {path} does not exist")
        return path
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise BackendUnavailableError(f"musicfm: expected exactly one {what} ({pattern}) in {folder}, found "
                                      f"{listed}; download e.g. minzwon/MusicFM's musicfm_25hz_FMA_330m_500k.pt and "
                                      "fma_classic_stats.json there, or name the files with checkpoint=/stats=")
    return found[0]


def load_state_dict(path: Path, trust_checkpoint: bool) -> dict[str, torch.Tensor]:
    """The model's tensors from a Lightning-style checkpoint ({"state_dict": {"model.<name>": ...}}) or a bare
    state dict. Pickled objects are refused unless `trust_checkpoint` (only for files from a trusted source)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or ValueError depending on the content
        raise BackendUnavailableError(f"{path}: cannot read it as a weights-only checkpoint ({error}); if it comes "
                                      "from a trusted source pass trust_checkpoint=True") from error
    state = saved.get("state_dict", saved) if isinstance(saved, dict) else saved
    if not isinstance(state, dict):
        raise BackendUnavailableError(f"{path}: no state dict inside")
    return {key.removeprefix("model."): value for key, value in state.items()}


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: Path,
              optional: tuple[str, ...] = ()) -> None:
    """Load `state` into `module`, failing on any missing or mis-shaped parameter (keys under `optional` may be
    absent: fixed buffers such as windows and filterbanks, or parts inference never runs)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not any(part in k for part in optional)]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise BackendUnavailableError(f"{source}: checkpoint does not fit the architecture; missing "
                                      f"{sorted(missing)[:6]}, wrong shape {sorted(wrong)[:6]}")
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)


@register_backend("musicfm")
class MusicFMBackend(AudioBackend):
    """MusicFM-25Hz (330M) frames at 25 Hz, 24 kHz input, 30 s training context. See the module docstring."""

    name = "musicfm"
    sample_rate = SAMPLE_RATE
    dim = 1024
    segment_seconds = 30.0
    min_seconds = MIN_SAMPLES / SAMPLE_RATE

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None,
                 layer: int | str = 6, checkpoint: str | None = None, stats: str | None = None,
                 trust_checkpoint: bool = False) -> None:
        super().__init__(device)
        transformers = require_transformers()
        if weights is None or not Path(weights).expanduser().is_dir():
            raise BackendUnavailableError(f"musicfm: weights must be a folder holding the MusicFM checkpoint (.pt) "
                                          f"and its feature statistics (*stats.json); got {weights!r}")
        folder = Path(weights).expanduser()
        checkpoint_path = _pick(folder, checkpoint, "*.pt", "checkpoint")
        stats_path = _pick(folder, stats, "*stats.json", "statistics file")
        statistics = json.loads(stats_path.read_text(encoding="utf-8"))
        state = load_state_dict(checkpoint_path, trust_checkpoint)
        try:
            mean, std = float(statistics[f"{FEATURE}_mean"]), float(statistics[f"{FEATURE}_std"])
            shapes = architecture(state)
        except KeyError as error:
            raise BackendUnavailableError(f"musicfm: {checkpoint_path} or {stats_path} is not a MusicFM file "
                                          f"(no {error})") from error
        config = conformer_config(transformers, encoder_dim=shapes["encoder_dim"], depth=shapes["depth"],
                                  ffn_dim=shapes["ffn_dim"], kernel=shapes["kernel"])
        self.model = MusicFMEncoder(config, mean, std, shapes["conv_dim"])
        load_into(self.model, state, checkpoint_path,
                  optional=("spectrogram.window", "mel_scale.fb", "inv_freq", "pos_conv_embed", "num_batches_tracked"))
        self.model.to(self.device).eval().requires_grad_(False)
        self.dim = shapes["encoder_dim"]
        self.layer = parse_layer(layer, shapes["depth"] + 1)

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms = waveforms.to(self.device, torch.float32)
        lengths = lengths.to(self.device).long()
        counts = frame_counts(lengths)
        width = int(frame_counts(torch.tensor([waveforms.shape[1]])))
        valid = torch.arange(width, device=self.device)[None, :] < counts[:, None]
        features = torch.zeros(len(waveforms), width, self.dim, device=self.device)
        for length, rows in equal_length_groups(lengths, counts > 0):
            encoded = self.model.hidden_states(waveforms[rows, :length], self.layer)
            features[rows, :encoded.shape[1]] = encoded.float()
        return features * valid[..., None], valid

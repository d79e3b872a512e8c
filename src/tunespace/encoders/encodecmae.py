"""`encodecmae`: EnCodecMAE (Pepino et al., 2023) rebuilt in torch, running a released `model.pt` from a local
folder.

Why a port: the `encodecmae` package is not on PyPI, and its loader fetches files from the Hugging Face Hub and needs
gin, PyTorch Lightning and the `encodec` package. Inference is small and fully specified by its code:
- EnCodec's 24 kHz SEANet encoder (causal convolutions with reflect padding, weight norm, ELU, one residual block
  per stage, strides 2, 4, 5, 8, a 2-layer LSTM with a skip connection): 128-d frames at 75 Hz. Frame t depends
  only on samples before (t + 1) x 320, so right padding never reaches a real frame;
- a linear projection to the model width, plus sinusoidal positions scaled by a learnt factor;
- a transformer with "ResiDual" normalisation (a post-norm and an un-normalised residual stream, summed with a
  final layer norm at the end), bias-free attention whose heads are interleaved channel by channel, and a ReLU
  feed-forward. Padded frames are masked as keys, as the reference does.
The reference marks `samples // 320` frames as real and skips chunks of at most 2048 samples; both are kept.

Checkpoint layout: the released checkpoints are PyTorch Lightning state dicts. Two revisions of the reference code
name the parts differently (`wav_encoder.model` / `wav_encoder.encoder.model` for EnCodec, `feat_projector` /
`wav_encoder.post_net` for the projection, `positional_encoder` / `masker.positional_encoder` for the position
scale); both are accepted, and loading fails with the list of what is missing otherwise. Weight-normed convolutions
are folded (g * v / |v|) at load. This mapping was written from the public code and has not been run against a
released checkpoint here (no network).

Layers: hidden state 0 is the transformer's input, i the normalised stream after layer i, the last one the model's
output (normalised stream plus the final-normed residual stream). The default, the last, is what the reference's
`extract_features_from_file` returns.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tunespace.encoders.base import AudioBackend, BackendUnavailableError, register_backend
from tunespace.encoders.hf import cached_snapshot, parse_layer
from tunespace.encoders.musicfm import load_into, load_state_dict

SAMPLE_RATE = 24000
HOP = 320
RATIOS = (2, 4, 5, 8)  # EnCodec's encoder runs its decoder ratios (8, 5, 4, 2) in reverse
MIN_SAMPLES = 2049  # the reference skips chunks of 2048 samples or fewer
REPOS = {name: f"lpepino/encodecmae-{name}" for name in ("small", "base", "large", "base-st", "large-st")}
ENCODEC_PREFIXES = ("wav_encoder.encoder.model.model.", "wav_encoder.model.model.")
PROJECTION_PREFIXES = ("feat_projector.", "wav_encoder.post_net.")
SCALE_KEYS = ("positional_encoder.scale", "masker.positional_encoder.scale")


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect padding that also works on inputs shorter than the pad (zero-extended first, as EnCodec does)."""
    length = x.shape[-1]
    extra = max(0, max(left, right) - length + 1)
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    return padded[..., :padded.shape[-1] - extra]


class _CausalConv(nn.Module):
    """EnCodec's causal SConv1d: left padding of kernel - stride, right padding only to complete the last frame."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels_in, channels_out, kernel, stride=stride, dilation=dilation)
        self.stride = stride
        self.span = (kernel - 1) * dilation + 1
        self.left = self.span - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = (x.shape[-1] - self.span + self.left) / self.stride + 1
        right = (math.ceil(frames) - 1) * self.stride + self.span - self.left - x.shape[-1]
        return self.conv(reflect_pad(x, self.left, right))


class _ResidualUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ELU(), _CausalConv(channels, channels // 2, 3), nn.ELU(),
                                   _CausalConv(channels // 2, channels, 1))
        self.shortcut = _CausalConv(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class _SkipLSTM(nn.Module):
    def __init__(self, channels: int, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = x.permute(2, 0, 1)
        return (self.lstm(sequence)[0] + sequence).permute(1, 2, 0)


def seanet_encoder(filters: int = 32, dimension: int = 128) -> nn.Sequential:
    """EnCodec 24 kHz's encoder with the module indices of the original (so checkpoint keys line up)."""
    layers: list[nn.Module] = [_CausalConv(1, filters, 7)]
    channels = filters
    for ratio in RATIOS:
        layers += [_ResidualUnit(channels), nn.ELU(), _CausalConv(channels, 2 * channels, 2 * ratio, stride=ratio)]
        channels *= 2
    layers += [_SkipLSTM(channels), nn.ELU(), _CausalConv(channels, dimension, 7)]
    return nn.Sequential(*layers)


class _Attention(nn.Module):
    """Bias-free multi-head attention whose projections interleave heads: channel c belongs to head c % heads."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, dim = x.shape
        return x.view(batch, time, dim // self.heads, self.heads).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(self.wq(x)), self._split(self.wk(x)),
                                             self._split(self.wv(x)), attn_mask=keep[:, None, None, :])
        batch, _, time, _ = out.shape
        return self.wo(out.permute(0, 2, 3, 1).reshape(batch, time, -1))


class _ResiDualLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        self.att_layer = _Attention(dim, heads)
        self.ff_layer = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, normed: torch.Tensor, residual: torch.Tensor,
                keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended = self.att_layer(normed, keep)
        normed = self.norm1(normed + attended)
        residual = residual + attended
        fed = self.ff_layer(normed)
        return self.norm2(normed + fed), residual + fed


class _Transformer(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        self.encoder_layers = nn.ModuleList([_ResiDualLayer(dim, heads, ff_dim) for _ in range(layers)])
        self.final_norm = nn.LayerNorm(dim)


class EncodecMAEModel(nn.Module):
    """The inference path of EnCodecMAE's visible encoder."""

    def __init__(self, filters: int, codec_dim: int, dim: int, layers: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        self.encodec = seanet_encoder(filters, codec_dim)
        self.projection = nn.Linear(codec_dim, dim)
        self.position_scale = nn.Parameter(torch.tensor(1.0))
        self.transformer = _Transformer(dim, layers, heads, ff_dim)

    def positions(self, time: int, dim: int, device: torch.device) -> torch.Tensor:
        position = torch.arange(time, device=device, dtype=torch.float32)[:, None]
        rates = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * -(math.log(10000.0) / dim))
        table = torch.zeros(time, dim, device=device)
        table[:, 0::2] = torch.sin(position * rates)
        table[:, 1::2] = torch.cos(position * rates)
        return table

    def hidden_states(self, audio: torch.Tensor, keep: torch.Tensor, layer: int | None) -> torch.Tensor:
        """Hidden state `layer` (mean of all when None) for right-padded audio whose real frames are `keep`."""
        codes = self.encodec(audio[:, None, :]).transpose(1, 2)[:, :keep.shape[1]]
        x = self.projection(codes)
        x = x + self.position_scale * self.positions(x.shape[1], x.shape[2], x.device)
        states = [x]
        normed, residual = x, x
        for block in self.transformer.encoder_layers:
            normed, residual = block(normed, residual, keep)
            states.append(normed)
        states[-1] = normed + self.transformer.final_norm(residual)
        if layer is not None:
            return states[layer]
        return sum(states) / len(states)


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace `weight_g`/`weight_v` pairs (torch's old weight_norm) by the weight they define."""
    folded = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            gain = state[key[:-len("_v")] + "_g"]
            norm = value.flatten(1).norm(dim=1).view(-1, *([1] * (value.dim() - 1)))
            folded[key[:-len("_v")]] = gain * value / norm
        else:
            folded[key] = value
    return folded


def _first_prefix(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], probe: str) -> str | None:
    return next((prefix for prefix in prefixes if prefix + probe in state), None)


def remap(state: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under this module's names (see the module docstring for the accepted layouts)."""
    state = fold_weight_norm(state)
    codec = _first_prefix(state, ENCODEC_PREFIXES, "0.conv.conv.weight")
    projection = _first_prefix(state, PROJECTION_PREFIXES, "weight")
    scale = next((key for key in SCALE_KEYS if key in state), None)
    if codec is None or projection is None or scale is None or "visible_encoder.final_norm.weight" not in state:
        raise BackendUnavailableError(
            f"encodecmae: {source} is not an EnCodecMAE checkpoint this loader knows: expected keys under "
            f"{' or '.join(ENCODEC_PREFIXES)}, {' or '.join(PROJECTION_PREFIXES)}, {' or '.join(SCALE_KEYS)} and "
            "visible_encoder.; found e.g. " + ", ".join(sorted(state)[:6]))
    mapped = {"position_scale": state[scale].reshape(())}
    for key, value in state.items():
        if key.startswith(codec):
            mapped["encodec." + key[len(codec):].replace(".conv.conv.", ".conv.")] = value
        elif key.startswith(projection):
            mapped["projection." + key[len(projection):]] = value
        elif key.startswith("visible_encoder."):
            mapped["transformer." + key[len("visible_encoder."):]] = value
    return mapped


def sizes(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Model sizes read off remapped tensors."""
    layers = len({key.split(".")[2] for key in state if key.startswith("transformer.encoder_layers.")})
    return {"filters": int(state["encodec.0.conv.weight"].shape[0]),
            "codec_dim": int(state["projection.weight"].shape[1]),
            "dim": int(state["projection.weight"].shape[0]),
            "ff_dim": int(state["transformer.encoder_layers.0.ff_layer.0.weight"].shape[0]),
            "layers": layers}


@register_backend("encodecmae")
class EncodecMAEBackend(AudioBackend):
    """EnCodecMAE frames at 75 Hz from 24 kHz audio in its 4 s training context. See the module docstring.

    weights: a folder with the checkpoint (`model.pt`, as the lpepino/encodecmae-* repositories hold it); without
    it, the cached snapshot of lpepino/encodecmae-{model}. heads: attention heads (not stored in the checkpoint;
    the released models use width / 64).
    """

    name = "encodecmae"
    sample_rate = SAMPLE_RATE
    dim = 768
    segment_seconds = 4.0
    min_seconds = MIN_SAMPLES / SAMPLE_RATE

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None, model: str = "base",
                 layer: int | str = -1, checkpoint: str = "model.pt", heads: int | None = None,
                 trust_checkpoint: bool = False) -> None:
        super().__init__(device)
        if model not in REPOS:
            raise ValueError(f"encodecmae model must be one of {', '.join(REPOS)}, got {model!r}")
        folder = Path(weights).expanduser() if weights is not None else cached_snapshot(REPOS[model])
        path = folder / checkpoint if folder is not None else None
        if path is None or not path.is_file():
            raise BackendUnavailableError(
                f"encodecmae: no checkpoint at {path or 'the Hugging Face cache of ' + REPOS[model]}; download "
                f"{REPOS[model]} (its {checkpoint}) where there is network and pass weights=FOLDER")
        state = remap(load_state_dict(path, trust_checkpoint), path)
        shape = sizes(state)
        self.model = EncodecMAEModel(heads=heads or max(1, shape["dim"] // 64), **shape)
        load_into(self.model, state, path)
        self.model.to(self.device).eval().requires_grad_(False)
        self.dim = shape["dim"]
        self.layer = parse_layer(layer, shape["layers"] + 1)

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms = waveforms.to(self.device, torch.float32)
        lengths = lengths.to(self.device).long()
        counts = torch.where(lengths >= MIN_SAMPLES, torch.div(lengths, HOP, rounding_mode="floor"), 0)
        width = waveforms.shape[1] // HOP
        valid = torch.arange(width, device=self.device)[None, :] < counts[:, None]
        features = torch.zeros(len(waveforms), width, self.dim, device=self.device)
        rows = torch.nonzero(counts > 0).flatten()
        if len(rows):
            audio = waveforms[rows] * (torch.arange(waveforms.shape[1], device=self.device)[None, :]
                                       < lengths[rows, None])
            features[rows] = self.model.hidden_states(audio, valid[rows], self.layer).float()
        return features * valid[..., None], valid

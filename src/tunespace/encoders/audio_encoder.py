"""HTCL's scalable audio encoder: log-mel front end, a strided convolutional stem, a transformer, masked mean
pooling and a projection into the shared audio-text space.

The stem (three 1-D convolutions, kernels 5/3/3, stride 2 each) turns 100 mel frames per second into 12.5 tokens
per second, so a 10 s crop is 125 tokens and attention stays cheap. Padding is tracked from the waveform lengths
through every layer, so a clip gives the same embedding alone or batched with longer clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tunespace.audio.features import mel_power


@dataclass
class AudioEncoderConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 160  # 10 ms frames
    n_mels: int = 128
    stem_channels: int = 512
    stem_kernels: tuple[int, ...] = (5, 3, 3)
    stem_stride: int = 2
    width: int = 768
    layers: int = 12
    heads: int = 12
    ff_multiplier: int = 4
    dropout: float = 0.1
    embed_dim: int = 512  # the shared audio-text space
    adapter_hidden: int = 0  # > 0: a residual MLP beside the projection, zero at start (a stage-2 option)


def sinusoidal_positions(length: int, width: int, device: torch.device) -> torch.Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


class AudioEncoder(nn.Module):
    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.input_norm = nn.LayerNorm(config.n_mels)
        convolutions, channels = [], config.n_mels
        for kernel in config.stem_kernels:
            convolutions.append(nn.Conv1d(channels, config.stem_channels, kernel, config.stem_stride, kernel // 2))
            channels = config.stem_channels
        self.stem = nn.ModuleList(convolutions)
        self.to_width = nn.Linear(config.stem_channels, config.width)
        layer = nn.TransformerEncoderLayer(config.width, config.heads, config.ff_multiplier * config.width,
                                           config.dropout, activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(config.width)
        self.projection = nn.Linear(config.width, config.embed_dim)
        self.adapter: nn.Sequential | None = None
        if config.adapter_hidden > 0:
            self.adapter = nn.Sequential(nn.Linear(config.width, config.adapter_hidden), nn.GELU(),
                                         nn.Linear(config.adapter_hidden, config.embed_dim))
            nn.init.zeros_(self.adapter[-1].weight)  # the encoder's space is unchanged until the adapter learns
            nn.init.zeros_(self.adapter[-1].bias)

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, frames, n_mels) compressed mel power; log1p keeps silence finite and loud audio bounded."""
        power = mel_power(waveforms, self.config.sample_rate, self.config.n_fft, self.config.hop, self.config.n_mels)
        return torch.log1p(1000.0 * power).transpose(1, 2)

    def token_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid tokens for waveforms of `lengths` samples: centred STFT frames, then each strided convolution."""
        frames = 1 + lengths // self.config.hop
        for kernel in self.config.stem_kernels:
            frames = (frames + 2 * (kernel // 2) - kernel) // self.config.stem_stride + 1
        return frames

    def forward_tokens(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token features (batch, tokens, width) and their validity mask (batch, tokens)."""
        features = self.input_norm(self.log_mel(waveforms))
        frames = 1 + lengths.to(features.device) // self.config.hop
        valid = torch.arange(features.shape[1], device=features.device)[None, :] < frames[:, None]
        hidden = (features * valid[..., None]).transpose(1, 2)
        for convolution in self.stem:
            hidden = F.gelu(convolution(hidden))
            frames = (frames + 2 * (convolution.padding[0]) - convolution.kernel_size[0]) // self.config.stem_stride + 1
            valid = torch.arange(hidden.shape[-1], device=hidden.device)[None, :] < frames[:, None]
            hidden = hidden * valid[:, None, :]  # padding stays zero, so it never leaks into real tokens
        tokens = self.to_width(hidden.transpose(1, 2))
        tokens = tokens + sinusoidal_positions(tokens.shape[1], self.config.width, tokens.device)
        tokens = self.transformer(tokens, src_key_padding_mask=~valid)
        return self.final_norm(tokens), valid

    def pool(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, width) the trunk's output: token features averaged over real tokens."""
        tokens, valid = self.forward_tokens(waveforms, lengths)
        weights = valid.to(tokens.dtype)[..., None]
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features into the shared space: the projection, plus the adapter when there is one."""
        projected = self.projection(pooled)
        return projected if self.adapter is None else projected + self.adapter(pooled)

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Everything before the head: what `tune: head` freezes."""
        head = {id(p) for p in self.projection.parameters()}
        head |= {id(p) for p in self.adapter.parameters()} if self.adapter is not None else set()
        return [p for p in self.parameters() if id(p) not in head]

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, embed_dim) embeddings in the shared space (not normalised; losses and retrieval normalise)."""
        return self.head(self.pool(waveforms, lengths))

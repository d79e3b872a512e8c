"""MusiCNN and its VGG baselines (Pons & Serra, 2019) in torch, running the weights musicnn 0.1.0 ships.

Why a port: the published models exist only as TensorFlow 1 checkpoints inside the `musicnn` wheel, whose code needs
TensorFlow and pins an ancient numpy. The checkpoints were read once with :mod:`tunespace.encoders.tf_checkpoint`
(:func:`convert_musicnn_checkpoints`) and their variables ship with tunespace as safetensors files in
`tunespace/encoders/weights/musicnn/` (11 MB for the four models, ISC licence in that folder's LICENSE); the TF1
checkpoints of an installed musicnn wheel, or of a folder passed as `weights=`, still load. The graph is rebuilt in
torch. On the fixtures of tests/encoders, tags and penultimate values match the reference to
5e-5 and the pooled features (up to ~120) to 1e-4 relative, about what float32 rounding allows.

What the reference computes, and what this module reproduces:
- front end: librosa mel power spectrogram (16 kHz, n_fft 512, hop 256, 96 Slaney mels, centred frames with zero
  padding as librosa >= 0.10 does), stored as float16, then log10(10000 x + 1);
- non-overlapping 187-frame (3 s) patches from frame 0; a trailing partial patch is dropped and audio shorter than
  one patch gives no patch (the reference then fails; the training data were repeat-padded, which
  :func:`musicnn_features` offers);
- MusiCNN: timbral (7x38, 7x67 filters) and temporal (128, 64, 32 frames) convolutions, each max-pooled over
  frequency; a dense mid-end of three 7-frame convolutions with residuals; max and mean pooling over time;
  a 200-unit dense layer (the penultimate layer) and 50 sigmoid tags. Batch norm runs in inference mode.

Two upstream bugs are not reproduced: under numpy 2 the float16 log-mel overflows to inf on loud audio (here the
float16 rounding of the mel power is kept, saturating instead of overflowing, and the log is float32), and the
upstream extractor repeats the first patch's penultimate (and mid-end) values for every later patch (here every
patch gets its own).
"""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from torch import nn

from tunespace.audio.features import mel_filterbank
from tunespace.encoders.base import AudioBackend, BackendUnavailableError, register_backend
from tunespace.encoders.tf_checkpoint import read_checkpoint
from tunespace.errors import TunespaceError
from tunespace.extras import needs_extra

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, hop_length=256) + 1
PATCH_SAMPLES = PATCH_FRAMES * HOP  # stride between patches: segments of whole patches keep the reference's grid
MIN_SAMPLES = (PATCH_FRAMES - 1) * HOP  # the shortest audio with 187 centred frames
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default
FLOAT16_MAX = 65504.0
INSTALL_HINT = ("reinstall tunespace (its package data holds the musicnn weights), or pass weights=DIR with the TF1 "
                "checkpoints of musicnn 0.1.0 (pip install --no-deps musicnn==0.1.0; TensorFlow is not needed)")
WEIGHTS_DIR = Path(__file__).parent / "weights" / "musicnn"
"""The packaged weights: one `<model>.safetensors` per model, converted from musicnn 0.1.0 (ISC licence)."""

MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
MUSICNN_LAYERS = {"penultimate": 200, "taggram": 50, "mean_pool": 753, "max_pool": 753}
# The VGG's last hidden layer is its flattened pool5 (2 x 1 x 128 in TensorFlow's order), which feeds the tags.
VGG_LAYERS = {"penultimate": 256, "taggram": 50}
# The models' output tags, from musicnn 0.1.0's configuration.py (ISC licence, see weights/musicnn/LICENSE).
MTT_LABELS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
              "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
              "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
              "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
              "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral")
MSD_LABELS = ("rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
              "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
              "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
              "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
              "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
              "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy")


class ClipTooShortError(TunespaceError, ValueError):
    """A clip is shorter than one MusiCNN patch and repeat-padding was not allowed."""


def musicnn_package_dir() -> Path | None:
    """The installed `musicnn` package folder (found without importing it), or None."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown musicnn model {model!r}; known: {', '.join(MODELS)}")


def checkpoint_dir(model: str, weights: str | Path | None = None) -> Path:
    """The folder holding `model`'s TF1 checkpoint: `weights` (the model folder or its parent) or the musicnn wheel's."""
    _check_model(model)
    if weights is not None:
        root = Path(weights)
        candidates = [root / model, root]
    else:
        package = musicnn_package_dir()
        if package is None:
            raise BackendUnavailableError(f"the musicnn 0.1.0 wheel is not installed: {INSTALL_HINT}")
        candidates = [package / model]
    for folder in candidates:
        if folder.is_dir() and any(p.name.endswith(".index") for p in folder.iterdir()):
            return folder
    raise BackendUnavailableError(f"no {model} checkpoint in {' or '.join(map(str, candidates))}: {INSTALL_HINT}")


def weights_path(model: str, weights: str | Path | None = None) -> Path:
    """Where `model`'s weights load from: a `.safetensors` file or a TF1 checkpoint folder.

    `weights` may be a `.safetensors` file, a folder holding `<model>.safetensors`, or a TF1 checkpoint folder (the
    model's or its parent). By default the weights packaged with tunespace, else the installed musicnn wheel's.
    """
    _check_model(model)
    if weights is None:
        packaged = WEIGHTS_DIR / f"{model}.safetensors"
        if packaged.is_file():
            return packaged
        if musicnn_package_dir() is None:
            raise BackendUnavailableError(f"the musicnn weights are not installed ({packaged} is missing): "
                                          f"{INSTALL_HINT}")
        return checkpoint_dir(model)
    root = Path(weights)
    if root.is_file() and root.suffix == ".safetensors":
        return root
    if (root / f"{model}.safetensors").is_file():
        return root / f"{model}.safetensors"
    try:
        return checkpoint_dir(model, root)
    except BackendUnavailableError:
        raise BackendUnavailableError(f"no {model} weights in {root} ({model}.safetensors or a TF1 checkpoint, "
                                      f"in {root / model} or {root}): {INSTALL_HINT}") from None


def tag_names(model: str) -> list[str]:
    """The 50 tags of `model` in output order."""
    _check_model(model)
    return list(MSD_LABELS if model.startswith("MSD") else MTT_LABELS)


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors file (read from its JSON header, without loading tensors)."""
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return dict(header.get("__metadata__") or {})


def convert_musicnn_checkpoints(out: str | Path, source: str | Path | None = None,
                                models: Iterable[str] = MODELS) -> list[Path]:
    """Write each model's variables from its TF1 checkpoint to `out/<model>.safetensors`; the written paths.

    `source` holds the checkpoints (a folder with one subfolder per model; default: the installed musicnn 0.1.0
    wheel). Only the variables the torch graph uses are kept (the checkpoints also hold Adam slots), as float32
    under their TensorFlow names; the metadata names the source, the licence and the tags. The packaged weights
    were made with `python -m tunespace.encoders.musicnn src/tunespace/encoders/weights/musicnn`.
    """
    with needs_extra("encoders"):
        from safetensors.numpy import save_file
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model in models:
        names = (Vgg if model.endswith("vgg") else MusiCNN).variable_names()
        arrays = read_checkpoint(checkpoint_dir(model, source), names=names)
        tensors = {name: np.ascontiguousarray(arrays[name], dtype=np.float32) for name in sorted(arrays)}
        metadata = {"model": model, "source": f"musicnn 0.1.0 (github.com/jordipons/musicnn), {model} checkpoint",
                    "license": "ISC, Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019",
                    "tags": json.dumps(tag_names(model))}
        path = folder / f"{model}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        written.append(path)
    return written


def log_mel(waveforms: torch.Tensor) -> torch.Tensor:
    """(batch, frames, 96) log-compressed mel spectrogram of 16 kHz audio (batch, samples), as the reference.

    The arithmetic follows librosa's so that the float16 rounding the reference applies to the mel power lands on
    the same value almost everywhere: the FFT in float64, rounded to complex64, then power and mel in float32. The
    rounding is kept (the models saw it in training) but saturates at the float16 maximum instead of becoming inf,
    and the log is taken in float32.
    """
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64, device=waveforms.device)
    spectrum = torch.stft(waveforms.double(), N_FFT, HOP, window=window, center=True, pad_mode="constant",
                          return_complex=True).to(torch.complex64)
    power = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).to(waveforms.device) @ spectrum.abs().square()
    rounded = power.clamp(0.0, FLOAT16_MAX).half().float()
    return torch.log10(10000.0 * rounded + 1.0).transpose(-1, -2)


def patch_counts(lengths: torch.Tensor) -> torch.Tensor:
    """Whole 187-frame patches in audio of `lengths` samples (centred frames: 1 + length // hop)."""
    frames = 1 + lengths // HOP
    return torch.where(frames >= PATCH_FRAMES, (frames - PATCH_FRAMES) // PATCH_FRAMES + 1, 0)


def _affine(weights: dict[str, np.ndarray], scope: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference batch norm as (scale, shift), computed as TensorFlow does: x * scale + (beta - mean * scale)."""
    gamma = torch.from_numpy(weights[f"{scope}/gamma"])
    scale = gamma * torch.rsqrt(torch.from_numpy(weights[f"{scope}/moving_variance"]) + BN_EPSILON)
    return scale, torch.from_numpy(weights[f"{scope}/beta"]) - torch.from_numpy(weights[f"{scope}/moving_mean"]) * scale


def _bn_names(count: int) -> list[str]:
    scopes = ["batch_normalization"] + [f"batch_normalization_{i}" for i in range(1, count)]
    return [f"{s}/{v}" for s in scopes for v in ("gamma", "beta", "moving_mean", "moving_variance")]


class _PooledConv(nn.Module):
    """conv -> bias -> relu -> batch norm -> max over frequency, computed from one maximum of the raw convolution.

    relu and the batch-norm affine map are monotonic per channel, so the maximum over frequency of the output is the
    affine map of relu(max + bias) where the scale is positive and of relu(min + bias) where it is negative. The
    kernels of the negative-scale channels are stored negated, so one maximum serves both (min z = -max(-z)), and
    the large (channels x time x frequency) tensor is reduced before any elementwise work on it.
    """

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, norm: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        sign = torch.where(norm[0] >= 0, 1.0, -1.0)
        weight = torch.from_numpy(kernel).permute(3, 2, 0, 1) * sign[:, None, None, None]  # HWIO -> OIHW
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("sign", sign[:, None])
        self.register_buffer("bias", torch.from_numpy(bias)[:, None])
        self.register_buffer("scale", norm[0][:, None])
        self.register_buffer("shift", norm[1][:, None])

    def pool(self, signed_max: torch.Tensor) -> torch.Tensor:
        """(N, channels, time) maxima of the sign-adjusted convolution -> the block's output."""
        return torch.relu(signed_max * self.sign + self.bias) * self.scale + self.shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, time + 6, freq), zero-padded in time -> (N, channels, time): the timbral 'valid' convolution.

        Channels-last layout: the convolution runs as fast, and max-pooling over frequency is then 4-8x faster.
        """
        z = F.conv2d(x.unsqueeze(1).contiguous(memory_format=torch.channels_last), self.weight)
        return self.pool(F.max_pool2d(z, (1, z.shape[-1])).squeeze(-1))


class _TemporalConv(_PooledConv):
    """The temporal blocks: a (length x 1) kernel slid over time with TensorFlow's 'same' padding.

    A one-input-channel convolution runs slowly, so it is computed as a matrix product: windows of BLOCK + length - 1
    frames times a banded (Toeplitz) matrix give BLOCK consecutive outputs of every filter at once.
    """

    BLOCK = 16

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, norm: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__(kernel, bias, norm)
        length, filters = kernel.shape[0], kernel.shape[3]
        band = torch.zeros(self.BLOCK + length - 1, self.BLOCK, filters)
        for step in range(self.BLOCK):
            band[step:step + length, step] = self.weight[:, 0, :, 0].T
        self.register_buffer("band", band.reshape(len(band), -1))
        self.length = length
        self.before = (length - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, time, freq) -> (N, channels, time)."""
        n, time, freq = x.shape
        steps = -(-time // self.BLOCK)
        rows = F.pad(x.transpose(1, 2), (self.before, steps * self.BLOCK + self.length - 1 - time - self.before))
        windows = rows.unfold(2, self.BLOCK + self.length - 1, self.BLOCK)  # (N, freq, steps, window)
        z = (windows.reshape(-1, windows.shape[-1]) @ self.band).reshape(n, freq, -1)  # (N, freq, time x channels)
        return self.pool(z.amax(dim=1).reshape(n, -1, len(self.bias))[:, :time].transpose(1, 2))


class _Conv1d(nn.Module):
    """A TensorFlow conv2d whose kernel spans the whole feature axis, as a 1-d convolution over time (+relu, BN)."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, norm: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(kernel[:, :, 0, :]).permute(2, 1, 0).contiguous())
        self.register_buffer("bias", torch.from_numpy(bias))
        self.register_buffer("scale", norm[0][:, None])
        self.register_buffer("shift", norm[1][:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, features, time) -> (N, filters, time); 'same' length through 3 zero frames each side."""
        return torch.relu(F.conv1d(F.pad(x, (3, 3)), self.weight, self.bias)) * self.scale + self.shift


class MusiCNN(nn.Module):
    """The MusiCNN graph of musicnn 0.1.0 (`build_musicnn` with 64 mid-end filters and 200 back-end units)."""

    TIMBRAL = ("conv2d", "conv2d_1")  # 7 x 38 and 7 x 67 kernels, 204 filters each
    TEMPORAL = ("conv2d_2", "conv2d_3", "conv2d_4")  # 128, 64 and 32 frames, 51 filters each
    MIDEND = ("conv2d_5", "conv2d_6", "conv2d_7")

    @classmethod
    def variable_names(cls) -> list[str]:
        convs = cls.TIMBRAL + cls.TEMPORAL + cls.MIDEND + ("dense", "dense_1")
        return [f"{c}/{p}" for c in convs for p in ("kernel", "bias")] + _bn_names(11)

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        norm = [_affine(weights, "batch_normalization")] + [
            _affine(weights, f"batch_normalization_{i}") for i in range(1, 11)]  # numbered in creation order
        self.register_buffer("input_scale", norm[0][0])
        self.register_buffer("input_shift", norm[0][1])
        self.timbral = nn.ModuleList(_PooledConv(weights[f"{c}/kernel"], weights[f"{c}/bias"], norm[i])
                                     for i, c in enumerate(self.TIMBRAL, start=1))
        self.temporal = nn.ModuleList(_TemporalConv(weights[f"{c}/kernel"], weights[f"{c}/bias"], norm[i])
                                      for i, c in enumerate(self.TEMPORAL, start=3))
        self.midend = nn.ModuleList(_Conv1d(weights[f"{c}/kernel"], weights[f"{c}/bias"], norm[i])
                                    for i, c in enumerate(self.MIDEND, start=6))
        self.register_buffer("pool_scale", norm[9][0])
        self.register_buffer("pool_shift", norm[9][1])
        self.register_buffer("dense_weight", torch.from_numpy(weights["dense/kernel"]))
        self.register_buffer("dense_bias", torch.from_numpy(weights["dense/bias"]))
        self.register_buffer("dense_scale", norm[10][0])
        self.register_buffer("dense_shift", norm[10][1])
        self.register_buffer("out_weight", torch.from_numpy(weights["dense_1/kernel"]))
        self.register_buffer("out_bias", torch.from_numpy(weights["dense_1/bias"]))

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """patches (N, 187, 96) log-mel -> taggram (N, 50), penultimate (N, 200), mean_pool and max_pool (N, 753)."""
        x = patches * self.input_scale + self.input_shift
        padded = F.pad(x, (0, 0, 3, 3))  # the timbral blocks' zero frames, added after the input batch norm
        front = torch.cat([block(padded) for block in self.timbral] + [block(x) for block in self.temporal], dim=1)
        first = self.midend[0](front)
        second = self.midend[1](first) + first
        third = self.midend[2](second) + second
        features = torch.cat([front, first, second, third], dim=1)  # (N, 753, time)
        max_pool, mean_pool = features.amax(dim=-1), features.mean(dim=-1)
        pooled = torch.stack([max_pool, mean_pool], dim=-1).flatten(1)  # TensorFlow's (753, 2) flattening
        hidden = torch.relu((pooled * self.pool_scale + self.pool_shift) @ self.dense_weight + self.dense_bias)
        penultimate = hidden * self.dense_scale + self.dense_shift
        taggram = torch.sigmoid(penultimate @ self.out_weight + self.out_bias)
        return {"taggram": taggram, "penultimate": penultimate, "mean_pool": mean_pool, "max_pool": max_pool}


class Vgg(nn.Module):
    """The VGG-like baseline of musicnn 0.1.0: five 3x3 conv (128) + relu + batch norm + max-pool blocks.

    Activations are channels-last, the layout the CPU convolution kernels produce without a reorder.
    """

    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    @classmethod
    def variable_names(cls) -> list[str]:
        convs = [f"{i}CNN" for i in range(1, 6)] + ["dense"]
        return [f"{c}/{p}" for c in convs for p in ("kernel", "bias")] + _bn_names(6)

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        scale, shift = _affine(weights, "batch_normalization")
        self.register_buffer("input_scale", scale)
        self.register_buffer("input_shift", shift)
        for i in range(1, 6):
            scale, shift = _affine(weights, f"batch_normalization_{i}")
            kernel = torch.from_numpy(weights[f"{i}CNN/kernel"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
            self.register_buffer(f"weight{i}", kernel.contiguous(memory_format=torch.channels_last))
            self.register_buffer(f"bias{i}", torch.from_numpy(weights[f"{i}CNN/bias"]))
            self.register_buffer(f"scale{i}", scale[:, None, None])
            self.register_buffer(f"shift{i}", shift[:, None, None])
        self.register_buffer("out_weight", torch.from_numpy(weights["dense/kernel"]))
        self.register_buffer("out_bias", torch.from_numpy(weights["dense/bias"]))

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """patches (N, 187, 96) log-mel -> taggram (N, 50) and penultimate, the flattened pool5 (N, 256)."""
        x = (patches * self.input_scale + self.input_shift).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        for i, (size, stride) in enumerate(self.POOLS, start=1):
            x = torch.relu(F.conv2d(x, getattr(self, f"weight{i}"), getattr(self, f"bias{i}"), padding=1))
            x = F.max_pool2d(x * getattr(self, f"scale{i}") + getattr(self, f"shift{i}"), size, stride)
        flat = x.permute(0, 2, 3, 1).flatten(1)  # TensorFlow flattens (height, width, channels)
        return {"taggram": torch.sigmoid(flat @ self.out_weight + self.out_bias), "penultimate": flat}


@lru_cache(maxsize=4)
def _weights(location: str, vgg: bool) -> dict[str, np.ndarray]:
    """The variables of a `.safetensors` file or TF1 checkpoint folder, by TensorFlow name."""
    names = Vgg.variable_names() if vgg else MusiCNN.variable_names()
    if not location.endswith(".safetensors"):
        return read_checkpoint(location, names=names)
    with needs_extra("encoders"):
        from safetensors.numpy import load_file
    arrays = load_file(location)
    missing = sorted(set(names) - set(arrays))
    if missing:
        raise BackendUnavailableError(f"{location} lacks {len(missing)} variable(s) of the "
                                      f"{'VGG' if vgg else 'MusiCNN'} graph, e.g. {missing[0]}")
    return {name: arrays[name] for name in names}


def load_model(model: str = "MSD_musicnn", weights: str | Path | None = None) -> MusiCNN | Vgg:
    """The torch network of a musicnn model (see :func:`weights_path`), in eval mode on the CPU."""
    location = weights_path(model, weights)
    vgg = model.endswith("vgg")
    weights_copy = {name: array.copy() for name, array in _weights(str(location.resolve()), vgg).items()}
    network = (Vgg if vgg else MusiCNN)(weights_copy)  # buffers share memory with these arrays, not with the cache
    return network.eval()


def default_chunk(device: torch.device) -> int:
    """Patches per forward pass on `device` (for the CPU, at torch's current thread count).

    On one CPU thread, two patches at a time keep the activations in the caches (16 at a time ran about 1.2x slower
    on the project's 2-core machine). With more threads every operation ends in a barrier, so larger passes do
    better: two threads on a busy machine ran 2 patches at a time 4x slower than 16. Accelerators want large passes.
    """
    if device.type != "cpu":
        return 64
    return 2 if torch.get_num_threads() == 1 else 16


def _run(network: nn.Module, patches: torch.Tensor, chunk: int | None = None) -> dict[str, torch.Tensor]:
    """The network over (N, 187, 96) patches, `chunk` at a time (default: :func:`default_chunk`)."""
    chunk = chunk or default_chunk(patches.device)
    parts = [network(patches[i:i + chunk]) for i in range(0, len(patches), chunk)]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


@dataclass(frozen=True)
class MusicnnResult:
    """Per-patch outputs for one clip: `taggram` (patches, 50) with its `tags`, and the hidden layers."""

    model: str
    tags: list[str]
    taggram: np.ndarray
    features: dict[str, np.ndarray]
    repeat_padded: bool


@torch.inference_mode()
def musicnn_features(audio: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE, model: str = "MSD_musicnn",
                     weights: str | Path | None = None, repeat_short: bool = True,
                     network: nn.Module | None = None) -> MusicnnResult:
    """Every output of `model` for each 3-s patch of one mono clip (resampled to 16 kHz with soxr if needed).

    A clip shorter than one patch is tiled frame by frame up to 187 frames, the repeat-padding the models were
    trained with (`repeat_short=False` raises :class:`ClipTooShortError` instead, as the reference cannot handle it).
    """
    signal = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != SAMPLE_RATE:
        signal = soxr.resample(signal, sample_rate, SAMPLE_RATE).astype(np.float32)
    if network is None:
        network = load_model(model, weights)
    spectrogram = log_mel(torch.from_numpy(signal)[None])[0]
    count = int(patch_counts(torch.tensor([len(signal)]))[0])
    padded = count == 0
    if padded:
        if not repeat_short or len(signal) == 0:
            raise ClipTooShortError(f"{len(signal) / SAMPLE_RATE:.3f} s is shorter than one {model} patch "
                                    f"({MIN_SAMPLES / SAMPLE_RATE:.3f} s)")
        repeats = -(-PATCH_FRAMES // len(spectrogram))
        spectrogram = spectrogram.repeat(repeats, 1)
        count = 1
    patches = spectrogram[:count * PATCH_FRAMES].reshape(count, PATCH_FRAMES, N_MELS)
    outputs = {key: value.numpy() for key, value in _run(network, patches).items()}
    taggram = outputs.pop("taggram")
    return MusicnnResult(model=model, tags=tag_names(model), taggram=taggram, features=outputs,
                         repeat_padded=padded)


class MusicnnBackend(AudioBackend):
    """A musicnn model as a tunespace backend: one frame per 3-s patch, its `layer` as the features.

    Segments are 10 whole patches (29.92 s) so that the patches of a streamed track fall on the reference's grid;
    audio shorter than one patch has no valid frame (the pipeline reports such tracks as too short), like the
    trailing partial patch of every track. `chunk` sets the patches per forward pass (default: :func:`default_chunk`).
    """

    sample_rate = SAMPLE_RATE
    segment_seconds = 10 * PATCH_SAMPLES / SAMPLE_RATE
    min_seconds = MIN_SAMPLES / SAMPLE_RATE

    def __init__(self, model: str, name: str, device: str | torch.device = "cpu", layer: str = "penultimate",
                 weights: str | Path | None = None, chunk: int | None = None) -> None:
        super().__init__(device)
        layers = VGG_LAYERS if model.endswith("vgg") else MUSICNN_LAYERS
        if layer not in layers:
            raise ValueError(f"{name}: layer must be one of {', '.join(layers)}, got {layer!r}")
        self.name = name
        self.model = model
        self.layer = layer
        self.dim = layers[layer]
        self.chunk = chunk
        self.network = load_model(model, weights).to(self.device)

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = patch_counts(lengths.to("cpu"))
        most = int(counts.max()) if len(counts) else 0
        valid = torch.arange(most)[None, :] < counts[:, None]
        features = torch.zeros(len(counts), most, self.dim, device=self.device)
        if most:
            audio = waveforms[:, :most * PATCH_SAMPLES].to(self.device)  # every frame of the patches sees its audio
            # One segment at a time: the float64 STFT of a whole batch would be the backend's largest allocation.
            spectrogram = torch.cat([log_mel(row)[:, :most * PATCH_FRAMES] for row in audio.split(1)])
            spectrogram = spectrogram.reshape(len(counts), most, PATCH_FRAMES, N_MELS)
            mask = valid.to(self.device)
            features[mask] = _run(self.network, spectrogram[mask], self.chunk)[self.layer]
        return features, valid.to(self.device)


def _factory(model: str, name: str) -> Callable[..., MusicnnBackend]:
    def build(**options: Any) -> MusicnnBackend:
        return MusicnnBackend(model, name, **options)

    build.__doc__ = f"`{name}`: musicnn 0.1.0's {model} (options: device, layer, weights, chunk)."
    return build


for _model, _name in (("MSD_musicnn", "musicnn-msd"), ("MTT_musicnn", "musicnn-mtt"), ("MSD_vgg", "vgg-msd"),
                      ("MTT_vgg", "vgg-mtt")):
    register_backend(_name)(_factory(_model, _name))

__all__ = ["MODELS", "WEIGHTS_DIR", "ClipTooShortError", "MusiCNN", "MusicnnBackend", "MusicnnResult", "Vgg",
           "checkpoint_dir", "convert_musicnn_checkpoints", "default_chunk", "load_model", "log_mel",
           "musicnn_features", "patch_counts", "safetensors_metadata", "tag_names", "weights_path"]


if __name__ == "__main__":  # python -m tunespace.encoders.musicnn OUT [SOURCE]: convert the TF1 checkpoints
    import sys

    if not 2 <= len(sys.argv) <= 3:
        sys.exit("usage: python -m tunespace.encoders.musicnn OUT_DIR [CHECKPOINTS_DIR]")
    for written in convert_musicnn_checkpoints(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None):
        print(f"{written} ({written.stat().st_size / 1e6:.2f} MB)")

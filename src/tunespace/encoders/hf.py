"""Pretrained music encoders that Hugging Face `transformers` implements: MERT, Music2Vec and CLAP.

Why these adapters look the way they do:
- Weights never come from the network. `weights=` names a local model folder (what `huggingface-cli download REPO
  --local-dir DIR` writes); without it the repository's snapshot must already be in the Hugging Face cache, looked
  up with `local_files_only`. A missing folder or file raises `BackendUnavailableError` naming both.
- Every model gets audio at the sample rate it was trained at and its own input normalisation, computed on the real
  samples of each segment only (the zero padding of a batch never enters a mean or a variance).
- Padding must not change a real frame. The raw-waveform models (wav2vec 2.0 family) are given an attention mask
  when every operation before their attention is local in time. When it is not (a convolutional front end with
  group norm, which normalises over time, as in both MERT checkpoints; data2vec's stack of positional
  convolutions, which carries what padding picked up back into real frames) rows are encoded in groups of equal
  length without padding instead. The extraction pipeline's batches are mostly full segments, so this costs few
  extra forward passes.
- Loading checks that every weight of the architecture was found in the checkpoint: a silently random layer is the
  failure that would otherwise go unnoticed.

MERT ships a `modeling_MERT.py` for `trust_remote_code`. It is not executed here: the MERT-v1 checkpoints (no CQT
branch, no DeepNorm) are exactly a HuBERT model with a layer-normed feature projection, so they are loaded into
`transformers.HubertModel` from their own config and weights. MERT-v1-330M's `attention_relax` only subtracts the
row maximum before the softmax, which does not change the result, and its pre-LN encoder never uses it anyway.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tunespace.encoders.base import AudioBackend, BackendUnavailableError, register_backend

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
INSTALL_HINT = "pip install 'transformers>=4.40' safetensors"
# Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation adds this to the variance.
NORMALISE_EPSILON = 1e-7


def require_transformers() -> Any:
    """The `transformers` module, or a `BackendUnavailableError` saying how to install it."""
    try:
        import transformers
    except ImportError as error:
        raise BackendUnavailableError(f"this backend needs Hugging Face transformers: {INSTALL_HINT}") from error
    return transformers


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of `repo_id` in the local Hugging Face cache, without touching the network; None if absent."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def resolve_model_dir(backend: str, weights: str | Path | None, repo_id: str, extra: tuple[str, ...] = ()) -> Path:
    """The local model folder for `backend`: `weights`, or the cached snapshot of `repo_id`; checked for files."""
    how = (f"download {repo_id} where there is network (`huggingface-cli download {repo_id} --local-dir DIR`) and "
           f"pass weights=DIR")
    if weights is None:
        path = cached_snapshot(repo_id)
        if path is None:
            raise BackendUnavailableError(f"{backend}: no weights given and {repo_id} is not in the Hugging Face "
                                          f"cache; {how}")
    else:
        path = Path(weights).expanduser()
    expected = ["config.json", " or ".join(WEIGHT_FILES[:2]), *extra]
    missing = [name for name in ["config.json", *extra] if not (path / name).is_file()]
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES[:2]))
    if missing:
        raise BackendUnavailableError(f"{backend}: {path} lacks {', '.join(missing)} (a {repo_id} folder holds "
                                      f"{', '.join(expected)}); {how}")
    return path


def load_checked(model_class: Any, path: Path, **kwargs: Any) -> Any:
    """`from_pretrained` offline, refusing checkpoints that leave any weight of the architecture uninitialised."""
    model, info = model_class.from_pretrained(path, local_files_only=True, output_loading_info=True, **kwargs)
    # masked_spec_embed is the training-time mask token; inference never reads it.
    missing = [key for key in info["missing_keys"] if not key.endswith("masked_spec_embed")]
    if missing or info.get("mismatched_keys"):
        problems = missing + [str(item[0] if isinstance(item, tuple) else item) for item in info["mismatched_keys"]]
        raise BackendUnavailableError(f"{path}: checkpoint does not fit {model_class.__name__}; missing or "
                                      f"mismatched: {', '.join(sorted(problems)[:8])}")
    return model.eval().requires_grad_(False)


def parse_layer(layer: int | str, hidden_states: int) -> int | None:
    """A hidden-state index in [0, hidden_states) from an int (negative counts from the end) or a numeric string;
    None for "mean", the average of all hidden states."""
    if isinstance(layer, str) and layer.strip().lower() == "mean":
        return None
    try:
        index = int(layer)
    except (TypeError, ValueError):
        raise ValueError(f"layer must be an int or 'mean', got {layer!r}") from None
    if not -hidden_states <= index < hidden_states:
        raise ValueError(f"layer {index} is out of range: the model has hidden states 0..{hidden_states - 1} "
                         "(0 is the transformer's input, the last its output)")
    return index % hidden_states


def conv_output_lengths(lengths: torch.Tensor, kernels: list[int], strides: list[int]) -> torch.Tensor:
    """Frames a stack of unpadded 1-d convolutions makes from `lengths` samples (never negative)."""
    out = lengths.long()
    for kernel, stride in zip(kernels, strides, strict=True):
        out = torch.div(out - kernel, stride, rounding_mode="floor") + 1
    return out.clamp_min(0)


def receptive_field(kernels: list[int], strides: list[int]) -> int:
    """Samples needed for one output frame of a convolution stack."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def sample_mask(lengths: torch.Tensor, samples: int) -> torch.Tensor:
    """(batch, samples) True on the real samples of each right-padded row."""
    return torch.arange(samples, device=lengths.device)[None, :] < lengths[:, None]


def normalise_waveforms(waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Wav2Vec2FeatureExtractor's `do_normalize` per row, over its real samples only; padding stays zero."""
    mask = sample_mask(lengths, waveforms.shape[1]).to(waveforms.dtype)
    count = lengths.clamp_min(1).to(waveforms.dtype)[:, None]
    mean = (waveforms * mask).sum(dim=1, keepdim=True) / count
    variance = (((waveforms - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
    return (waveforms - mean) / torch.sqrt(variance + NORMALISE_EPSILON) * mask


def equal_length_groups(lengths: torch.Tensor, keep: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """Rows with `keep` grouped by length, so each group can be encoded without padding."""
    groups = []
    for length in torch.unique(lengths[keep]).tolist():
        rows = torch.nonzero(keep & (lengths == length)).flatten()
        groups.append((int(length), rows))
    return groups


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


class Wav2VecStyleBackend(AudioBackend):
    """A raw-waveform self-supervised encoder of the wav2vec 2.0 family (7 strided convolutions, then a
    transformer): frames at sample_rate / 320.

    `layer` picks the hidden state: 0 is the transformer's input (projected convolutional features with positional
    convolution), i the output of transformer layer i, the last one the model's final output (after the closing
    layer norm of pre-LN models, as `transformers` 4.x reports it). "mean" averages all of them with equal weight.
    """

    repo_id: str
    extra_files: tuple[str, ...] = ()

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None,
                 layer: int | str = "mean") -> None:
        super().__init__(device)
        transformers = require_transformers()
        path = resolve_model_dir(self.name, weights, self.repo_id, self.extra_files)
        self.model_dir = path
        self.model = self._load(transformers, path).to(self.device)
        config = self.model.config
        self._check_sample_rate(path, config)
        self.dim = int(config.hidden_size)
        self.hidden_states = int(config.num_hidden_layers) + 1
        self.layer = parse_layer(layer, self.hidden_states)
        self.kernels = [int(k) for k in config.conv_kernel]
        self.strides = [int(s) for s in config.conv_stride]
        self.min_seconds = receptive_field(self.kernels, self.strides) / self.sample_rate
        self.do_normalize = self._do_normalize(path)
        self.padded_batches = self._padding_is_exact(config)

    @abstractmethod
    def _load(self, transformers: Any, path: Path) -> Any:
        """The model, loaded offline from `path` with `load_checked`."""

    @staticmethod
    def _padding_is_exact(config: Any) -> bool:
        """Whether right padding plus an attention mask leaves real frames unchanged: true when nothing before the
        attention mixes time beyond one convolution window (no group norm, one positional convolution on the
        zeroed padding, no batch norm in front of it)."""
        return config.feat_extract_norm == "layer" and not getattr(config, "conv_pos_batch_norm", False)

    def _check_sample_rate(self, path: Path, config: Any) -> None:
        rates = {"config.json": getattr(config, "sample_rate", None)}
        preprocessor = path / "preprocessor_config.json"
        if preprocessor.is_file():
            rates["preprocessor_config.json"] = read_json(preprocessor).get("sampling_rate")
        for source, rate in rates.items():
            if rate is not None and int(rate) != self.sample_rate:
                raise BackendUnavailableError(f"{self.name}: {path / source} says {rate} Hz but this backend is the "
                                              f"{self.sample_rate} Hz model; wrong weights folder?")

    @staticmethod
    def _do_normalize(path: Path) -> bool:
        """The checkpoint's own setting; without a preprocessor file, the wav2vec 2.0 default (normalise)."""
        preprocessor = path / "preprocessor_config.json"
        return bool(read_json(preprocessor).get("do_normalize", True)) if preprocessor.is_file() else True

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms = waveforms.to(self.device, torch.float32)
        lengths = lengths.to(self.device).long()
        counts = conv_output_lengths(lengths, self.kernels, self.strides)
        width = int(conv_output_lengths(torch.tensor([waveforms.shape[1]]), self.kernels, self.strides))
        valid = torch.arange(width, device=self.device)[None, :] < counts[:, None]
        if self.do_normalize:
            inputs = normalise_waveforms(waveforms, lengths)
        else:
            inputs = waveforms * sample_mask(lengths, waveforms.shape[1])
        features = torch.zeros(len(waveforms), width, self.dim, device=self.device)
        keep = counts > 0
        if self.padded_batches and keep.any():
            rows = torch.nonzero(keep).flatten()
            attention = sample_mask(lengths[rows], waveforms.shape[1]).long()
            encoded = self._encode(inputs[rows], attention)
            features[rows, :encoded.shape[1]] = encoded
        elif keep.any():
            for length, rows in equal_length_groups(lengths, keep):
                encoded = self._encode(inputs[rows, :length], None)
                features[rows, :encoded.shape[1]] = encoded
        return features * valid[..., None], valid

    def _encode(self, inputs: torch.Tensor, attention: torch.Tensor | None) -> torch.Tensor:
        out = self.model(input_values=inputs, attention_mask=attention, output_hidden_states=True)
        states = list(out.hidden_states)
        # transformers 5 reports a pre-LN model's last hidden state before its final layer norm, 4.x after it.
        states[-1] = out.last_hidden_state
        if self.layer is not None:
            return states[self.layer].float()
        return sum(state.float() for state in states) / len(states)


def _mert_config(transformers: Any, path: Path) -> Any:
    """A HubertConfig equal to the MERT checkpoint's, or a clear refusal for variants HuBERT cannot express."""
    raw = read_json(path / "config.json")
    if raw.get("feature_extractor_cqt") or raw.get("deepnorm"):
        raise BackendUnavailableError(f"{path}: this MERT variant uses a CQT branch or DeepNorm residuals, which "
                                      "the HuBERT mapping does not implement; only MERT-v1 checkpoints are supported")
    kept = {key: value for key, value in raw.items() if key not in ("auto_map", "architectures", "model_type")}
    # MERT's own config predates conv_pos_batch_norm; its checkpoints have no such batch norm.
    kept["conv_pos_batch_norm"] = False
    return transformers.HubertConfig(**kept)


class MertBackend(Wav2VecStyleBackend):
    """MERT-v1 (Li et al., 2023): HuBERT-style masked prediction on 24 kHz music, 75 frames/s, trained on 5 s crops.

    Default layer "mean": MERT's model card shows that the best layer differs from task to task and learns a
    weighting over all hidden states; with no task to fit that weighting to, the equal-weight average is the
    neutral choice. The study this project follows does not say which layer it used.
    """

    sample_rate = 24000
    segment_seconds = 5.0
    extra_files = ("preprocessor_config.json",)

    def _load(self, transformers: Any, path: Path) -> Any:
        return load_checked(transformers.HubertModel, path, config=_mert_config(transformers, path))


@register_backend("mert-v1-95m")
class Mert95MBackend(MertBackend):
    name = "mert-v1-95m"
    repo_id = "m-a-p/MERT-v1-95M"
    dim = 768


@register_backend("mert-v1-330m")
class Mert330MBackend(MertBackend):
    name = "mert-v1-330m"
    repo_id = "m-a-p/MERT-v1-330M"
    dim = 1024


@register_backend("music2vec")
class Music2VecBackend(Wav2VecStyleBackend):
    """Music2Vec-v1 (Li et al., 2022): a data2vec audio model trained on 16 kHz music with 30 s context, 50
    frames/s. Default layer "mean", for the reason given for MERT (its model card makes the same point)."""

    name = "music2vec"
    repo_id = "m-a-p/music2vec-v1"
    sample_rate = 16000
    dim = 768
    segment_seconds = 30.0

    def _load(self, transformers: Any, path: Path) -> Any:
        return load_checked(transformers.Data2VecAudioModel, path)

    @staticmethod
    def _padding_is_exact(config: Any) -> bool:
        """Never: data2vec's positional embedding stacks several convolutions, so padding that the first one fills
        in flows back into real frames through the next."""
        return False


@register_backend("clap")
class ClapBackend(AudioBackend):
    """LAION CLAP (HTSAT audio tower, RoBERTa text tower) through `transformers.ClapModel`, 48 kHz.

    CLAP embeds fixed 10 s windows (its feature extractor repeats shorter audio to fill one), so a segment is one
    window and yields one frame. A window with less than `min_seconds` of audio, such as the last sliver of a
    track, would be that sliver looped many times; it is marked invalid rather than given equal weight in the mean.
    The fusion variant's "longer than 10 s" branch is never taken (segments never are), and `is_longer` is always
    False: `ClapFeatureExtractor` otherwise flags one random row of every batch, which would make a window's vector
    depend on its batch.

    layer "projection" (default): the 512-d joint audio-text space, L2-normalised per window as CLAP's contrastive
    loss compares them, so `embed_text` vectors are directly comparable (text-to-music search). "pooled": the audio
    tower's pooled output before the projection.
    """

    name = "clap"
    repo_id = "laion/larger_clap_music"
    sample_rate = 48000
    segment_seconds = 10.0
    min_seconds = 1.0
    LAYERS = ("projection", "pooled")

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None,
                 layer: str = "projection") -> None:
        super().__init__(device)
        if layer not in self.LAYERS:
            raise ValueError(f"clap layer must be one of {self.LAYERS}, got {layer!r}")
        transformers = require_transformers()
        path = resolve_model_dir(self.name, weights, self.repo_id, ("preprocessor_config.json",))
        self.model_dir = path
        self.layer = layer
        self.model = load_checked(transformers.ClapModel, path).to(self.device)
        self.extractor = transformers.ClapFeatureExtractor.from_pretrained(path, local_files_only=True)
        if int(self.extractor.sampling_rate) != self.sample_rate:
            raise BackendUnavailableError(f"clap: {path / 'preprocessor_config.json'} says "
                                          f"{self.extractor.sampling_rate} Hz; CLAP is a {self.sample_rate} Hz model")
        self.segment_seconds = float(self.extractor.max_length_s)
        config = self.model.config
        self.dim = int(config.projection_dim if layer == "projection" else config.audio_config.hidden_size)
        self._tokenizer: Any = None

    @torch.inference_mode()
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.long().cpu()
        valid = lengths >= round(self.min_seconds * self.sample_rate)
        features = torch.zeros(len(waveforms), 1, self.dim, device=self.device)
        rows = torch.nonzero(valid).flatten()
        if len(rows):
            audio = waveforms.detach().float().cpu().numpy()
            clips = [audio[i, :int(lengths[i])] for i in rows.tolist()]
            inputs = self.extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt")
            mel = inputs["input_features"].to(self.device, torch.float32)
            is_longer = torch.zeros(len(rows), 1, dtype=torch.bool, device=self.device)
            pooled = self.model.audio_model(input_features=mel, is_longer=is_longer).pooler_output
            if self.layer == "projection":
                pooled = F.normalize(self.model.audio_projection(pooled), dim=-1)
            features[rows.to(self.device), 0] = pooled.float()
        return features, valid.to(self.device)[:, None]

    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(n, projection_dim) unit vectors of `texts` in the joint space, comparable with layer="projection"."""
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self.model_dir)
        tokens = self._tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                       attention_mask=tokens["attention_mask"]).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1).float()


def _load_tokenizer(path: Path) -> Callable[..., Any]:
    transformers = require_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise BackendUnavailableError(f"clap: no tokenizer files in {path} (vocab.json, merges.txt, "
                                      "tokenizer_config.json); text embedding needs them") from error

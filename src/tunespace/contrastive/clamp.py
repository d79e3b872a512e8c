"""CLaMP 2 in tunespace: the M3 score encoder (ABC and MIDI) aligned with a multilingual text tower, and optionally
with an audio embedding space, trained by the one contrastive loop (`train.train_loop`).

Data. Every track of a corpus folder with a score gives its ABC patches (leak-stripped: `symbolic.abc`) and its
MIDI as MTF message patches; its captions come in English, German and Chinese. Held-out tunes are never trained
on: `split: tune` holds out the same tracks as HTCL (`htcl.Holdout`, seeded by `holdout_seed` only, so a CLaMP run
and an HTCL run of one corpus test on the same unseen tunes), `split: collection` holds out a whole songbook (its
tunes split into validation and test halves). Validation tunes choose; test tunes are reported.

Step. The batch of step s is drawn from a generator seeded by (train.seed, s): B training tunes, for each one
format (ABC or MIDI, uniformly) and one caption (uniform over the configured languages and their variants).
The loss is CLIP's symmetric InfoNCE between text and music, gathered across DDP ranks. With `audio.embeddings`
(a folder `tunespace embed` wrote, e.g. an HTCL run's audio tower) a second InfoNCE term, weighted by
`audio.weight`, pulls `audio_proj(music)` onto the tune's fixed audio vector, which puts scores into the audio
space too: audio -> ABC retrieval then needs no audio tower training at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from tunespace.contrastive.htcl import ConfigError, Holdout, load_yaml_config
from tunespace.contrastive.losses import InfoNCE
from tunespace.contrastive.losses import world_size as ddp_world_size
from tunespace.contrastive.train import TrainConfig, per_rank_batch
from tunespace.encoders.clamp import CLaMP2, CLaMP2Config, m3_config
from tunespace.encoders.clamp_pretrain import M3PretrainConfig, M3Pretraining, corrupt_patches, load_m3
from tunespace.errors import DatasetNotFoundError, DataValidationError
from tunespace.io import write_text
from tunespace.symbolic.corpus import read_corpus_patches
from tunespace.symbolic.patches import PatchConfig, encode_patches, pad_batch

logger = logging.getLogger(__name__)

CLAMP_CONFIG_DIR = Path(__file__).parent / "configs" / "clamp"
FORMATS = ("abc", "midi")
LANGUAGES = ("en", "de", "zh")
SPLITS = ("tune", "collection")
RUN_CONFIG = "config.yaml"
SPLIT_FILE = "split.json"


@dataclass
class ClampModelConfig:
    size: str = "tiny"  # M3 size (encoders.clamp.M3_SIZES): tiny, small, base
    patch_length: int = 64  # characters per patch, specials included (CLaMP 2: 64)
    max_patches: int = 256  # patches per piece; longer pieces are cut and counted (CLaMP 2: 512)
    midi_pack_to: int = 64  # MIDI messages packed into patches of up to this many characters (CLaMP 2's M3 form)
    embed_dim: int = 256  # the shared space
    text_model: str = "minilm"  # a local transformers folder, or "minilm" (the packaged MiniLM)
    extend_vocabulary: bool = True  # extend the text tokenizer from the training captions (German, Chinese)
    max_text_length: int = 96
    dropout: float = 0.1
    music_norm: bool = False  # standardise pooled M3 features before the projection (see CLaMP2Config.music_norm)

    def __post_init__(self) -> None:
        m3_config(self.size)  # an unknown size fails here, with the known ones


@dataclass
class ClampDataConfig:
    formats: tuple[str, ...] = FORMATS
    languages: tuple[str, ...] = LANGUAGES
    split: str = "tune"
    holdout_share: float = 0.1  # split: tune
    holdout_seed: int = 0
    held_collection: str = ""  # split: collection (required there)

    def __post_init__(self) -> None:
        if not self.formats or set(self.formats) - set(FORMATS):
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats}")
        if not self.languages:
            raise ValueError("languages must not be empty")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.split == "collection" and not self.held_collection:
            raise ValueError("split: collection needs held_collection (the songbook to test on)")


@dataclass
class ClampAudioConfig:
    embeddings: str = ""  # an embedding folder (`tunespace embed`): align music with that audio space too
    weight: float = 0.5

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"audio.weight must be >= 0, got {self.weight}")


@dataclass
class ClampConfig:
    model: ClampModelConfig = field(default_factory=ClampModelConfig)
    data: ClampDataConfig = field(default_factory=ClampDataConfig)
    audio: ClampAudioConfig = field(default_factory=ClampAudioConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: str = ""  # an M3 checkpoint (`clamp pretrain`) to start the music encoder from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_clamp_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ClampConfig:
    """A named config (`tiny`, `small`: tunespace/contrastive/configs/clamp/) or a YAML path, with dotted overrides."""
    return load_yaml_config(ClampConfig, name_or_path, CLAMP_CONFIG_DIR, overrides)


@dataclass
class ClampSplit:
    """Track ids per part; `train` is every scored track outside validation and test."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    how: str

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SPLIT_FILE
        write_text(json.dumps({"how": self.how, "train": list(self.train), "validation": list(self.validation),
                               "test": list(self.test)}, indent=1), path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ClampSplit:
        values = json.loads((Path(folder) / SPLIT_FILE).read_text(encoding="utf-8"))
        return cls(tuple(values["train"]), tuple(values["validation"]), tuple(values["test"]), values["how"])

    def part(self, name: str) -> tuple[str, ...]:
        if name not in ("train", "validation", "test"):
            raise ValueError(f"part must be train, validation or test, got {name!r}")
        return getattr(self, name)


def draw_split(tracks: pd.DataFrame, config: ClampDataConfig) -> ClampSplit:
    """Held-out tunes by tune (HTCL's holdout of the whole catalogue) or by collection (one songbook, halved)."""
    ids = tracks["track_id"].astype(str)
    if config.split == "tune":
        holdout = Holdout.draw(ids, config.holdout_share, config.holdout_seed)
        held = set(holdout.tracks)
        return ClampSplit(tuple(sorted(set(ids) - held)), holdout.validation, holdout.test,
                          f"tune: holdout_share {config.holdout_share}, holdout_seed {config.holdout_seed}")
    collections = tracks["collection"].astype(str)
    if config.held_collection not in set(collections):
        raise ConfigError(f"held_collection {config.held_collection!r} is not a collection of the corpus; known: "
                          f"{', '.join(sorted(set(collections)))}")
    inside = np.sort(ids[collections == config.held_collection].to_numpy())
    order = np.random.default_rng([config.holdout_seed, 11]).permutation(len(inside))
    half = len(inside) // 2
    if half < 1:
        raise ConfigError(f"collection {config.held_collection!r} has {len(inside)} tracks; validation and test "
                          "need one each")
    return ClampSplit(tuple(sorted(ids[collections != config.held_collection])),
                      tuple(sorted(inside[order[:half]])), tuple(sorted(inside[order[half:]])),
                      f"collection: {config.held_collection} held out, halved with seed {config.holdout_seed}")


@dataclass
class ScoreBank:
    """Every track's encoded pieces per format (int64 [patches, patch_length]) and captions per language."""

    pieces: dict[str, dict[str, np.ndarray]]  # format -> track id -> ids
    captions: dict[str, dict[str, list[str]]]  # language -> track id -> texts
    cut: dict[str, int]  # format -> pieces that lost patches or characters to the patch config
    failures: pd.DataFrame

    @classmethod
    def load(cls, corpus: str | Path, patch: PatchConfig, formats: tuple[str, ...] = FORMATS,
             languages: tuple[str, ...] = LANGUAGES, pack_midi_to: int | None = None) -> ScoreBank:
        corpus = Path(corpus)
        patches = read_corpus_patches(corpus, pack_midi_to=pack_midi_to, formats=formats)
        pieces: dict[str, dict[str, np.ndarray]] = {}
        cut: dict[str, int] = {}
        for fmt in formats:
            encoded = {track: encode_patches(strings, patch) for track, strings in getattr(patches, fmt).items()}
            pieces[fmt] = {track: result.ids for track, result in encoded.items()}
            cut[fmt] = sum(result.truncated for result in encoded.values())
        table = corpus / "captions.parquet"
        if not table.is_file():
            raise DataValidationError(str(table), "missing: CLaMP trains on captions (tunespace corpus build "
                                                  "writes them)")
        frame = pd.read_parquet(table)
        captions: dict[str, dict[str, list[str]]] = {}
        for language in languages:
            rows = frame[frame["language"] == language]
            if rows.empty:
                raise DataValidationError(str(table), f"no captions in language {language!r}; found "
                                                      f"{', '.join(sorted(frame['language'].unique()))}")
            captions[language] = rows.groupby("track_id")["text"].apply(list).to_dict()
        return cls(pieces, captions, cut, patches.failures)

    def usable(self, track_ids: tuple[str, ...]) -> tuple[str, ...]:
        """The tracks with every configured format and a caption in every configured language."""
        return tuple(t for t in track_ids if all(t in by_track for by_track in self.pieces.values())
                     and all(t in by_track for by_track in self.captions.values()))

    def batch(self, track_ids: list[str], fmt: str) -> tuple[np.ndarray, np.ndarray]:
        return pad_batch([self.pieces[fmt][track] for track in track_ids])


@dataclass
class ClampBatch:
    tracks: list[str]  # the tunes of this rank's rows
    texts: list[str]
    ids: torch.Tensor  # (B, patches, patch_length)
    mask: torch.Tensor  # (B, patches)
    audio: torch.Tensor | None = None  # (B, audio dim) fixed audio vectors, when aligning with audio


class ClampBatchMaker:
    """Step -> this rank's slice of the step's batch, drawn from a generator seeded by (seed, step)."""

    def __init__(self, bank: ScoreBank, train_ids: tuple[str, ...], config: ClampConfig,
                 audio: dict[str, np.ndarray] | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.bank, self.config, self.audio = bank, config, audio
        self.ids = np.asarray([t for t in train_ids if audio is None or t in audio], dtype=object)
        if len(self.ids) < config.train.batch_size:
            raise ConfigError(f"{len(self.ids)} training tunes for a batch of {config.train.batch_size}")
        self.rank, self.world_size = rank, world_size

    def __call__(self, step: int) -> ClampBatch:
        config = self.config
        rng = np.random.default_rng([config.train.seed, step])
        size = config.train.batch_size
        chosen = self.ids[rng.choice(len(self.ids), size=size, replace=False)]
        formats = np.asarray(config.data.formats)[rng.integers(0, len(config.data.formats), size=size)]
        languages = np.asarray(config.data.languages)[rng.integers(0, len(config.data.languages), size=size)]
        texts = []
        for track, language in zip(chosen, languages):
            options = self.bank.captions[language][track]
            texts.append(options[int(rng.integers(0, len(options)))])
        share = per_rank_batch(size, self.world_size)
        rows = slice(self.rank * share, (self.rank + 1) * share)
        pieces = [self.bank.pieces[fmt][track] for fmt, track in zip(formats[rows], chosen[rows])]
        ids, mask = pad_batch(pieces)
        audio = None
        if self.audio is not None:
            audio = torch.as_tensor(np.stack([self.audio[track] for track in chosen[rows]]))
        return ClampBatch(list(chosen[rows]), texts[rows], torch.as_tensor(ids), torch.as_tensor(mask), audio)


class ClampAlignment(nn.Module):
    """The training module: CLaMP 2 + text-music InfoNCE (+ music-audio InfoNCE through `audio_proj`)."""

    def __init__(self, config: ClampConfig, audio_dim: int | None = None, pretrained_text: bool = True) -> None:
        """`pretrained_text=False`: the text model from its folder's config alone, for a checkpoint that carries
        its weights (loading them from the folder first would be read twice)."""
        super().__init__()
        self.config = config
        music = m3_config(config.model.size, patch_length=config.model.patch_length,
                          max_patches=config.model.max_patches, dropout=config.model.dropout)
        self.clamp = CLaMP2(CLaMP2Config(text_model=config.model.text_model, music=music,
                                         embed_dim=config.model.embed_dim,
                                         max_text_length=config.model.max_text_length,
                                         music_norm=config.model.music_norm),
                           pretrained_text=pretrained_text)
        self.text_loss = InfoNCE()
        self.audio_proj = nn.Linear(config.model.embed_dim, audio_dim) if audio_dim else None
        self.audio_loss = InfoNCE() if audio_dim else None

    def forward(self, batch: ClampBatch) -> dict[str, torch.Tensor]:
        text, music = self.clamp(batch.texts, batch.ids, batch.mask)
        terms = {f"text_{k}": v for k, v in self.text_loss(text, music).items()}
        loss = terms["text_loss"]
        if self.audio_proj is not None and batch.audio is not None:
            audio_terms = self.audio_loss(self.audio_proj(F.normalize(music, dim=-1)), batch.audio.to(music.device))
            terms.update({f"audio_{k}": v for k, v in audio_terms.items()})
            loss = loss + self.config.audio.weight * audio_terms["loss"]
        terms["loss"] = loss
        return terms

    @torch.no_grad()
    def audio_space(self, music: torch.Tensor) -> torch.Tensor:
        """Unit music vectors (the shared text-music space) mapped into the aligned audio space, unit length."""
        if self.audio_proj is None:
            raise ConfigError("this run was not aligned with an audio space (audio.embeddings was empty)")
        return F.normalize(self.audio_proj(music), dim=-1)


def corpus_tracks(corpus: str | Path) -> pd.DataFrame:
    """The corpus's tracks table; a folder without one is a one-line error, not a traceback."""
    table = Path(corpus) / "tracks.parquet"
    if not table.is_file():
        raise DatasetNotFoundError(f"{corpus}: no tracks.parquet; is it a tunespace corpus folder (tunespace corpus "
                                   "build)?")
    return pd.read_parquet(table)


def patch_config(config: ClampConfig) -> PatchConfig:
    return PatchConfig(patch_length=config.model.patch_length, max_patches=config.model.max_patches)


def score_bank(corpus: str | Path, config: ClampConfig) -> ScoreBank:
    """The corpus's pieces encoded as `config` says, and its captions in the configured languages."""
    return ScoreBank.load(corpus, patch_config(config), config.data.formats, config.data.languages,
                          config.model.midi_pack_to or None)


def read_audio_vectors(folder: str | Path) -> dict[str, np.ndarray]:
    """Track id -> unit audio vector from an embedding folder (the space music is aligned with)."""
    from tunespace.data.embeddings import ItemEmbeddings

    embeddings = ItemEmbeddings.load(folder)
    vectors = embeddings.vectors / np.maximum(np.linalg.norm(embeddings.vectors, axis=1, keepdims=True), 1e-12)
    return dict(zip(embeddings.ids, vectors.astype(np.float32)))


@dataclass
class PreparedRun:
    """What training and evaluation share: the config as run, the split, the bank and the audio vectors."""

    config: ClampConfig
    split: ClampSplit
    bank: ScoreBank
    audio: dict[str, np.ndarray] | None


def prepare(corpus: str | Path, config: ClampConfig) -> PreparedRun:
    corpus = Path(corpus)
    tracks = corpus_tracks(corpus)
    split = draw_split(tracks, config.data)
    bank = score_bank(corpus, config)
    audio = read_audio_vectors(config.audio.embeddings) if config.audio.embeddings else None
    for fmt, count in bank.cut.items():
        if count:
            logger.info("%s: %d pieces cut to %d patches of %d characters", fmt, count, config.model.max_patches,
                        config.model.patch_length)
    return PreparedRun(config, split, bank, audio)


def train_clamp(corpus: str | Path, config: ClampConfig, out: str | Path, resume: bool = False,
                progress: Any = None, stop_after: int | None = None, device: str = "auto") -> Any:
    """Align scores with captions (and an audio space) on the training tunes; resumable from OUT/last.pt.

    A multilingual text tower is made once per run (OUT/text) from the training captions only, so no evaluation
    text shapes the vocabulary. The config as run (with that folder as its text model) goes to OUT/config.yaml.
    """
    from tunespace.contrastive.train import CHECKPOINT, init_distributed, train_loop
    from tunespace.encoders.clamp_text import extend_text_model

    out = Path(out)
    context = init_distributed(device)
    if (out / CHECKPOINT).exists() and not resume:
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and (out / RUN_CONFIG).exists():
        config = load_clamp_config(out / RUN_CONFIG)
    prepared = prepare(corpus, config)
    split = prepared.split
    train_ids = prepared.bank.usable(split.train)
    out.mkdir(parents=True, exist_ok=True)
    if config.model.extend_vocabulary and not (out / "text" / "config.json").exists():
        if context.is_main:
            captions = [text for language in config.data.languages for track in train_ids
                        for text in prepared.bank.captions[language][track]]
            extend_text_model(config.model.text_model, captions, out / "text")
        if context.world_size > 1:
            torch.distributed.barrier()
    if config.model.extend_vocabulary:
        config.model.text_model = str((out / "text").resolve())
        config.model.extend_vocabulary = False  # done: the run's text folder is the model from now on
    if context.is_main:
        write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), out / RUN_CONFIG)
        split.save(out)
    torch.manual_seed(config.train.seed)
    audio_dim = len(next(iter(prepared.audio.values()))) if prepared.audio else None
    model = ClampAlignment(config, audio_dim).to(context.device)
    if config.init:
        model.clamp.music_model.load_state_dict(load_m3(config.init).encoder.state_dict())
    maker = ClampBatchMaker(prepared.bank, train_ids, config, prepared.audio, context.rank, context.world_size)
    return train_loop(model, maker, config.train, out, context, resume=resume, progress=progress,
                      stop_after=stop_after)


def load_clamp_run(run: str | Path, device: str | torch.device = "cpu") -> tuple[ClampAlignment, ClampSplit]:
    """A trained run (its config.yaml, split.json and last.pt), in eval mode."""
    from tunespace.contrastive.train import CHECKPOINT

    run = Path(run)
    if not (run / CHECKPOINT).exists():
        raise ConfigError(f"{run}: no {CHECKPOINT}; train it with `tunespace clamp train --out {run}`")
    config = load_clamp_config(run / RUN_CONFIG)
    state = torch.load(run / CHECKPOINT, map_location="cpu", weights_only=False)["model"]
    audio_dim = state["audio_proj.weight"].shape[0] if "audio_proj.weight" in state else None
    model = ClampAlignment(config, audio_dim, pretrained_text=False)
    model.load_state_dict(state)
    return model.to(device).eval(), ClampSplit.load(run)


@dataclass
class PieceBatch:
    """This rank's rows of a step's pieces, already corrupted (drawn over the global batch, so the corruption does
    not depend on the number of processes), trimmed to the rows' longest piece."""

    ids: torch.Tensor  # (B, patches, patch_length) the original characters
    mask: torch.Tensor  # (B, patches)
    corrupted: torch.Tensor  # ids with the selected patches masked, shuffled or kept
    selected: torch.Tensor  # (B, patches) bool: the patches to rebuild


class M3PretrainStep(M3Pretraining):
    """M3's masked patch reconstruction as a training-loop module: forward(PieceBatch) -> named terms. Its state
    keys are `M3Pretraining`'s, so `clamp_pretrain.load_m3` reads the checkpoint the loop writes.

    Under DDP each rank rebuilds its slice of the batch; the character sums of all ranks are added up, so `loss` is
    the mean over the global batch's characters (its value on every rank), and the gradient is scaled so that DDP's
    averaging gives the gradient of that mean: N processes take the steps one process takes with the whole batch."""

    def __init__(self, config: ClampConfig) -> None:
        super().__init__(m3_config(config.model.size, patch_length=config.model.patch_length,
                                   max_patches=config.model.max_patches, dropout=config.model.dropout))

    def forward(self, batch: PieceBatch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        device = next(self.parameters()).device
        ids, corrupted, mask, selected = (t.to(device) for t in (batch.ids, batch.corrupted, batch.mask,
                                                                 batch.selected))
        total, scored, right = self.reconstruction(ids, corrupted, mask, selected)
        sums = torch.stack([total.detach(), scored, right, selected.sum().to(total.dtype)])
        ranks = ddp_world_size()
        if ranks > 1:
            torch.distributed.all_reduce(sums)
        count = sums[1].clamp_min(1)
        loss = (ranks * total - (ranks * total).detach() + sums[0]) / count  # value: global mean; see docstring
        return {"loss": loss, "char_accuracy": sums[2] / count, "selected_patches": sums[3]}


class PieceBatchMaker:
    """Step -> this rank's slice of the step's pieces (random training tunes in random formats), corrupted as a
    whole batch by a generator drawn from (seed, step), so every rank and every number of ranks agree on it."""

    def __init__(self, bank: ScoreBank, train_ids: tuple[str, ...], config: ClampConfig,
                 corruption: M3PretrainConfig | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.bank, self.config = bank, config
        self.corruption = corruption or M3PretrainConfig()
        self.ids = np.asarray(train_ids, dtype=object)
        self.rank, self.world_size = rank, world_size

    def __call__(self, step: int) -> PieceBatch:
        rng = np.random.default_rng([self.config.train.seed, step, 3])
        size = self.config.train.batch_size
        chosen = self.ids[rng.choice(len(self.ids), size=size, replace=False)]
        formats = np.asarray(self.config.data.formats)[rng.integers(0, len(self.config.data.formats), size=size)]
        ids, mask = (torch.as_tensor(a) for a in
                     pad_batch([self.bank.pieces[fmt][track] for fmt, track in zip(formats, chosen)]))
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        corrupted, selected = corrupt_patches(ids, mask, self.corruption, generator)
        share = per_rank_batch(size, self.world_size)
        rows = slice(self.rank * share, (self.rank + 1) * share)
        width = int(mask[rows].sum(dim=1).max())  # padding the other ranks' longer pieces need is cut
        return PieceBatch(ids[rows, :width], mask[rows, :width], corrupted[rows, :width], selected[rows, :width])


def pretrain_m3(corpus: str | Path, config: ClampConfig, out: str | Path, resume: bool = False,
                progress: Any = None, stop_after: int | None = None, device: str = "auto") -> Any:
    """Masked patch reconstruction of the training tunes' ABC and MIDI (no captions); OUT/last.pt is what
    `init: OUT/last.pt` starts an alignment run's music encoder from."""
    from tunespace.contrastive.train import CHECKPOINT, init_distributed, train_loop

    out = Path(out)
    context = init_distributed(device)
    if (out / CHECKPOINT).exists() and not resume:
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    prepared = prepare(corpus, config)
    out.mkdir(parents=True, exist_ok=True)
    if context.is_main:
        write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), out / RUN_CONFIG)
        prepared.split.save(out)
    torch.manual_seed(config.train.seed)
    model = M3PretrainStep(config).to(context.device)
    maker = PieceBatchMaker(prepared.bank, prepared.bank.usable(prepared.split.train), config, model.pretrain,
                            context.rank, context.world_size)
    return train_loop(model, maker, config.train, out, context, resume=resume, progress=progress,
                      stop_after=stop_after)


SCORE_BACKENDS = {"clamp-abc": "abc", "clamp-midi": "midi"}


@torch.no_grad()
def music_vectors(model: ClampAlignment, bank: ScoreBank, track_ids: Sequence[str], fmt: str,
                  batch_size: int = 32) -> np.ndarray:
    """(n, d) unit vectors of the tracks' pieces in the shared text-music space, padded batch by batch."""
    parts = []
    for start in range(0, len(track_ids), batch_size):
        ids, mask = pad_batch([bank.pieces[fmt][t] for t in track_ids[start:start + batch_size]])
        parts.append(model.clamp.encode_music(ids, mask).cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, model.config.model.embed_dim), dtype=np.float32)


def write_score_embeddings(run: str | Path, corpus: str | Path, backend: str, out: str | Path,
                           batch_size: int = 32) -> tuple[int, int]:
    """`tunespace embed --backend clamp-abc|clamp-midi`: every track's score in the run's shared space, written as
    an embedding folder (one shard and a manifest, as audio extraction writes), so recommenders, the index and the
    benchmark take it like any audio backend. Tracks without that score are listed in the shard's skipped file.
    Returns (embedded, skipped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tunespace.data.embeddings import MANIFEST
    from tunespace.io import atomic_path

    if backend not in SCORE_BACKENDS:
        raise ConfigError(f"unknown score backend {backend!r}; known: {', '.join(SCORE_BACKENDS)}")
    fmt = SCORE_BACKENDS[backend]
    model, _ = load_clamp_run(run)
    if fmt not in model.config.data.formats:
        raise ConfigError(f"{run} was trained without {fmt} (formats: {', '.join(model.config.data.formats)})")
    tracks = corpus_tracks(corpus)["track_id"].astype(str).tolist()
    bank = ScoreBank.load(corpus, patch_config(model.config), (fmt,), (), model.config.model.midi_pack_to or None)
    present = [t for t in tracks if t in bank.pieces[fmt]]
    matrix = music_vectors(model, bank, present, fmt, batch_size).astype(np.float32)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [t for t in tracks if t not in bank.pieces[fmt]]
    skipped = pd.DataFrame({"track_id": missing, "audio_path": "", "kind": f"no {fmt}",
                            "reason": f"no readable {fmt} score"}).astype(str)
    with atomic_path(out / "shard-00000.skipped.parquet") as tmp:
        skipped.to_parquet(tmp, index=False)
    table = pa.table({"track_id": pa.array(present, type=pa.string()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()),
                                                                     matrix.shape[1])})
    manifest = {"backend": backend, "options": {"run": str(Path(run).resolve())}, "dim": int(matrix.shape[1]),
                "tracks": len(tracks), "shard_size": max(len(tracks), 1), "shards": 1, "pooling": "mean"}
    write_text(json.dumps(manifest, indent=2), out / MANIFEST)
    with atomic_path(out / "shard-00000.parquet") as tmp:
        pq.write_table(table, tmp)
    return len(present), len(missing)

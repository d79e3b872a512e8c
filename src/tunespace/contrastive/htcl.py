"""HTCL (Chen et al., ICMR 2025): hierarchical two-stage contrastive learning.

Stage 1 aligns an audio encoder with a text encoder on (audio, description) pairs, so the audio space carries
language semantics. Stage 2 adapts the audio encoder to the listeners' preference space by contrasting tracks
that the same listeners play together (train interactions only), while keeping the semantic space: the stage-1
audio-text loss stays in with weight `semantic_weight` (lambda), and/or the audio embeddings are anchored to the
frozen stage-1 encoder's (`anchor_weight`, mu). Setting both to 0 is the ablation where the semantic space is
free to collapse.

Stage 2 either tunes the whole audio tower (`tune: all`) or only its head on the frozen stage-1 trunk's cached
window features (`tune: head`, see `TrunkFeatures`), and can rank each preference anchor against uniform draws
from the catalogue besides the batch (`catalogue_negatives`, see `CatalogueSoftmax`): on the built-in corpus the
preference term only improved recommendation over its control with those draws.

The semantic held-out tracks (`Holdout`) are fixed once per corpus: drawn over the sorted track ids from their own
seed (`holdout_seed`, independent of `train.seed`), split into a semantic-validation half (for choosing among runs)
and a semantic-test half (for reporting), stored with every run (`holdout.json`) and checked wherever a run meets a
corpus or another run. No stage ever trains on their audio or their texts.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from tunespace.audio.decode import AudioDecodeError
from tunespace.audio.stream import stream_segments
from tunespace.contrastive.losses import AnchorDistillation, CatalogueSoftmax, InfoNCE, ListenerSoftmax
from tunespace.contrastive.pairs import PAIR_SOURCES, PairContext, PairSource, make_pair_source, sample_mixed
from tunespace.contrastive.train import DistributedContext, TrainConfig
from tunespace.encoders.audio_encoder import AudioEncoder, AudioEncoderConfig
from tunespace.encoders.text import TextEncoder, TextEncoderConfig
from tunespace.errors import TunespaceError

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
TUNE_MODES = ("all", "head")
AudioInput = tuple[torch.Tensor, torch.Tensor] | torch.Tensor  # (waveforms, lengths), or pooled trunk features


class ConfigError(TunespaceError, ValueError):
    """A configuration file or value is not valid; the message names the file and key."""


@dataclass
class StageConfig:
    """What a stage optimises. Stage 1: semantic sources only. Stage 2: preference sources, plus lambda and mu."""

    semantic_sources: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"captions": {"weight": 1.0}, "metadata": {"weight": 0.5}})
    preference_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    semantic_weight: float = 1.0  # lambda: weight of the audio-text loss (in stage 2, semantic preservation)
    anchor_weight: float = 0.0  # mu: weight of the distillation to the frozen stage-1 audio embeddings
    crop_seconds: float = 10.0
    tune: str = "all"  # "all": the whole audio tower on random crops; "head": the trunk frozen (TrunkFeatures)
    catalogue_negatives: int = 0  # > 0: preference anchors ranked against this many uniform catalogue draws too
    popularity_correction: float = 0.0  # alpha: alpha * log(1 + train plays) added to each candidate's logit
    learn_popularity: bool = False  # listener source: alpha is trained (from popularity_correction) with the model

    def __post_init__(self) -> None:
        if self.tune not in TUNE_MODES:
            raise ValueError(f"tune must be one of {', '.join(TUNE_MODES)}, got {self.tune!r}")
        if self.catalogue_negatives < 0:
            raise ValueError(f"catalogue_negatives must be >= 0, got {self.catalogue_negatives}")
        if not 0.0 <= self.popularity_correction <= 1.0:
            raise ValueError(f"popularity_correction must be in [0, 1], got {self.popularity_correction}")
        listener = [name for name in self.preference_sources if _kind(name) == "listener"]
        if listener and len(self.preference_sources) > 1:
            raise ValueError(f"the {listener[0]} source ranks whole listeners and trains alone; drop the other "
                             f"preference sources ({', '.join(n for n in self.preference_sources if n not in listener)})")
        if listener and self.tune != "head":
            raise ValueError("the listener source embeds the whole catalogue every step, which needs tune: head (the "
                             "trunk frozen, its window features cached); under tune: all that would be a pass of the "
                             "audio tower over every track per step")
        if self.learn_popularity and not listener:
            raise ValueError("learn_popularity trains the popularity weight of the listener source's softmax; the "
                             "other preference sources keep popularity_correction fixed")

    @property
    def listener_objective(self) -> bool:
        """Whether stage 2 ranks whole listeners' held-out tracks among the catalogue (`ListenerSoftmax`)."""
        return any(_kind(name) == "listener" for name in self.preference_sources)


def _kind(source: str) -> str | None:
    cls = PAIR_SOURCES.get(source)
    return cls.kind if cls is not None else None


@dataclass
class HTCLConfig:
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    holdout_share: float = 0.1  # tracks never trained on (audio nor text): the semantic validation and test sets
    holdout_seed: int = 0  # draws them, independently of train.seed, so every run of a corpus holds out the same
    cutoff: str = "2025-01-01"  # stage 2 uses only behaviour before this date

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_config(cls: type, values: dict[str, Any], where: str) -> Any:
    """Dataclass from a dict, refusing unknown keys and converting lists to tuples where the field is a tuple."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        current = getattr(defaults, name)
        if is_dataclass(current):
            kwargs[name] = build_config(type(current), value, f"{where}.{name}")
        elif isinstance(current, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from error


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> HTCLConfig:
    """A named size (`tiny`, `small`, `base`: files shipped in tunespace/contrastive/configs) or a YAML path."""
    return load_yaml_config(HTCLConfig, name_or_path, CONFIG_DIR, overrides)


def load_yaml_config(cls: type, name_or_path: str | Path, config_dir: Path,
                     overrides: dict[str, Any] | None = None) -> Any:
    """A typed config from a YAML file, named (`tiny` is `config_dir/tiny.yaml`) or by path, with dotted overrides
    (`{"train.lr": 0.001}`) applied before the dataclasses check it."""
    path = Path(name_or_path)
    if not path.suffix:
        path = config_dir / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in config_dir.glob("*.yaml")))
        raise ConfigError(f"{path}: no such config (named: {known})")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return build_config(cls, values, str(path))


class AudioBank:
    """Every track's audio at the encoder's rate, decoded once into an int16 array (memory-mapped when cached),
    with random crops for training and whole tracks for embedding.

    The cache file is named by a fingerprint of every track's id, resolved path, size and modification time, so a
    cache made before a file was added, re-rendered or repaired is never reused for the new audio, while corpora that
    reach the same files through links (`tunespace corpus relisten`) share it; it is written atomically, so
    processes starting together never read half a file."""

    def __init__(self, tracks: pd.DataFrame, root: str | Path, sample_rate: int, cache: str | Path | None = None,
                 max_seconds: float = 30.0) -> None:
        self.sample_rate = sample_rate
        self.max_samples = int(max_seconds * sample_rate)
        self.ids = tracks["track_id"].astype(str).to_numpy()
        paths = [Path(root) / str(p) for p in tracks["audio_path"]]
        self.fingerprint = self._fingerprint(paths)
        cache_path = Path(cache) / f"audio-{sample_rate}-{len(tracks)}-{self.fingerprint}.npy" if cache else None
        lengths_path = cache_path.with_suffix(".lengths.npy") if cache_path else None
        if cache_path is not None and cache_path.exists() and lengths_path.exists():
            self.audio = np.load(cache_path, mmap_mode="r")
            self.lengths = np.load(lengths_path)
            return
        self.audio = np.zeros((len(tracks), self.max_samples), dtype=np.int16)
        self.lengths = np.zeros(len(tracks), dtype=np.int64)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for row, signal in enumerate(pool.map(self._decode, paths)):
                n = min(len(signal), self.max_samples)
                self.audio[row, :n] = np.round(np.clip(signal[:n], -1, 1) * 32767).astype(np.int16)
                self.lengths[row] = n
        if cache_path is not None:
            from tunespace.io import atomic_path

            cache_path.parent.mkdir(parents=True, exist_ok=True)
            for target, array in ((cache_path, self.audio), (lengths_path, self.lengths)):  # lengths last: the marker
                with atomic_path(target) as tmp, open(tmp, "wb") as handle:
                    np.save(handle, array)

    def _fingerprint(self, paths: list[Path]) -> str:
        digest = hashlib.sha1(f"{self.sample_rate}:{self.max_samples}".encode())
        for track_id, path in zip(self.ids, paths):
            try:
                stat = path.stat()
                stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            digest.update(f"{track_id}\0{path.resolve()}\0{stamp}\n".encode())
        return digest.hexdigest()[:16]

    def _decode(self, path: Path) -> np.ndarray:
        try:
            return np.concatenate(list(stream_segments(path, self.sample_rate, self.max_samples)) or [np.zeros(0)])
        except AudioDecodeError as error:
            logger.warning("%s; the track is silent in training", error)
            return np.zeros(0, dtype=np.float32)

    def crops(self, indices: np.ndarray, seconds: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows of `seconds` (whole tracks when shorter): waveforms (n, samples) and lengths."""
        size = int(seconds * self.sample_rate)
        lengths = np.minimum(self.lengths[indices], size)
        offsets = rng.integers(0, np.maximum(self.lengths[indices] - size, 0) + 1)
        waveforms = np.zeros((len(indices), size), dtype=np.float32)
        for row, (track, offset, length) in enumerate(zip(indices, offsets, lengths)):
            waveforms[row, :length] = self.audio[track, offset:offset + length] / 32767.0
        return torch.from_numpy(waveforms), torch.from_numpy(lengths)

    def segments(self, track: int, seconds: float) -> list[np.ndarray]:
        """A whole track cut into windows of `seconds` (the last one shorter), for embedding."""
        size = int(seconds * self.sample_rate)
        signal = self.audio[track, : self.lengths[track]] / 32767.0
        return [signal[start:start + size].astype(np.float32) for start in range(0, max(len(signal), 1), size)]

    def windows(self, indices: np.ndarray, seconds: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """Every window of the tracks at `indices` and, per window, its position in `indices`. A trailing sliver
        under 0.5 s says little and would weigh as much as a whole window, so it is dropped."""
        owners: list[int] = []
        windows: list[np.ndarray] = []
        for row, track in enumerate(indices):
            pieces = self.segments(int(track), seconds)
            if len(pieces) > 1 and len(pieces[-1]) < self.sample_rate // 2:
                pieces = pieces[:-1]
            owners += [row] * len(pieces)
            windows += pieces
        return np.asarray(owners, dtype=np.int64), windows


@torch.no_grad()
def mean_window_embeddings(encoder: AudioEncoder, windows: Iterable[tuple[torch.Tensor, torch.Tensor]],
                           count: int, unit: bool = True) -> np.ndarray:
    """(count, embed_dim): for each owner, the mean of its windows' embeddings through the encoder's head;
    `windows` yields (owners, pooled trunk features) batches. With `unit` (for retrieval) each window's embedding
    and the mean are L2-normalised; without it the raw mean is returned (what a linear head on top reads)."""
    sums = torch.zeros(count, encoder.config.embed_dim)
    counts = torch.zeros(count)
    for owners, pooled in windows:
        embedded = encoder.head(pooled)
        sums.index_add_(0, owners, (F.normalize(embedded, dim=-1) if unit else embedded).cpu())
        counts.index_add_(0, owners, torch.ones(len(owners)))
    means = sums / counts.clamp_min(1)[:, None]
    return (F.normalize(means, dim=-1) if unit else means).numpy()


@torch.no_grad()
def pooled_windows(encoder: AudioEncoder, bank: AudioBank, seconds: float, batch_size: int = 32,
                   indices: np.ndarray | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(owners, pooled trunk features) per batch of windows, streamed so a large catalogue never sits in memory
    as audio; owners are positions in `indices` (default: every track)."""
    encoder.eval()
    device = next(encoder.parameters()).device
    owners, windows = bank.windows(np.arange(len(bank.ids)) if indices is None else indices, seconds)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        lengths = torch.tensor([len(w) for w in chunk])
        waveforms = torch.zeros(len(chunk), int(lengths.max()))
        for row, window in enumerate(chunk):
            waveforms[row, : len(window)] = torch.from_numpy(window)
        yield torch.from_numpy(owners[start:start + batch_size]), encoder.pool(waveforms.to(device), lengths.to(device))


class TrunkFeatures:
    """The frozen trunk's pooled features of every window of every track (`tune: head`).

    With the trunk frozen, a track window's features never change, so they are computed once (and cached on disk,
    named by a hash of the trunk's weights and of the audio) and a training step costs a few small matrix products
    instead of a pass through the audio tower: thousands of steps fit in minutes on a CPU. Training draws one of a
    track's fixed windows at random where `tune: all` draws a random crop."""

    def __init__(self, features: torch.Tensor, owners: torch.Tensor, n_tracks: int) -> None:
        self.features, self.owners = features, owners
        self.counts = torch.bincount(owners, minlength=n_tracks)
        if bool((self.counts == 0).any()):
            raise ValueError("every track needs at least one window")
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    @classmethod
    def compute(cls, encoder: AudioEncoder, bank: AudioBank, seconds: float, cache: str | Path | None = None
                ) -> TrunkFeatures:
        digest = hashlib.sha1(f"{bank.fingerprint}:{seconds}".encode())
        for parameter in encoder.trunk_parameters():
            digest.update(parameter.detach().cpu().numpy().tobytes())
        path = Path(cache) / f"trunk-{digest.hexdigest()[:16]}.pt" if cache else None
        if path is not None and path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return cls(saved["features"], saved["owners"], len(bank.ids))
        parts = [(owners, pooled.cpu()) for owners, pooled in pooled_windows(encoder, bank, seconds, batch_size=64)]
        owners, features = torch.cat([o for o, _ in parts]), torch.cat([f for _, f in parts])
        if path is not None:
            from tunespace.io import atomic_path

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save({"features": features, "owners": owners}, tmp)
        return cls(features, owners, len(bank.ids))

    @torch.no_grad()
    def track_vectors(self, encoder: AudioEncoder) -> np.ndarray:
        """(n_tracks, embed_dim) L2-normalised: the mean of each track's window embeddings through the encoder's
        head, as `embed_tracks` computes them from the audio."""
        device = next(encoder.parameters()).device
        chunks = ((self.owners[start:start + 4096], self.features[start:start + 4096].to(device))
                  for start in range(0, len(self.features), 4096))
        return mean_window_embeddings(encoder, chunks, len(self.counts))

    def draw(self, tracks: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """(n, width): one window of each track, chosen at random."""
        tracks = torch.from_numpy(np.asarray(tracks, dtype=np.int64))
        counts = self.counts[tracks].numpy()
        picks = torch.from_numpy(rng.integers(0, counts))
        return self.features[self.starts[tracks] + picks]


@dataclass
class HTCLBatch:
    """Audio comes as (waveforms, lengths), or under `tune: head` as (n, width) pooled trunk features."""

    semantic_audio: AudioInput | None = None
    semantic_texts: list[str] | None = None
    semantic_weights: torch.Tensor | None = None
    preference_audio: AudioInput | None = None  # anchors then positives, stacked
    positive_tracks: torch.Tensor | None = None  # with catalogue negatives: the positives' and the draws' track ids
    negative_audio: AudioInput | None = None
    negative_tracks: torch.Tensor | None = None
    positive_bias: torch.Tensor | None = None  # and the popularity correction of each as a candidate
    negative_bias: torch.Tensor | None = None
    preference_weights: torch.Tensor | None = None
    profile_size: int = 0  # > 0: each anchor is this many clips (a listener's profile), embedded as their mean
    # the listener source: the whole drawable catalogue (one window per track), each listener's profile and held-out
    # tracks as rows of it, and every candidate's log(1 + train plays)
    catalogue_audio: AudioInput | None = None
    catalogue_log_popularity: torch.Tensor | None = None
    profile_rows: torch.Tensor | None = None
    profile_owner: torch.Tensor | None = None
    positive_rows: torch.Tensor | None = None
    positive_owner: torch.Tensor | None = None
    listeners: int = 0


class HTCL(nn.Module):
    """The two towers plus the loss modules; `forward(batch)` returns the named loss terms of one step."""

    def __init__(self, config: HTCLConfig, text: TextEncoder | None = None) -> None:
        super().__init__()
        self.config = config
        self.audio = AudioEncoder(config.audio)
        self.text = text if text is not None else TextEncoder(config.text)
        self.semantic_loss = InfoNCE()
        self.preference_loss: nn.Module
        if config.stage.listener_objective:
            self.preference_loss = ListenerSoftmax(config.stage.popularity_correction, config.stage.learn_popularity)
        else:
            self.preference_loss = CatalogueSoftmax() if config.stage.catalogue_negatives else InfoNCE()
        self.anchor_loss = AnchorDistillation()
        self.reference: AudioEncoder | None = None
        self.checkpoint_excludes: tuple[str, ...] = ("reference.",) + (("text.backbone.",) if config.text.frozen
                                                                       else ())

    def freeze_reference(self) -> None:
        """Keep a frozen copy of the current (stage-1) audio encoder for the distillation anchor."""
        self.reference = copy.deepcopy(self.audio).eval().requires_grad_(False)

    def forward(self, batch: HTCLBatch) -> dict[str, torch.Tensor]:
        stage = self.config.stage
        device = next(self.audio.parameters()).device
        total = torch.zeros((), device=device)
        terms: dict[str, torch.Tensor] = {}
        if batch.semantic_audio is not None and stage.semantic_weight > 0:
            semantic = self.semantic_loss(_embed(self.audio, batch.semantic_audio, device),
                                          self.text(batch.semantic_texts),
                                          batch.semantic_weights.to(device))
            total = total + stage.semantic_weight * semantic["loss"]
            terms.update({f"semantic_{k}": v for k, v in semantic.items()})
        if batch.catalogue_audio is not None:
            embedded = _embed(self.audio, batch.catalogue_audio, device)
            preference = self.preference_loss(
                embedded, batch.profile_rows.to(device), batch.profile_owner.to(device),
                batch.positive_rows.to(device), batch.positive_owner.to(device), batch.listeners,
                batch.catalogue_log_popularity.to(device), batch.preference_weights.to(device))
            total = total + preference["loss"]
            terms.update({f"preference_{k}": v for k, v in preference.items()})
            if stage.anchor_weight > 0:
                total = total + stage.anchor_weight * self._anchor(embedded, batch.catalogue_audio, device, terms)
        if batch.preference_audio is not None:
            embedded = _embed(self.audio, batch.preference_audio, device)
            rows = len(embedded) // ((batch.profile_size or 1) + 1)
            anchors, positives = embedded[:-rows], embedded[-rows:]
            if batch.profile_size:  # a listener is the mean of their tracks' unit vectors, as content KNN sees them
                anchors = F.normalize(anchors, dim=-1).view(rows, batch.profile_size, -1).mean(dim=1)
            weights = batch.preference_weights.to(device)
            if batch.negative_audio is not None:
                negatives = _embed(self.audio, batch.negative_audio, device)
                preference = self.preference_loss(anchors, positives, negatives, batch.positive_tracks,
                                                  batch.negative_tracks, weights, batch.positive_bias,
                                                  batch.negative_bias)
            else:
                preference = self.preference_loss(anchors, positives, weights)
            total = total + preference["loss"]
            terms.update({f"preference_{k}": v for k, v in preference.items()})
            if stage.anchor_weight > 0:
                total = total + stage.anchor_weight * self._anchor(embedded, batch.preference_audio, device, terms)
        terms["loss"] = total
        return terms

    def _anchor(self, embedded: torch.Tensor, audio: AudioInput, device: torch.device,
                terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The distillation of `embedded` to the frozen stage-1 embeddings of the same `audio`; adds its terms."""
        if self.reference is None:
            raise ConfigError("anchor_weight > 0 needs a stage-1 reference (freeze_reference)")
        with torch.no_grad():
            reference = _embed(self.reference, audio, device)
        anchor = self.anchor_loss(embedded, reference)
        terms.update({f"anchor_{k}": v for k, v in anchor.items()})
        return anchor["loss"]


def _embed(encoder: AudioEncoder, audio: AudioInput, device: torch.device) -> torch.Tensor:
    if isinstance(audio, torch.Tensor):
        return encoder.head(audio.to(device))
    waveforms, lengths = (t.to(device) for t in audio)
    return encoder(waveforms, lengths)


class BatchMaker:
    """Draws step s's global batch from a generator seeded by (seed, s) and returns this rank's slice, so every
    rank agrees on the batch, a resumed run sees the same data, and 1 or N processes train on the same pairs."""

    def __init__(self, bank: AudioBank, config: HTCLConfig, semantic: list[PairSource],
                 preference: list[PairSource], context: DistributedContext | None = None,
                 features: TrunkFeatures | None = None, train_plays: np.ndarray | None = None,
                 held_out: np.ndarray | None = None) -> None:
        """`train_plays`: plays per track (bank order) in the train interactions; catalogue draws come from the
        tracks with at least one (a track nobody played before the cutoff would only ever be a negative, and the
        encoder would learn to push new tracks away), and the popularity correction reads it. `held_out`: bool per
        track, never drawn from the catalogue (the pair sources exclude them themselves, see `make_stage`)."""
        self.bank, self.config = bank, config
        self.semantic, self.preference = semantic, preference
        self.context = context or DistributedContext()
        self.features = features
        plays = np.ones(len(bank.ids)) if train_plays is None else np.asarray(train_plays, dtype=np.float64)
        self.held_out = np.zeros(len(bank.ids), dtype=bool) if held_out is None else np.asarray(held_out, dtype=bool)
        self.drawable = np.flatnonzero((plays > 0) & ~self.held_out)
        if config.stage.catalogue_negatives % self.context.world_size:
            raise ConfigError(f"stage.catalogue_negatives={config.stage.catalogue_negatives} does not split evenly "
                              f"over {self.context.world_size} processes; use a multiple of "
                              f"{self.context.world_size}")
        if self.config.stage.catalogue_negatives and len(self.drawable) == 0:
            raise ConfigError("catalogue_negatives > 0, but no track outside the held-out set was played before "
                              "the cutoff")
        self.bias = torch.from_numpy(config.stage.popularity_correction * np.log1p(plays)).float()
        self.listener = config.stage.listener_objective
        if self.listener and features is None:
            raise ConfigError("the listener source needs the trunk's cached window features (tune: head)")
        self.row_of = np.full(len(bank.ids), -1, dtype=np.int64)  # track index -> row among the drawable tracks
        self.row_of[self.drawable] = np.arange(len(self.drawable))
        self.log_popularity = torch.from_numpy(np.log1p(plays[self.drawable])).float()

    def _audio(self, tracks: np.ndarray, rng: np.random.Generator, rows: slice | np.ndarray) -> AudioInput:
        """This rank's `rows` of the audio of `tracks`: random crops, or random windows' trunk features."""
        if self.features is not None:
            return self.features.draw(tracks, rng)[rows]
        waveforms, lengths = self.bank.crops(tracks, self.config.stage.crop_seconds, rng)
        return waveforms[rows], lengths[rows]

    def _slice(self, count: int) -> slice:
        """This rank's equal share of `count` rows: an uneven split would drop rows and weigh the ranks unequally."""
        if count % self.context.world_size:
            raise ConfigError(f"a step's batch of {count} rows (train.batch_size={self.config.train.batch_size}, fewer "
                              f"when a source has fewer pairs or listeners) does not split evenly over "
                              f"{self.context.world_size} processes")
        per_rank = count // self.context.world_size
        return slice(self.context.rank * per_rank, (self.context.rank + 1) * per_rank)

    def __call__(self, step: int) -> HTCLBatch:
        rng = np.random.default_rng([self.config.train.seed, step])
        batch = HTCLBatch()
        n = self.config.train.batch_size
        if self.semantic and self.config.stage.semantic_weight > 0:
            pairs = sample_mixed(self.semantic, rng, n)
            part = self._slice(len(pairs.anchors))
            batch.semantic_audio = self._audio(pairs.anchors, rng, part)
            batch.semantic_texts = list(pairs.positives)[part]
            batch.semantic_weights = torch.from_numpy(pairs.weights[part])
        if self.listener:
            self._listeners(batch, rng, n)
        elif self.preference:
            pairs = sample_mixed(self.preference, rng, n)
            count = len(pairs.anchors)
            size = pairs.anchors.shape[1] if pairs.anchors.ndim == 2 else 1
            part = self._slice(count)
            mine = np.arange(count)[part]
            rows = np.concatenate([(mine[:, None] * size + np.arange(size)).reshape(-1), count * size + mine])
            tracks = np.concatenate([pairs.anchors.reshape(-1), np.asarray(pairs.positives)])
            batch.preference_audio = self._audio(tracks, rng, rows)  # this rank's anchors, then its positives
            batch.profile_size = size if pairs.anchors.ndim == 2 else 0
            batch.preference_weights = torch.from_numpy(pairs.weights[part])
            draws = self.config.stage.catalogue_negatives
            if draws:  # drawn after everything else, so the other draws of a step stay what they were
                negatives = self.drawable[rng.integers(0, len(self.drawable), draws)]
                batch.positive_tracks = torch.from_numpy(np.asarray(pairs.positives, dtype=np.int64)[part])
                mine = self._slice(draws)
                batch.negative_audio = self._audio(negatives, rng, mine)
                batch.negative_tracks = torch.from_numpy(negatives[mine])
                batch.positive_bias = self.bias[batch.positive_tracks]
                batch.negative_bias = self.bias[batch.negative_tracks]
        return batch


    def _listeners(self, batch: HTCLBatch, rng: np.random.Generator, n: int) -> None:
        """The listener source's part of a batch: this rank's listeners, and every drawable track's audio (one random
        window each) as the candidates, the same on every rank."""
        listeners = self.preference[0].sample(rng, n)
        mine = listeners.rows(self._slice(listeners.listeners))
        profile_rows, positive_rows = self.row_of[mine.profile_tracks], self.row_of[mine.positive_tracks]
        if (profile_rows < 0).any() or (positive_rows < 0).any():
            raise ConfigError("a listener's track is not among the drawable tracks (played before the cutoff, not "
                              "held out); the listener source and the catalogue disagree")
        batch.catalogue_audio = self.features.draw(self.drawable, rng)
        batch.catalogue_log_popularity = self.log_popularity
        batch.profile_rows, batch.positive_rows = torch.from_numpy(profile_rows), torch.from_numpy(positive_rows)
        batch.profile_owner = torch.from_numpy(mine.profile_owner)
        batch.positive_owner = torch.from_numpy(mine.positive_owner)
        batch.listeners = mine.listeners
        batch.preference_weights = torch.from_numpy(mine.weights)


def pair_sources(specs: dict[str, dict[str, Any]], context: PairContext) -> list[PairSource]:
    return [make_pair_source(name, context, **dict(options or {})) for name, options in specs.items()]


HOLDOUT_FILE = "holdout.json"
HOLDOUT_PARTS = ("validation", "test")


@dataclass(frozen=True)
class Holdout:
    """The tracks no HTCL stage trains on (neither their audio nor their texts), by id, in two fixed halves:
    `validation` (semantic figures used to choose among runs) and `test` (semantic figures only reported).

    Drawn once per corpus: a permutation of the sorted track ids seeded by `seed` (the config's `holdout_seed`, not
    the training seed, so `--set train.seed=N` trains on the same tracks and tests on the same ones); the first
    round(share * n) are held out, and of those the first half (rounded down) is the validation half."""

    seed: int
    share: float
    validation: tuple[str, ...]  # sorted track ids
    test: tuple[str, ...]

    @classmethod
    def draw(cls, track_ids: Iterable[str], share: float, seed: int) -> Holdout:
        ids = np.sort(np.asarray([str(t) for t in track_ids], dtype=object))
        if len(set(ids)) != len(ids):
            raise ConfigError("track ids are not unique: the held-out set is defined by id")
        held = ids[np.random.default_rng([seed, 7]).permutation(len(ids))[: int(round(share * len(ids)))]]
        if len(held) < 2:
            raise ConfigError(f"holdout_share={share} of {len(ids)} tracks holds out {len(held)}; the semantic "
                              "validation and test halves need at least one track each")
        half = len(held) // 2
        return cls(int(seed), float(share), tuple(sorted(held[:half])), tuple(sorted(held[half:])))

    @property
    def tracks(self) -> tuple[str, ...]:
        return tuple(sorted(self.validation + self.test))

    def mask(self, track_ids: Iterable[str], part: str = "all") -> np.ndarray:
        """Bool per track id (in the order given): held out (`all`), or in the `validation` / `test` half."""
        if part not in ("all", *HOLDOUT_PARTS):
            raise ValueError(f"part must be all, validation or test, got {part!r}")
        chosen = set(self.tracks if part == "all" else getattr(self, part))
        return np.array([str(t) in chosen for t in track_ids], dtype=bool)

    def save(self, folder: str | Path) -> Path:
        import json

        from tunespace.io import write_text

        path = Path(folder) / HOLDOUT_FILE
        write_text(json.dumps({"seed": self.seed, "share": self.share, "tracks": list(self.tracks),
                               "validation": list(self.validation), "test": list(self.test)}, indent=1), path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Holdout:
        import json

        path = Path(folder) / HOLDOUT_FILE
        if not path.exists():
            raise ConfigError(f"{path}: missing; the run's held-out tracks cannot be checked (runs made before the "
                              "held-out set was fixed per corpus drew it from train.seed: retrain them)")
        values = json.loads(path.read_text(encoding="utf-8"))
        return cls(int(values["seed"]), float(values["share"]), tuple(values["validation"]), tuple(values["test"]))

    def require_same(self, other: Holdout, mine: str, theirs: str) -> None:
        """Raise a ConfigError naming both sides unless `other` holds out the same tracks in the same halves."""
        if (set(self.validation), set(self.test)) == (set(other.validation), set(other.test)):
            return
        differ = sorted(set(self.tracks) ^ set(other.tracks))
        detail = (f"{len(differ)} track(s) held out by one only, e.g. {', '.join(differ[:3])}" if differ
                  else "the same tracks in other validation/test halves")
        raise ConfigError(f"{mine} (holdout_seed {self.seed}, share {self.share}) and {theirs} (holdout_seed "
                          f"{other.seed}, share {other.share}) hold out different tracks: {detail}. A run's "
                          "semantic figures are only valid on the tracks it never trained on; use the same corpus, "
                          "holdout_share and holdout_seed")


def check_run_holdout(folder: str | Path, holdout: Holdout, what: str) -> None:
    """Refuse a run whose stored held-out set (folder/holdout.json) differs from `holdout` (described by `what`)."""
    Holdout.load(folder).require_same(holdout, str(Path(folder) / HOLDOUT_FILE), what)


@torch.no_grad()
def embed_tracks(model: HTCL, bank: AudioBank, seconds: float, batch_size: int = 32,
                 indices: np.ndarray | None = None) -> np.ndarray:
    """(n, embed_dim) L2-normalised track embeddings: the mean of the embeddings of the track's windows."""
    model.eval()
    count = len(bank.ids) if indices is None else len(indices)
    return mean_window_embeddings(model.audio, pooled_windows(model.audio, bank, seconds, batch_size, indices),
                                  count)


@torch.no_grad()
def embed_texts(model: HTCL, texts: list[str], batch_size: int = 256) -> np.ndarray:
    model.eval()
    parts = [torch.nn.functional.normalize(model.text(texts[i:i + batch_size]), dim=-1).cpu()
             for i in range(0, len(texts), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.config.text.embed_dim), dtype=np.float32)


@dataclass
class Corpus:
    """What HTCL reads from a data-model folder: tracks (index order), captions, the train split, playlists."""

    root: Path
    tracks: pd.DataFrame
    captions: pd.DataFrame | None
    train: pd.DataFrame
    playlists: pd.DataFrame | None
    playlist_sessions: pd.DataFrame | None
    cutoff: pd.Timestamp

    @classmethod
    def load(cls, folder: str | Path, cutoff: str) -> Corpus:
        from tunespace.data.dataset import Dataset
        from tunespace.data.splits import SplitConfig, temporal_split

        folder = Path(folder)
        dataset = Dataset.load(folder)
        if dataset.tracks is None or "audio_path" not in dataset.tracks:
            raise ConfigError(f"{folder}: HTCL needs tracks.parquet with an audio_path column")

        def optional(name: str) -> pd.DataFrame | None:
            return pd.read_parquet(folder / name) if (folder / name).exists() else None

        split = temporal_split(dataset.interactions, SplitConfig(cutoff=cutoff))
        return cls(folder, dataset.tracks.reset_index(drop=True), optional("captions.parquet"), split.train,
                   dataset.playlists, optional("playlist_sessions.parquet"), pd.Timestamp(cutoff, tz="UTC"))

    def train_plays(self) -> np.ndarray:
        """Train interactions per track, in track order (0 for a track first played after the cutoff)."""
        ids = self.tracks["track_id"].astype(str)
        return self.train["track_id"].astype(str).value_counts().reindex(ids).fillna(0).to_numpy()

    def holdout(self, config: HTCLConfig) -> Holdout:
        """The held-out tracks of this corpus under `config`'s holdout_share and holdout_seed."""
        return Holdout.draw(self.tracks["track_id"].astype(str), config.holdout_share, config.holdout_seed)

    def pair_context(self, allowed: np.ndarray | None = None) -> PairContext:
        return PairContext(self.tracks, self.captions, self.train, self.playlists, self.playlist_sessions,
                           self.cutoff, allowed)


def build_model(config: HTCLConfig, device: torch.device, checkpoint: str | Path | None = None,
                new_parts: tuple[str, ...] = ()) -> HTCL:
    """The model, with the weights of `checkpoint` if given; parameters under the `new_parts` prefixes may be
    absent from it (a stage-2 adapter starting from a stage-1 run) and keep their initial values."""
    model = HTCL(config)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        unexpected = [k for k in unexpected if not k.startswith(model.checkpoint_excludes)]
        missing = [k for k in missing if not k.startswith(model.checkpoint_excludes + new_parts)]
        if unexpected or missing:
            raise ConfigError(f"{checkpoint}: does not fit this config (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})")
    return model.to(device)


def save_config(config: HTCLConfig, path: Path) -> None:
    from tunespace.io import write_text

    write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), path)


def make_stage(corpus: Corpus, config: HTCLConfig, context: DistributedContext, cache: Path | None,
               init_from: str | Path | None = None) -> tuple[HTCL, BatchMaker]:
    """Model and batches of one stage. No held-out track's audio or text is ever in a batch: semantic pairs skip
    them, preference pairs skip every pair (session, playlist) or listener's track (history: profiles and positives)
    that is one, and catalogue draws skip them. Preference pairs come from the train interactions (and playlists
    made before the cutoff) only. When the `init_from` run's folder holds a holdout.json it must equal this corpus's
    held-out set (the CLI requires the file). Under `tune: head` the trunk of the `init_from` run is frozen and its
    window features computed (or read from `cache`) up front."""
    if config.stage.tune == "head" and init_from is None:
        raise ConfigError("stage.tune=head freezes a trained trunk, so it needs a run to start from (--init)")
    torch.manual_seed(config.train.seed)
    bank = AudioBank(corpus.tracks, corpus.root, config.audio.sample_rate, cache)
    holdout = corpus.holdout(config)
    if init_from is not None and (Path(init_from).parent / HOLDOUT_FILE).exists():
        check_run_holdout(Path(init_from).parent, holdout, f"the held-out set of {corpus.root}")
    held = holdout.mask(corpus.tracks["track_id"].astype(str))
    semantic = pair_sources(config.stage.semantic_sources, corpus.pair_context(~held)) \
        if config.stage.semantic_weight > 0 else []
    preference = pair_sources(config.stage.preference_sources, corpus.pair_context(~held))
    model = build_model(config, context.device, init_from, new_parts=("audio.adapter.", "preference_loss."))
    texts = [text for source in semantic for text in source.texts]
    model.text.warm_cache(texts, Path(cache) / f"text-{model.text.identity}.pt" if cache else None)
    if config.stage.anchor_weight > 0:
        model.freeze_reference()
    features = None
    if config.stage.tune == "head":
        for parameter in model.audio.trunk_parameters():
            parameter.requires_grad_(False)
        features = TrunkFeatures.compute(model.audio, bank, config.stage.crop_seconds, cache)
    return model, BatchMaker(bank, config, semantic, preference, context, features, corpus.train_plays(), held)

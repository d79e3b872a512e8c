"""The pair-source study of Alonso-Jimenez et al. (ICASSP 2023): the audio tower pretrained from scratch with one
anchor/positive source at a time (artist, album, three playlist strategies), each judged on tagging and similarity.

Everything is measured on HTCL's held-out tracks (`holdout_share` of the catalogue, never in a pair): the probe and
fine-tuning fit on the other tracks' tags, choose on the validation half, and score the test half once. Similarity
asks each held-out track to rank the catalogue against the tracks that share a playlist with it among the
playlists made after the cutoff (the pairs came from earlier ones), and against the tracks of the same dance type
and region (a judgement no source was built from).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from tunespace.contrastive.htcl import (
    AudioBank,
    ConfigError,
    Corpus,
    HTCLConfig,
    load_config,
    mean_window_embeddings,
    pooled_windows,
)
from tunespace.contrastive.pairs import PAIR_SOURCE_DEFAULTS
from tunespace.evaluation.similarity import shared_group_relevance

log = logging.getLogger(__name__)

STUDY_SOURCES = ("artist", "album", "playlist-random", "playlist-top", "playlist-emb")
BASELINE_SOURCE = "artist"  # the earlier works' editorial pairs, the row every other source is tested against
SIMILARITY_JUDGEMENTS = ("playlist", "dance+region")


def study_config(source: str, config: str | Path = "pairs", overrides: dict[str, Any] | None = None) -> HTCLConfig:
    """The audio-only pretraining config of one source: `config` (default `pairs.yaml`) with that source as the only
    pair source and no text loss, so every source trains with the same tower, steps, batch and seed."""
    if source not in PAIR_SOURCE_DEFAULTS or source not in STUDY_SOURCES:
        raise ConfigError(f"unknown study source {source!r}; choose from {', '.join(STUDY_SOURCES)}")
    values = {"stage.semantic_sources": {}, "stage.semantic_weight": 0.0, "stage.tune": "all",
              "stage.preference_sources": {source: dict(PAIR_SOURCE_DEFAULTS[source])}, **(overrides or {})}
    return load_config(config, values)


@dataclass
class StudyData:
    """The corpus, its held-out halves as row indices, the tag matrix and the similarity judgements."""

    corpus: Corpus
    train: np.ndarray  # rows never held out: probes and fine-tuning fit here
    validation: np.ndarray
    test: np.ndarray
    tags: tuple[str, ...]
    truth: np.ndarray  # (n_tracks, n_tags) bool
    groups: dict[str, sp.csr_matrix]  # judgement -> (n_groups, n_tracks)

    @classmethod
    def load(cls, folder: str | Path, config: HTCLConfig, min_tag_count: int = 20) -> StudyData:
        corpus = Corpus.load(folder, config.cutoff)
        ids = corpus.tracks["track_id"].astype(str)
        holdout = corpus.holdout(config)
        validation = np.flatnonzero(holdout.mask(ids, "validation"))
        test = np.flatnonzero(holdout.mask(ids, "test"))
        train = np.flatnonzero(~holdout.mask(ids))
        tags, truth = tag_matrix(corpus.tracks, train, min_tag_count)
        groups = {"playlist": playlist_groups(corpus, after_cutoff=True),
                  "dance+region": label_groups(corpus.tracks, ("dance_type", "region"))}
        return cls(corpus, train, validation, test, tags, truth, groups)

    def queries(self, judgement: str, part: str) -> tuple[np.ndarray, sp.csr_matrix]:
        """The `part` tracks with at least one similar track under `judgement`, and their relevance rows."""
        rows = {"validation": self.validation, "test": self.test}[part]
        relevance = shared_group_relevance(self.groups[judgement], rows)
        keep = np.diff(relevance.indptr) > 0
        return rows[keep], relevance[keep]


def tag_matrix(tracks: pd.DataFrame, train: np.ndarray, min_count: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The `tags` column ("family:winds|tempo:fast") as a bool matrix over the tags with at least `min_count`
    training tracks (chosen on training rows only, as a tagging dataset fixes its vocabulary)."""
    if "tags" not in tracks:
        raise ConfigError("the pair study's tagging needs a tags column in tracks.parquet ('a|b|c' per track)")
    lists = [[tag for tag in str(value).split("|") if tag] for value in tracks["tags"].fillna("")]
    vocabulary = sorted({tag for tags in lists for tag in tags})
    column = {tag: j for j, tag in enumerate(vocabulary)}
    truth = np.zeros((len(tracks), len(vocabulary)), dtype=bool)
    for row, tags in enumerate(lists):
        truth[row, [column[tag] for tag in tags]] = True
    keep = truth[train].sum(axis=0) >= min_count
    if not keep.any():
        raise ConfigError(f"no tag has {min_count} training tracks; lower --min-tag-count")
    return tuple(np.asarray(vocabulary)[keep]), truth[:, keep]


def playlist_groups(corpus: Corpus, after_cutoff: bool) -> sp.csr_matrix:
    """(n_playlists, n_tracks) membership of the playlists made after (or before) the cutoff."""
    if corpus.playlists is None or corpus.playlist_sessions is None:
        raise ConfigError("the playlist similarity needs playlists.parquet and playlist_sessions.parquet (creation "
                          "times)")
    made = corpus.playlist_sessions.set_index("playlist_id")["timestamp"]
    chosen = made.index[(made >= corpus.cutoff) if after_cutoff else (made < corpus.cutoff)]
    rows = corpus.playlists[corpus.playlists["playlist_id"].isin(chosen)]
    index = pd.Index(corpus.tracks["track_id"].astype(str))
    tracks = index.get_indexer(rows["track_id"].astype(str))
    codes = pd.factorize(rows["playlist_id"].astype(str))[0]
    known = tracks >= 0
    return sp.csr_matrix((np.ones(int(known.sum()), dtype=np.float32), (codes[known], tracks[known])),
                         shape=(int(codes.max()) + 1 if len(codes) else 0, len(index)))


def label_groups(tracks: pd.DataFrame, columns: Sequence[str]) -> sp.csr_matrix:
    """(n_groups, n_tracks): one group per distinct combination of `columns`, for tracks where none is empty."""
    values = tracks[list(columns)].fillna("").astype(str)
    labelled = (values != "").all(axis=1).to_numpy()
    keys = values.agg("\x1f".join, axis=1)[labelled]
    codes = pd.factorize(keys)[0]
    return sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (codes, np.flatnonzero(labelled))),
                         shape=(int(codes.max()) + 1 if len(codes) else 0, len(tracks)))


class Tagger(nn.Module):
    """A pretrained audio tower with a linear tag head, fine-tuned whole with binary cross-entropy."""

    def __init__(self, audio: nn.Module, n_tags: int) -> None:
        super().__init__()
        self.audio = audio
        self.tags = nn.Linear(audio.config.embed_dim, n_tags)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        waveforms, lengths, truth = batch
        device = self.tags.weight.device
        logits = self.tags(self.audio(waveforms.to(device), lengths.to(device)))
        return {"loss": F.binary_cross_entropy_with_logits(logits, truth.to(device))}

    @torch.no_grad()
    def track_scores(self, bank: AudioBank, rows: np.ndarray, seconds: float, batch_size: int = 32) -> np.ndarray:
        """(len(rows), n_tags) logits of each track: the head on the mean of its windows' embeddings."""
        was_training = self.training
        self.eval()
        means = mean_window_embeddings(self.audio, pooled_windows(self.audio, bank, seconds, batch_size, rows),
                                       len(rows), unit=False)
        scores = self.tags(torch.from_numpy(means).to(self.tags.weight.device)).cpu().numpy()
        self.train(was_training)
        return scores


def tagging_batches(bank: AudioBank, truth: np.ndarray, rows: np.ndarray, batch_size: int, seconds: float,
                    seed: int) -> Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Step s's batch: random crops of training tracks drawn by a generator seeded by (seed, s), so a resumed
    fine-tuning sees the same data."""

    def make(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        chosen = rows[rng.integers(0, len(rows), batch_size)]
        waveforms, lengths = bank.crops(chosen, seconds, rng)
        return waveforms, lengths, torch.from_numpy(truth[chosen].astype(np.float32))

    return make


def write_json(path: Path, values: Any) -> None:
    from tunespace.io import write_text

    write_text(json.dumps(values, indent=1, default=float), path)


def aligned_vectors(embeddings: Any, tracks: pd.DataFrame, name: str) -> np.ndarray:
    """(n_tracks, dim) vectors in track order from an `ItemEmbeddings`; a track without one is an error."""
    from tunespace.data.catalog import IdMap
    from tunespace.errors import UnknownIdError

    try:
        return embeddings.aligned(IdMap(tracks["track_id"].astype(str).to_numpy(), name="track_id"))
    except UnknownIdError as error:
        raise ConfigError(f"{name}: {error}; the study compares representations on the same tracks") from error


def similarity_figures(name: str, vectors: np.ndarray, data: StudyData, part: str,
                       ks: Sequence[int] = (10, 50)) -> pd.DataFrame:
    """Per-query similarity metrics of one representation: a row per (judgement, query track)."""
    from tunespace.evaluation.similarity import similarity_per_query

    frames = []
    ids = data.corpus.tracks["track_id"].astype(str).to_numpy()
    for judgement in SIMILARITY_JUDGEMENTS:
        queries, relevance = data.queries(judgement, part)
        if len(queries) == 0:
            log.warning("no %s query with a similar track under %s; skipped", part, judgement)
            continue
        metrics = similarity_per_query(vectors, queries, relevance, ks)
        frames.append(pd.DataFrame({"representation": name, "judgement": judgement, "track_id": ids[queries],
                                    "relevant": np.diff(relevance.indptr), **metrics}))
    return pd.concat(frames, ignore_index=True)


def probe_scores(vectors: np.ndarray, data: StudyData) -> tuple[np.ndarray, float]:
    """Test-track logits of a linear multi-label probe (fit on train, L2 chosen on validation) and the L2."""
    from tunespace.evaluation.probe import multilabel_probe_on_split

    probe = multilabel_probe_on_split(vectors, data.truth, data.train, data.validation, data.test)
    return probe.scores, probe.l2


def finetune_tagging(run: Path, data: StudyData, out: Path, steps: int, batch_size: int, lr: float,
                     evaluate_every: int, seed: int = 0, device: str | torch.device = "cpu",
                     progress: Callable[[int, dict[str, float]], None] | None = None) -> np.ndarray:
    """Fine-tune the run's whole audio tower with a tag head on training tracks (the one training loop, resumable
    from out/last.pt); keep the weights of the best validation macro ROC-AUC (checked every `evaluate_every`
    steps, saved atomically to out/best.pt) and return the test-track logits of those weights."""
    from tunespace.contrastive.htcl import build_model
    from tunespace.contrastive.train import DistributedContext, TrainConfig, train_loop
    from tunespace.evaluation.tagging import tagging_metrics
    from tunespace.io import atomic_path

    config = load_config(run / "config.yaml")
    seconds = config.stage.crop_seconds
    model = build_model(config, torch.device("cpu"), run / "last.pt")
    tagger = Tagger(model.audio, len(data.tags)).to(device)
    bank = AudioBank(data.corpus.tracks, data.corpus.root, config.audio.sample_rate, data.corpus.root / ".cache")
    out.mkdir(parents=True, exist_ok=True)
    best_path, best_file = out / "best.pt", out / "best.json"
    best = json.loads(best_file.read_text()) if best_file.exists() else {"step": 0, "validation_macro_roc_auc": -1.0}

    def checkpoint(step: int, values: dict[str, float]) -> None:
        if progress is not None:
            progress(step, values)
        if step % evaluate_every and step != steps:
            return
        scores = tagger.track_scores(bank, data.validation, seconds)
        auc = tagging_metrics(scores, data.truth[data.validation]).macro_roc_auc
        log.info("fine-tuning %s: step %d, validation macro ROC-AUC %.4f", run.name, step, auc)
        if auc > best["validation_macro_roc_auc"]:
            best.update(step=step, validation_macro_roc_auc=auc)
            with atomic_path(best_path) as tmp:
                torch.save(tagger.state_dict(), tmp)
            write_json(best_file, best)

    train = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=max(1, steps // 10),
                        log_every=max(1, evaluate_every // 2), checkpoint_every=evaluate_every, seed=seed)
    make = tagging_batches(bank, data.truth, data.train, batch_size, seconds, seed)
    train_loop(tagger, make, train, out, DistributedContext(), resume=True, progress=checkpoint)
    if not best_path.exists():
        raise ConfigError(f"{out}: fine-tuning finished without a validation checkpoint; rerun without the folder")
    tagger.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    return tagger.track_scores(bank, data.test, seconds)


def tagging_table(scores: dict[tuple[str, str], np.ndarray], data: StudyData, baseline: str = BASELINE_SOURCE,
                  resamples: int = 1000) -> pd.DataFrame:
    """One row per (method, representation): test macro ROC-AUC and PR-AUC with bootstrap intervals over test
    tracks, and the paired bootstrap difference to `baseline` of the same method, Holm-corrected per method and
    metric. `scores[(method, representation)]` are the test tracks' logits."""
    from tunespace.evaluation.significance import holm
    from tunespace.evaluation.tagging import bootstrap_tagging, tagging_metrics

    truth = data.truth[data.test]
    rows = []
    for (method, name), values in scores.items():
        result = tagging_metrics(values, truth, data.tags)
        other = scores.get((method, baseline)) if name != baseline else None
        row = {"method": method, "representation": name, "macro_roc_auc": result.macro_roc_auc,
               "macro_pr_auc": result.macro_pr_auc, "tags": len(data.tags) - len(result.skipped),
               "test_tracks": len(truth),
               **bootstrap_tagging(values, truth, resamples, other=other)}
        rows.append(row)
    table = pd.DataFrame(rows)
    for metric in ("macro_roc_auc", "macro_pr_auc"):
        column = f"{metric}_p"
        table[f"{column}_holm"] = np.nan
        if column not in table:
            continue
        for _, group in table.groupby("method"):
            tested = group[column].notna()
            if tested.any():
                table.loc[group.index[tested], f"{column}_holm"] = holm(group.loc[tested, column].to_numpy())
    return table


def similarity_table(per_query: pd.DataFrame, baseline: str = BASELINE_SOURCE,
                     metrics: Sequence[str] = ("ndcg@10", "ndcg@50", "hit_rate@10", "hit_rate@50")) -> pd.DataFrame:
    """Means with 95% t-intervals per (judgement, representation), and paired tests over the same queries against
    `baseline` (t and Wilcoxon), Holm-corrected within each judgement and metric."""
    from tunespace.evaluation.significance import confidence_interval, holm, paired_test

    rows = []
    for (judgement, name), group in per_query.groupby(["judgement", "representation"], sort=False):
        reference = per_query[(per_query["judgement"] == judgement) & (per_query["representation"] == baseline)]
        reference = reference.set_index("track_id").reindex(group["track_id"])
        row: dict[str, Any] = {"judgement": judgement, "representation": name, "queries": len(group),
                               "mean_relevant": float(group["relevant"].mean())}
        for metric in metrics:
            interval = confidence_interval(group[metric].to_numpy())
            row[metric] = interval.mean
            row[f"{metric}_half_width"] = (interval.high - interval.low) / 2
            if name != baseline and reference[metric].notna().all():
                for method in ("t", "wilcoxon"):
                    test = paired_test(group[metric].to_numpy(), reference[metric].to_numpy(), method)
                    row[f"{metric}_difference"] = test.mean_difference
                    row[f"{metric}_{method}_p"] = test.p_value
        rows.append(row)
    table = pd.DataFrame(rows)
    for metric in metrics:
        for method in ("t", "wilcoxon"):
            column = f"{metric}_{method}_p"
            if column not in table:
                continue
            table[f"{column}_holm"] = np.nan
            for _, group in table.groupby("judgement"):
                tested = group[column].notna()
                if tested.any():
                    table.loc[group.index[tested], f"{column}_holm"] = holm(group.loc[tested, column].to_numpy())
    return table

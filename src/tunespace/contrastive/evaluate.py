"""Evaluate an HTCL run in both spaces.

Semantic space (held-out tracks, whose texts were never trained on): text-to-audio and audio-to-text retrieval
with chance levels, zero-shot tagging from tag prompts, and a linear probe of the instrument family.
Preference space: the run's track embeddings fed to the content recommenders on the temporal protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.contrastive.htcl import (HTCL, AudioBank, Corpus, TrunkFeatures, embed_texts, embed_tracks,
                                       holdout_tracks)
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.evaluation.probe import linear_probe
from tunespace.evaluation.retrieval import audio_to_text, retrieval_chance, text_to_audio
from tunespace.evaluation.tagging import zero_shot_tagging

logger = logging.getLogger(__name__)

# Tag families of the built-in corpus and how a listener would ask for them in words.
PROMPTS = {
    "family": "a tune played on {} instruments",
    "tempo": "a {} tune",
    "mode": "a tune in a {} key",
    "meter": "a tune in {} time",
    "dance": "a {}",
    "region": "a folk tune from {}",
    "country": "a folk song from {}",
    "genre": "a {} song",
}
MIN_TAG_POSITIVES = 5


def tag_prompt(tag: str) -> str:
    family, _, value = tag.partition(":")
    return PROMPTS.get(family, "{}").format(value.replace("_", " "))


@dataclass
class SemanticResult:
    text_to_audio: dict[str, float]
    audio_to_text: dict[str, float]
    chance_text_to_audio: dict[str, float]
    chance_audio_to_text: dict[str, float]
    tagging: dict[str, float]
    probe_accuracy: float
    probe_chance: float
    held_out_tracks: int

    def flat(self) -> dict[str, float]:
        row = {f"t2a_{k}": v for k, v in self.text_to_audio.items()}
        row.update({f"a2t_{k}": v for k, v in self.audio_to_text.items()})
        row.update({f"chance_t2a_{k}": v for k, v in self.chance_text_to_audio.items()})
        row.update({f"tagging_{k}": v for k, v in self.tagging.items()})
        row.update({"probe_family_accuracy": self.probe_accuracy, "probe_family_chance": self.probe_chance,
                    "held_out_tracks": self.held_out_tracks})
        return row


def semantic_evaluation(model: HTCL, bank: AudioBank, corpus: Corpus, vectors: np.ndarray,
                        languages: tuple[str, ...] = ("en",), min_tag_positives: int = MIN_TAG_POSITIVES
                        ) -> SemanticResult:
    """`vectors`: the run's embeddings of every track (bank order), reused for the held-out subset and probe."""
    config = model.config
    held = np.flatnonzero(holdout_tracks(len(corpus.tracks), config.holdout_share, config.train.seed))
    audio = vectors[held]
    if corpus.captions is None:
        raise ValueError(f"{corpus.root}: no captions.parquet, so no text-to-audio evaluation")
    position = pd.Series(np.arange(len(held)), index=corpus.tracks["track_id"].astype(str).to_numpy()[held])
    captions = corpus.captions[corpus.captions["language"].isin(languages)
                               & corpus.captions["track_id"].astype(str).isin(position.index)]
    groups = position.loc[captions["track_id"].astype(str)].to_numpy()
    texts = embed_texts(model, captions["text"].astype(str).tolist())
    per_track = np.bincount(groups, minlength=len(held))
    tags = corpus.tracks["tags"].fillna("").astype(str).str.split("|").to_numpy()[held]
    vocabulary = pd.Series([t for row in tags for t in row if t]).value_counts()
    vocabulary = vocabulary[(vocabulary >= min_tag_positives) & (vocabulary < len(held))].index.tolist()
    truth = np.array([[tag in set(row) for tag in vocabulary] for row in tags], dtype=bool)
    if vocabulary:
        prompts = embed_texts(model, [tag_prompt(t) for t in vocabulary])
        tagging = zero_shot_tagging(audio, prompts, truth, vocabulary).summary()
    else:
        logger.warning("no tag has %d+ positives among %d held-out tracks; zero-shot tagging skipped",
                       min_tag_positives, len(held))
        tagging = {name: float("nan") for name in ("macro_roc_auc", "macro_pr_auc", "micro_roc_auc", "micro_pr_auc")}
    families = corpus.tracks["instrument_family"].astype(str).to_numpy()
    probe = linear_probe(vectors, families, seed=0)
    return SemanticResult(
        text_to_audio=text_to_audio(texts, audio, groups), audio_to_text=audio_to_text(audio, texts, groups),
        chance_text_to_audio=retrieval_chance(len(held)),
        chance_audio_to_text=retrieval_chance(len(texts), per_track[per_track > 0]),
        tagging=tagging, probe_accuracy=probe.accuracy, probe_chance=probe.chance,
        held_out_tracks=len(held))


def track_embeddings(model: HTCL, bank: AudioBank, cache: Path | None = None) -> ItemEmbeddings:
    """Every track's embedding. A `tune: head` run reuses its trunk's cached window features when `cache` holds
    them (the same vectors, tested), so evaluating many head runs of one trunk costs one pass over the audio."""
    seconds = model.config.stage.crop_seconds
    if model.config.stage.tune == "head" and cache is not None:
        model.eval()
        vectors = TrunkFeatures.compute(model.audio, bank, seconds, cache).track_vectors(model.audio)
    else:
        vectors = embed_tracks(model, bank, seconds)
    return ItemEmbeddings(ids=bank.ids, vectors=vectors)


@dataclass
class PreferenceResult:
    table: pd.DataFrame  # HR/Recall/NDCG@50 of each (model, embedding set) with intervals
    cold: pd.DataFrame  # the same on the cold-item test pairs (tracks first played after the cutoff)
    tests: pd.DataFrame  # NDCG@50 of each set against the control, same model and part, paired over users


def preference_evaluation(corpus_dir: Path, cutoff: str, embeddings: dict[str, ItemEmbeddings],
                          models: tuple[str, ...] = ("knn",), seed: int = 42, control: str | None = None
                          ) -> PreferenceResult:
    """HR/Recall/NDCG@50 of content recommenders over each embedding set, temporal protocol, test users, and on the
    cold items (no train interactions: what only content can place); with a `control` (one of the embedding
    names), paired tests of every other set against it in each model."""
    from tunespace.data.dataset import Dataset
    from tunespace.data.splits import SplitConfig, temporal_split
    from tunespace.evaluation.benchmark import model_specs, run_benchmark
    from tunespace.evaluation.evaluate import compare_pairs
    from tunespace.reports.tables import results_frame

    if control is not None and control not in embeddings:
        raise ValueError(f"control {control!r} is not among the embedding sets ({', '.join(embeddings)})")
    dataset = Dataset.load(corpus_dir)
    split = temporal_split(dataset.interactions, SplitConfig(cutoff=cutoff, seed=seed))
    run = run_benchmark(split, model_specs(list(models), embeddings), ks=(50,), part="test", cold_part="cold_test")
    pairs = [(f"{model}[{name}]", f"{model}[{control}]") for model in models for name in embeddings
             if control is not None and name != control and f"{model}[{name}]" in run.results]
    tests = pd.DataFrame()
    if pairs:
        parts = [compare_pairs(run.results, pairs, "ndcg@50").assign(part="test")]
        if run.cold_results:
            parts.append(compare_pairs(run.cold_results, pairs, "ndcg@50").assign(part="cold_test"))
        tests = pd.concat(parts, ignore_index=True)
    cold = results_frame(run.cold_results) if run.cold_results else pd.DataFrame()
    return PreferenceResult(results_frame(run.results), cold, tests)

"""Evaluate an HTCL run in both spaces.

Semantic space (held-out tracks, never trained on): text-to-audio and audio-to-text retrieval with chance levels
and zero-shot tagging from tag prompts, on either half of the held-out set (`validation`: what runs are chosen on;
`test`: only reported), and a linear probe of the instrument family (reported with the test half).
Preference space: the run's track embeddings fed to the content recommenders on the temporal protocol, per split
seed (the seeded partition of the test-window users into validation and test users), see `preference_results`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.contrastive.htcl import HTCL, AudioBank, Corpus, Holdout, TrunkFeatures, embed_texts, embed_tracks
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.evaluation.evaluate import EvaluationResult
from tunespace.evaluation.probe import linear_probe
from tunespace.evaluation.retrieval import audio_to_text, retrieval_chance, text_to_audio
from tunespace.evaluation.tagging import zero_shot_tagging
from tunespace.reports.tables import HEADLINE

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
                        languages: tuple[str, ...] = ("en",), min_tag_positives: int = MIN_TAG_POSITIVES,
                        part: str = "test", holdout: Holdout | None = None, probe: bool = True) -> SemanticResult:
    """`vectors`: the run's embeddings of every track (bank order), reused for the held-out subset and probe.
    `part`: the held-out half to retrieve and tag among (`validation`, `test`, or `all`); `holdout`: default the
    corpus's under the model's config. `probe=False` skips the probe (NaN), which reads every track's vector."""
    holdout = holdout or corpus.holdout(model.config)
    held = np.flatnonzero(holdout.mask(corpus.tracks["track_id"].astype(str), part))
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
    if probe:
        probed = linear_probe(vectors, corpus.tracks["instrument_family"].astype(str).to_numpy(), seed=0)
        probe_accuracy, probe_chance = probed.accuracy, probed.chance
    else:
        probe_accuracy = probe_chance = float("nan")
    return SemanticResult(
        text_to_audio=text_to_audio(texts, audio, groups), audio_to_text=audio_to_text(audio, texts, groups),
        chance_text_to_audio=retrieval_chance(len(held)),
        chance_audio_to_text=retrieval_chance(len(texts), per_track[per_track > 0]),
        tagging=tagging, probe_accuracy=probe_accuracy, probe_chance=probe_chance,
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


WARM_PARTS = ("validation", "test")
COLD_PARTS = {"validation": "cold_validation", "test": "cold_test"}


@dataclass
class SplitSeedResults:
    """Content recommenders over embedding sets, per split seed: `parts[part][seed]` maps each row label
    (`knn[run]`) to its result on the `part` users of that split seed (part: validation, test, cold_validation,
    cold_test): the `PerSplitSeed` mapping of `tunespace.evaluation.seeds`. A row is only in the parts it was asked
    for."""

    seeds: list[int]
    parts: dict[str, dict[int, dict[str, EvaluationResult]]]

    def labels(self, part: str) -> list[str]:
        first = next(iter(self.parts.get(part, {}).values()), {})
        return list(first)


def preference_results(corpus_dir: Path, cutoff: str, embeddings: dict[str, ItemEmbeddings],
                       models: tuple[str, ...] = ("knn",), split_seeds: tuple[int, ...] = (42,),
                       parts: dict[str, tuple[str, ...]] | None = None) -> SplitSeedResults:
    """HR/Recall/NDCG@50 of content recommenders over each embedding set on the temporal protocol, per split seed.

    Train is the same under every split seed (only the validation/test partition of the test-window users moves,
    `Split.repartitioned`), so a model that does not early-stop on validation pairs is fitted once and ranks every user
    it is asked about once; each split seed's parts are slices of that (`EvaluationResult.subset`: a user's metrics
    depend on their own ranking alone). Models that early-stop (`uses_validation`) are fitted once per split seed on
    its validation pairs, and their validation figures are optimistic. `parts` maps an embedding set's name to the
    parts it is evaluated on (`validation` and/or `test`, each with its cold part); default both for every set. A
    set asked only for validation never ranks a user who is a test user under every split seed."""
    from tunespace.data.dataset import Dataset
    from tunespace.data.splits import SplitConfig, temporal_split
    from tunespace.evaluation.benchmark import model_specs, run_benchmark
    from tunespace.recommenders import get_recommender

    if not split_seeds:
        raise ValueError("give at least one split seed")
    base = temporal_split(Dataset.load(corpus_dir).interactions, SplitConfig(cutoff=cutoff, seed=split_seeds[0]))
    splits = {seed: base.repartitioned(seed) for seed in split_seeds}
    names = (*WARM_PARTS, *COLD_PARTS.values())
    users = {name: {seed: set(split.part(name)["user_id"].astype(str)) for seed, split in splits.items()}
             for name in names}
    out: dict[str, dict[int, dict[str, EvaluationResult]]] = {name: {seed: {} for seed in split_seeds}
                                                              for name in names}
    for spec in model_specs(list(models), embeddings):
        asked = tuple((parts or {}).get(spec.backend, WARM_PARTS)) if spec.backend is not None else WARM_PARTS
        unknown = set(asked) - set(WARM_PARTS)
        if unknown:
            raise ValueError(f"{spec.backend}: unknown part(s) {sorted(unknown)}; choose from validation, test")
        needed = set().union(*(users[name][seed] for name in (*asked, *(COLD_PARTS[p] for p in asked))
                               for seed in split_seeds))
        per_seed = get_recommender(spec.name).uses_validation
        for seed in split_seeds if per_seed else split_seeds[:1]:
            run = run_benchmark(splits[seed].pooled(needed), [spec], ks=(50,), part="test", cold_part="cold_test")
            for target in ([seed] if per_seed else split_seeds):
                for part in asked:
                    out[part][target][spec.label] = run.results[spec.label].subset(users[part][target])
                    if spec.label in run.cold_results:
                        cold = COLD_PARTS[part]
                        out[cold][target][spec.label] = run.cold_results[spec.label].subset(users[cold][target])
    return SplitSeedResults(list(split_seeds), out)


def seed_table(results: SplitSeedResults, part: str, metrics: tuple[str, ...] = HEADLINE, level: float = 0.95
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per split seed) of one part, as `benchmark recsys` aggregates split seeds
    (`reports.study.split_seed_results_table`). Per split seed: model, split_seed, users, each metric's mean over
    users and its Student-t interval (`_low`, `_high`). Summary, per model: users, split_seeds, each metric's mean
    over split seeds of the per-split-seed means, `_low`/`_high` the mean interval bounds (that mean -+ the mean
    per-user half-width; with one split seed exactly the per-user interval), and `_split_sd`, the standard deviation
    over split seeds of the per-split-seed means (ddof 1; NaN with one)."""
    from tunespace.reports.study import split_seed_results_table
    from tunespace.reports.tables import results_frame

    per_seed = {seed: labels for seed, labels in results.parts.get(part, {}).items() if labels}
    if not per_seed:
        return pd.DataFrame(), pd.DataFrame()
    frames = [results_frame(labels, metrics, level).assign(split_seed=seed) for seed, labels in per_seed.items()]
    table = pd.concat(frames, ignore_index=True)
    table.insert(1, "split_seed", table.pop("split_seed"))
    return split_seed_results_table(per_seed, metrics, level), table


def paired_tests(results: SplitSeedResults, part: str, pairs: list[tuple[str, str]], metric: str = "ndcg@50"
                 ) -> pd.DataFrame:
    """Each (row, control row) pair on `metric`, as `benchmark recsys` tests over split seeds
    (`evaluation.seeds`): paired over users within each split seed (Holm over the pairs of that seed;
    `split_seed` = the seed), and, with two or more split seeds, across them (`split_seed` = "across"): paired over
    the users' values averaged over the split seeds in which each was a `part` user, Holm over the pairs, with the
    number of split seeds whose own difference has the same sign (`sign_agreement`)."""
    from tunespace.evaluation.seeds import compare_each_split_seed, compare_split_seeds

    per_seed = results.parts.get(part, {})
    labels = set(results.labels(part))
    pairs = [(a, b) for a, b in pairs if a in labels and b in labels]
    if not pairs or any(len(r[label].per_user) < 2 for r in per_seed.values() for pair in pairs for label in pair):
        return pd.DataFrame()
    frames = [compare_each_split_seed(per_seed, pairs, metric).astype({"split_seed": str})]
    if len(per_seed) >= 2:
        frames.append(compare_split_seeds(per_seed, pairs, metric).assign(split_seed="across"))
    return pd.concat(frames, ignore_index=True).assign(part=part)

"""Evaluate an HTCL run in both spaces.

Semantic space (held-out tracks, never trained on): text-to-audio and audio-to-text retrieval with chance levels
and zero-shot tagging from tag prompts, on either half of the held-out set (`validation`: what runs are chosen on;
`test`: only reported), and a linear probe of the instrument family (reported with the test half).
Preference space: the run's track embeddings fed to the content recommenders on the temporal protocol, per split
seed (the seeded partition of the test-window users into validation and test users), each raw and popularity-aware
("+pop", beta chosen on the validation users), beside the content-free popularity row, see `preference_results`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.contrastive.htcl import HTCL, AudioBank, Corpus, Holdout, TrunkFeatures, embed_texts, embed_tracks
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.evaluation.benchmark import popularity_label
from tunespace.evaluation.evaluate import EvaluationResult, evaluate
from tunespace.evaluation.popularity import POPULARITY_WEIGHTS, choose_weight, weight_grid
from tunespace.evaluation.probe import linear_probe
from tunespace.evaluation.retrieval import audio_to_text, retrieval_chance, text_to_audio
from tunespace.evaluation.tagging import zero_shot_tagging
from tunespace.recommenders import PopularityBlend, Recommender, get_recommender
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


POPULARITY_ROW = "popularity"
"""The content-free reference row (`recommenders.Popularity`) ranked beside every embedding set."""


@dataclass
class SplitSeedResults:
    """Content recommenders over embedding sets, per split seed: `parts[part][seed]` maps each row label
    (`knn[run]`, its popularity-aware `knn+pop[run]`, and `popularity`) to its result on the `part` users of that
    split seed (part: validation, test, cold_validation, cold_test): the `PerSplitSeed` mapping of
    `tunespace.evaluation.seeds`. A row is only in the parts it was asked for.

    `betas` maps each `+pop` row to its beta; `weights` is the table every beta was chosen from (set, model,
    beta, validation_ndcg@50, split_seeds, chosen), empty for rows whose beta was given."""

    seeds: list[int]
    parts: dict[str, dict[int, dict[str, EvaluationResult]]]
    betas: dict[str, float] = field(default_factory=dict)
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)

    def labels(self, part: str) -> list[str]:
        first = next(iter(self.parts.get(part, {}).values()), {})
        return list(first)


def preference_results(corpus_dir: Path, cutoff: str, embeddings: dict[str, ItemEmbeddings],
                       models: tuple[str, ...] = ("knn",), split_seeds: tuple[int, ...] = (42,),
                       parts: dict[str, tuple[str, ...]] | None = None, betas: Mapping[str, float] | None = None,
                       grid: Sequence[float] = POPULARITY_WEIGHTS, reference: bool = True) -> SplitSeedResults:
    """HR/Recall/NDCG@50 of content recommenders over each embedding set on the temporal protocol, per split seed,
    each raw (`knn[run]`) and popularity-aware (`knn+pop[run]`: the same fitted model's score + beta x the
    popularity z-score, `recommenders.blend.PopularityBlend`), plus the content-free `popularity` row when
    `reference`.

    Beta is chosen per (set, model) on the validation users alone (`evaluation.popularity.choose_weight` over
    `grid`, mean over split seeds), then applied unchanged to the test, cold_validation and cold_test users;
    `betas` gives it instead for `+pop` labels chosen earlier (a candidate's test figures after selection).
    Re-weighting is a re-score of the fitted model, never a refit.

    Train is the same under every split seed (only the validation/test partition of the test-window users moves,
    `Split.repartitioned`), so a model that does not early-stop on validation pairs is fitted once and ranks every user
    it is asked about once; each split seed's parts are slices of that (`EvaluationResult.subset`: a user's metrics
    depend on their own ranking alone). Models that early-stop (`uses_validation`) are fitted once per split seed on
    its validation pairs, and their validation figures are optimistic. `parts` maps an embedding set's name to the
    parts it is evaluated on (`validation` and/or `test`, each with its cold part); default both for every set. A
    set asked only for validation never ranks a user who is a test user under every split seed."""
    from tunespace.data.dataset import Dataset
    from tunespace.data.splits import SplitConfig, temporal_split
    from tunespace.evaluation.benchmark import model_specs

    if not split_seeds:
        raise ValueError("give at least one split seed")
    grid = weight_grid(grid)
    base = temporal_split(Dataset.load(corpus_dir).interactions, SplitConfig(cutoff=cutoff, seed=split_seeds[0]))
    splits = {seed: base.repartitioned(seed) for seed in split_seeds}
    names = (*WARM_PARTS, *COLD_PARTS.values())
    users = {name: {seed: set(split.part(name)["user_id"].astype(str)) for seed, split in splits.items()}
             for name in names}
    out = SplitSeedResults(list(split_seeds), {name: {seed: {} for seed in split_seeds} for name in names})
    pooled, train = base.pooled(), base.train_matrix()
    tables = []

    def slices(result: EvaluationResult, part: str, targets: list[int], label: str) -> None:
        for seed in targets:
            out.parts[part][seed][label] = result.subset(users[part][seed])

    def evaluated(model: Recommender, wanted: set[str], cold: bool, label: str) -> tuple[EvaluationResult,
                                                                                         EvaluationResult | None]:
        """`model` on the warm (and cold) pairs of the `wanted` users; None when none of them has cold pairs."""
        warm = evaluate(model, _of(pooled.test, wanted), ks=(50,), name=label)
        cold_truth = _of(pooled.cold_test, wanted)
        if not cold or cold_truth.empty:
            return warm, None
        return warm, evaluate(model.extended(pooled.items), cold_truth, ks=(50,), name=label)

    def record(model: Recommender, asked: tuple[str, ...], targets: list[int], label: str) -> None:
        wanted = set().union(*(users[name][seed] for name in (*asked, *(COLD_PARTS[p] for p in asked))
                               for seed in targets))
        warm, cold = evaluated(model, wanted, True, label)
        for part in asked:
            slices(warm, part, targets, label)
            if cold is not None:
                slices(cold, COLD_PARTS[part], targets, label)

    if reference:
        record(get_recommender(POPULARITY_ROW)().fit(train), WARM_PARTS, list(split_seeds), POPULARITY_ROW)
    for spec in model_specs(list(models), embeddings):
        asked = tuple((parts or {}).get(spec.backend, WARM_PARTS)) if spec.backend is not None else WARM_PARTS
        unknown = set(asked) - set(WARM_PARTS)
        if unknown:
            raise ValueError(f"{spec.backend}: unknown part(s) {sorted(unknown)}; choose from validation, test")
        pop = popularity_label(spec.label)
        if pop not in (betas or {}) and "validation" not in asked:
            raise ValueError(f"{spec.label}: beta of {pop} is chosen on validation users; ask for them or give it")
        per_seed = get_recommender(spec.name).uses_validation
        groups = [[seed] for seed in split_seeds] if per_seed else [list(split_seeds)]
        fitted = []
        for targets in groups:
            blend = PopularityBlend(base=spec.name, weight=0.0, embeddings=spec.embeddings, **spec.params)
            blend.fit(train, validation=splits[targets[0]].validation if per_seed else None)
            record(blend.base, asked, targets, spec.label)
            fitted.append((targets, blend))
        if pop in (betas or {}):
            beta = float((betas or {})[pop])
        else:  # every beta of the grid on the validation users only; beta 0 is the raw model
            figures: dict[float, dict[int, EvaluationResult]] = {}
            for value in grid:
                figures[value] = {}
                for targets, blend in fitted:
                    if value == 0:
                        figures[value].update({seed: out.parts["validation"][seed][spec.label] for seed in targets})
                        continue
                    wanted = set().union(*(users["validation"][seed] for seed in targets))
                    warm, _ = evaluated(blend.with_weight(value), wanted, False, pop)
                    figures[value].update({seed: warm.subset(users["validation"][seed]) for seed in targets})
            choice = choose_weight(figures)
            beta = choice.beta
            tables.append(choice.table.assign(set=spec.backend, model=spec.name))
        out.betas[pop] = beta
        for targets, blend in fitted:
            record(blend.with_weight(beta), asked, targets, pop)
    if tables:
        columns = ["set", "model", "beta", "validation_ndcg@50", "split_seeds", "chosen"]
        out.weights = pd.concat(tables, ignore_index=True)[columns]
    return out


def _of(truth: pd.DataFrame, wanted: set[str]) -> pd.DataFrame:
    return truth[truth["user_id"].astype(str).isin(wanted)]


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


def comparison_pairs(models: Sequence[str], control: str, selected: str | None, stage1: str | None,
                     fixed: Sequence[str], others: Sequence[str] = ()) -> dict[str, list[tuple[str, str]]]:
    """The (row, baseline) pairs `htcl evaluate` tests, per family: "reported" (Holm-corrected together) and
    "information only" (the candidates not selected, under --test-all-runs). For each content model m:
    the selected candidate S as m+pop[S] against m+pop[control], m+pop[stage1] and `popularity`, and raw m[S]
    against m[control]; every fixed arm X (besides the control) as m+pop[X] against m+pop[control] and m[X]
    against m[control]; every other candidate C likewise, as information only. Pairs of a set with itself are
    left out."""

    def against_control(names: Sequence[str]) -> list[tuple[str, str]]:
        return [pair for name in names if name != control for m in models
                for pair in ((popularity_label(f"{m}[{name}]"), popularity_label(f"{m}[{control}]")),
                             (f"{m}[{name}]", f"{m}[{control}]"))]

    reported: list[tuple[str, str]] = []
    if selected is not None:
        for m in models:
            aware = popularity_label(f"{m}[{selected}]")
            baselines = [popularity_label(f"{m}[{name}]") for name in (control, stage1) if name not in (None, selected)]
            reported += [(aware, baseline) for baseline in baselines] + [(aware, POPULARITY_ROW)]
            if selected != control:
                reported.append((f"{m}[{selected}]", f"{m}[{control}]"))
    reported += against_control([name for name in fixed if name != selected])
    return {"reported": list(dict.fromkeys(reported)), "information only": against_control(others)}

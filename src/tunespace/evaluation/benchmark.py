"""Run several recommenders on one split and collect their evaluation results: the body of `benchmark recsys`.

Each `BenchmarkRun` also records what shaped its numbers: every row's resolved parameters (defaults included), the
epochs a trained model ran and the epoch it kept, and how many cold items each row could place. `run_seeds` repeats
a run over training seeds; `tunespace.evaluation.seeds` repeats it over split seeds (validation/test partitions).

Popularity-aware rows ("+pop", `popularity_specs`): a content row's fitted model re-scored as content score + beta x
the popularity z-score (`recommenders.blend.PopularityBlend`), never refitted. Beta must be chosen on validation
users over every split seed and training seed, so a run here only evaluates every beta of the grid
(`BenchmarkRun.popularity`); `tunespace.evaluation.seeds.run_split_seeds` chooses it and makes the rows.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.splits import Split
from tunespace.errors import TunespaceError
from tunespace.evaluation.evaluate import DEFAULT_KS, EvaluationResult, evaluate
from tunespace.evaluation.popularity import POPULARITY_WEIGHTS, weight_grid
from tunespace.recommenders import RECOMMENDERS, PopularityBlend, Recommender, get_recommender

logger = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    """One row of a benchmark: a registered recommender, its parameters and, for content models, embeddings."""

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    embeddings: ItemEmbeddings | None = None
    backend: str | None = None  # the embedding set's label, for content models
    popularity_of: str | None = None  # a "+pop" row: the label of the content row whose fitted model it re-scores

    @property
    def family(self) -> str:
        """The model a row belongs to: `shallow` for shallow[mfcc] and for shallow-random alike."""
        return base_of_random_init(self.name) or self.name

    @property
    def variant(self) -> str:
        """What distinguishes the row within its family: the backend ("mfcc +pop" for a popularity-aware row),
        "random init", or "reference"."""
        if self.backend is not None:
            return self.backend + (f" {POPULARITY_SUFFIX}" if self.popularity_of is not None else "")
        return "random init" if base_of_random_init(self.name) else "reference"


def model_specs(names: Iterable[str], embeddings: Mapping[str, ItemEmbeddings] | None = None,
                params: Mapping[str, dict[str, Any]] | None = None) -> list[ModelSpec]:
    """Expand model names; a content model gets one row per embedding set, labelled `knn[<embedding>]`."""
    specs = []
    for name in names:
        cls = get_recommender(name)
        options = dict((params or {}).get(name, {}))
        if cls.needs_embeddings:
            if not embeddings:
                raise TunespaceError(f"{name} ranks by content and needs item embeddings; none were given")
            specs += [ModelSpec(f"{name}[{label}]", name, options, vectors, label)
                      for label, vectors in embeddings.items()]
        else:
            specs.append(ModelSpec(name, name, options))
    return specs


REFERENCES = ("popularity", "ease")
"""The collaborative reference rows every study table carries."""
RANDOM_INIT_SUFFIX = "-random"


def random_init_of(name: str) -> str | None:
    """The registered random-init reference of a content model (`shallow` -> `shallow-random`), if it has one."""
    candidate = name + RANDOM_INIT_SUFFIX
    return candidate if candidate in RECOMMENDERS else None


def base_of_random_init(name: str) -> str | None:
    """Inverse of `random_init_of`: `shallow-random` -> `shallow`; None for any other model."""
    if not name.endswith(RANDOM_INIT_SUFFIX):
        return None
    base = name[: -len(RANDOM_INIT_SUFFIX)]
    return base if random_init_of(base) == name else None


def accepts(name: str, parameter: str) -> bool:
    """Whether the registered model `name` takes `parameter` (in its own constructor or an ancestor's)."""
    return any(parameter in inspect.signature(cls.__init__).parameters
               for cls in get_recommender(name).__mro__ if "__init__" in vars(cls))


def is_seeded(name: str) -> bool:
    """Whether the model takes a `seed` (initialisation, negative sampling, masking); the others are
    deterministic given the train data."""
    return accepts(name, "seed")


def fitted_as(spec: ModelSpec) -> str:
    """The registered model whose class decides how the row is fitted (early stopping, training seed): a
    `popularity-blend` row's base, since the blend follows its base; the row's own model otherwise."""
    if issubclass(get_recommender(spec.name), PopularityBlend):
        default = inspect.signature(PopularityBlend.__init__).parameters["base"].default
        return str(spec.params.get("base", default))
    return spec.name


def uses_validation(spec: ModelSpec) -> bool:
    """Whether the row's model stops early on validation pairs (so is refitted per split seed)."""
    return get_recommender(fitted_as(spec)).uses_validation


COLD_RANKINGS = ("mixed", "new")
"""How cold-item pairs are ranked: among every item (train and new), or among the new items alone."""

POPULARITY_SUFFIX = "+pop"
"""Marks a popularity-aware row: `knn[minilm]` -> `knn+pop[minilm]` (`popularity_label`)."""


def popularity_label(label: str) -> str:
    """The popularity-aware row of a content row: `knn[run]` -> `knn+pop[run]` (here and in `htcl evaluate`)."""
    name, _, rest = label.partition("[")
    return f"{name}{POPULARITY_SUFFIX}[{rest}"


def popularity_specs(specs: Iterable[ModelSpec]) -> list[ModelSpec]:
    """`specs` with each content row (one over an embedding set) followed by its popularity-aware row,
    `<model>+pop[<backend>]`: the same fitted model re-scored with beta x popularity (beta chosen on validation
    users, `evaluation.seeds.run_split_seeds`). Rows without content (references, random-init rows) get none, and
    rows that already have one keep it."""
    specs = list(specs)
    present = {spec.popularity_of for spec in specs}
    out = []
    for spec in specs:
        out.append(spec)
        if spec.backend is not None and spec.popularity_of is None and spec.label not in present:
            out.append(replace(spec, label=popularity_label(spec.label),
                               popularity_of=spec.label))
    return out


def study_specs(names: Iterable[str], embeddings: Mapping[str, ItemEmbeddings] | None = None,
                params: Mapping[str, dict[str, Any]] | None = None) -> list[ModelSpec]:
    """The rows of the study's Table 3: the references (popularity, EASE), then for each named model its
    random-init row when it has one (`shallow-random`) followed by one row per embedding set (`shallow[mfcc]`);
    a model without embeddings is one row. A random-init row takes its content model's parameters (so both
    train alike), overridden by parameters given under its own name."""
    params = params or {}
    ordered: list[str] = []
    for name in [*REFERENCES, *names]:
        get_recommender(name)  # unknown names fail before anything runs
        reference = random_init_of(name) if get_recommender(name).needs_embeddings else None
        for entry in ([reference] if reference else []) + [name]:
            if entry not in ordered:
                ordered.append(entry)
    merged = {name: {**params.get(base_of_random_init(name) or "", {}), **params.get(name, {})}
              for name in ordered}
    return model_specs(ordered, embeddings, merged)


def strongest_reference(labels: Iterable[str]) -> str | None:
    """The baseline of the second family of paired tests: EASE when the run has it, else popularity, else None."""
    labels = set(labels)
    return next((name for name in ("ease", "popularity") if name in labels), None)


def reference_pairs(specs: Sequence[ModelSpec]) -> list[tuple[str, str]]:
    """(row, strongest reference) for every other row: each model against EASE (or popularity without EASE)."""
    reference = strongest_reference(spec.label for spec in specs)
    return [(spec.label, reference) for spec in specs if reference is not None and spec.label != reference]


def study_baselines(specs: Sequence[ModelSpec]) -> dict[str, str]:
    """Row label -> the row it is tested against: a content row (raw or popularity-aware) against the random-init
    row of the same model, or, for a raw row of a model without one (knn), against popularity (its
    popularity-aware row is tested against popularity in `popularity_pairs`). Rows without a baseline are left
    out."""
    labels = {spec.label for spec in specs}
    out = {}
    for spec in specs:
        if spec.backend is None:
            continue
        reference = random_init_of(spec.name)
        baseline = reference if reference in labels else None if spec.popularity_of is not None else "popularity"
        if baseline in labels:
            out[spec.label] = baseline
    return out


def popularity_pairs(specs: Sequence[ModelSpec]) -> dict[str, list[tuple[str, str]]]:
    """The two families of paired tests of the popularity-aware rows: "popularity", each against the popularity
    row (does the content add anything to popularity?), and "raw", each against its raw row (what popularity
    adds to the content model). Empty families are left out."""
    labels = {spec.label for spec in specs}
    aware = [spec for spec in specs if spec.popularity_of is not None]
    families = {"popularity": [(spec.label, "popularity") for spec in aware if "popularity" in labels],
                "raw": [(spec.label, spec.popularity_of) for spec in aware if spec.popularity_of in labels]}
    return {kind: pairs for kind, pairs in families.items() if pairs}


@dataclass
class BenchmarkRun:
    results: dict[str, EvaluationResult]
    fit_seconds: dict[str, float]
    evaluate_seconds: dict[str, float]
    cold_results: dict[str, EvaluationResult] = field(default_factory=dict)  # on the cold-item pairs, when asked
    cold_handling: dict[str, str] = field(default_factory=dict)  # how each model scored the cold items
    cold_placed: dict[str, bool] = field(default_factory=dict)  # False: it scored them -inf (never recommended)
    cold_counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # (cold items it placed, cold items)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # each row's resolved parameters
    training: dict[str, dict[str, int | None]] = field(default_factory=dict)  # epochs_run, best_epoch (trained rows)
    # "+pop" rows before their beta is chosen: beta -> (result on the validation and `part` users, result on the
    # cold pairs or None); `run_split_seeds` turns them into `results` and `cold_results` and empties this
    popularity: dict[str, dict[float, tuple[EvaluationResult, EvaluationResult | None]]] = field(
        default_factory=dict)

    FIELDS = ("results", "fit_seconds", "evaluate_seconds", "cold_results", "cold_handling", "cold_placed",
              "cold_counts", "params", "training", "popularity")


def resolved_params(model: Any) -> dict[str, Any]:
    """A model's parameters as the run used them, defaults included, as JSON-friendly values (callbacks and
    other objects become their repr)."""
    def plain(value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return repr(value)

    return {key: plain(value) for key, value in model.params.items()}


def placed_cold_items(extended: Any) -> int:
    """How many of the extended catalogue's new items the model gives a finite score (the others it scores -inf,
    so never recommends): read off the raw scores of one user, which do not depend on the user for placement."""
    n_known, n_all = extended.n_known, len(extended.items)
    if n_all == n_known or not extended.placed:
        return 0
    return int(np.isfinite(extended.score(np.array([0]), n_known, n_all)).sum())


def run_benchmark(
    split: Split,
    specs: Iterable[ModelSpec],
    ks: Iterable[int] = DEFAULT_KS,
    part: str = "test",
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    cold_part: str | None = None,
    label_suffix: str = "",
    popularity_weights: Sequence[float] = POPULARITY_WEIGHTS,
    cold_ranking: str = "mixed",
) -> BenchmarkRun:
    """Fit each model on the train part and evaluate it on `part` (validation or test) by full ranking.

    With `cold_part` ("cold_test" or "cold_validation") the same fitted model is also evaluated on those pairs by
    ranking the whole catalogue, train and cold items together (`cold_ranking` "mixed", `Recommender.extended`),
    or the cold items alone ("new": what a model knows about new items, whatever it does to warm ones); models
    that cannot place an item unseen in training score it -inf (see each model's `cold_items`). Skipped when the
    part is empty.

    Models that stop early (`uses_validation`) get the split's validation pairs, never the test pairs; when
    `part` is "validation" their figures are therefore optimistic (they were selected on those very pairs).
    progress(label, n_users) returns a callback that receives the number of users finished.

    A popularity-aware spec (`popularity_specs`) re-scores the fitted model of its content row, which must come
    before it: every weight of `popularity_weights` is evaluated on the validation and `part` users (and the cold
    pairs) into `BenchmarkRun.popularity`, for `evaluation.seeds.run_split_seeds` to choose from; its `results`
    stay empty here.
    """
    if cold_ranking not in COLD_RANKINGS:
        raise TunespaceError(f"cold ranking must be one of {', '.join(COLD_RANKINGS)}, got {cold_ranking!r}")
    new_only = cold_ranking == "new"
    train = split.train_matrix()
    truth = split.part(part)
    cold_truth = split.part(cold_part) if cold_part is not None else None
    if cold_truth is not None and cold_truth.empty:
        logger.warning("no %s pairs: no cold-start evaluation", cold_part)
        cold_truth = None
    specs = list(specs)
    grid = weight_grid(popularity_weights)
    if part == "validation" and any(uses_validation(spec) for spec in specs):
        logger.warning("evaluating on the validation pairs that early-stopping models were selected on: "
                       "their figures are optimistic")
    aware = {spec.popularity_of for spec in specs if spec.popularity_of is not None}
    blends: dict[str, PopularityBlend] = {}
    run = BenchmarkRun({}, {}, {})
    for spec in specs:
        if spec.popularity_of is not None:
            if spec.popularity_of not in blends:
                raise TunespaceError(f"{spec.label} re-scores {spec.popularity_of}, which must come before it in "
                                     "the same run")
            _popularity_grid(run, split, spec, blends[spec.popularity_of], grid, ks, part, cold_truth,
                             progress, label_suffix, new_only)
            continue
        options = dict(spec.params)
        if spec.embeddings is not None:
            options["embeddings"] = spec.embeddings
        fitted: Recommender
        if spec.label in aware:  # fitted once inside a blend, so that its +pop row re-scores it
            fitted = blends[spec.label] = PopularityBlend(base=spec.name, **options)
            model = fitted.base
        else:
            fitted = model = get_recommender(spec.name)(**options)
        started = time.perf_counter()
        fitted.fit(train, validation=split.validation if fitted.uses_validation else None)
        run.fit_seconds[spec.label] = time.perf_counter() - started
        run.params[spec.label] = resolved_params(model)
        if getattr(model, "epochs_run", None) is not None:
            run.training[spec.label] = {"epochs_run": model.epochs_run, "best_epoch": model.best_epoch}
        started = time.perf_counter()
        callback = progress(spec.label + label_suffix, truth["user_id"].nunique()) if progress else None
        run.results[spec.label] = evaluate(model, truth, ks=ks, name=spec.label, progress=callback)
        run.evaluate_seconds[spec.label] = time.perf_counter() - started
        if cold_truth is not None:
            extended = model.extended(split.items, new_only=new_only)
            callback = progress(f"{spec.label}{label_suffix} on cold items", cold_truth["user_id"].nunique()) \
                if progress else None
            run.cold_results[spec.label] = evaluate(extended, cold_truth, ks=ks, name=spec.label, progress=callback)
            run.cold_handling[spec.label] = model.cold_items
            run.cold_placed[spec.label] = extended.placed
            run.cold_counts[spec.label] = (placed_cold_items(extended), len(split.items) - split.n_warm_items)
        logger.info("%s: fit %.1fs, evaluate %.1fs", spec.label, run.fit_seconds[spec.label],
                    run.evaluate_seconds[spec.label])
    return run


def _popularity_grid(run: BenchmarkRun, split: Split, spec: ModelSpec, blend: PopularityBlend,
                     grid: Sequence[float], ks: Iterable[int], part: str, cold_truth: pd.DataFrame | None,
                     progress: Callable[[str, int], Callable[[int], None]] | None, label_suffix: str,
                     new_only: bool = False) -> None:
    """Every weight of `grid` on the validation and `part` users (one ranking per weight; the choice is later
    made on the validation users alone) and on the cold pairs, into `run.popularity[spec.label]`; the row's fit
    time, training record and cold-item placement are those of the content row it re-scores."""
    raw = spec.popularity_of
    assert raw is not None
    truth = split.part(part) if part == "validation" else pd.concat([split.validation, split.part(part)],
                                                                      ignore_index=True)
    users = truth["user_id"].nunique() + (0 if cold_truth is None else cold_truth["user_id"].nunique())
    callback = progress(f"{spec.label}{label_suffix} at {len(grid)} popularity weights", len(grid) * users) \
        if progress else None
    started = time.perf_counter()
    figures = {}
    for weight in grid:
        weighted = blend.with_weight(weight)
        warm = evaluate(weighted, truth, ks=ks, name=spec.label, progress=callback)
        cold = None if cold_truth is None else evaluate(weighted.extended(split.items, new_only=new_only),
                                                        cold_truth, ks=ks, name=spec.label, progress=callback)
        figures[weight] = (warm, cold)
    run.popularity[spec.label] = figures
    run.evaluate_seconds[spec.label] = time.perf_counter() - started
    run.fit_seconds[spec.label] = run.fit_seconds[raw]
    run.params[spec.label] = resolved_params(blend)  # its weight is set where beta is chosen
    for name in ("training", "cold_placed", "cold_counts"):
        if raw in getattr(run, name):
            getattr(run, name)[spec.label] = getattr(run, name)[raw]
    if raw in run.cold_handling:
        run.cold_handling[spec.label] = (f"{run.cold_handling[raw]}; plus beta x the popularity z-score of an item "
                                         "without train plays")


@dataclass
class SeededRuns:
    """One `BenchmarkRun` per seed, each holding every row (deterministic rows are fitted once and shared)."""

    seeds: list[int]
    runs: list[BenchmarkRun]
    seeded: dict[str, bool]  # row label -> whether its model takes a seed


def with_seed(spec: ModelSpec, seed: int) -> ModelSpec:
    return replace(spec, params={**spec.params, "seed": seed})


def run_seeds(
    split: Split,
    specs: Iterable[ModelSpec],
    seeds: Sequence[int],
    ks: Iterable[int] = DEFAULT_KS,
    part: str = "test",
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    cold_part: str | None = None,
    popularity_weights: Sequence[float] = POPULARITY_WEIGHTS,
    cold_ranking: str = "mixed",
) -> SeededRuns:
    """`run_benchmark` once per seed, each model that takes a seed getting `seed=s` (its initialisation, negative
    sampling and masking); the split, hence the validation/test partition, is the same for every seed, so the
    spread over seeds measures training variance only. Deterministic models (popularity, EASE, knn...) would
    give the same figures under every seed: they are fitted once and their results repeated. Popularity-aware
    rows are left with every weight's figures (`run_benchmark`)."""
    specs, ks = list(specs), tuple(ks)
    if not seeds:
        raise TunespaceError("give at least one seed")
    seeded = {spec.label: is_seeded(fitted_as(spec)) for spec in specs}
    runs: list[BenchmarkRun] = []
    for number, seed in enumerate(seeds):
        chosen = [with_seed(spec, seed) if seeded[spec.label] else spec for spec in specs
                  if number == 0 or seeded[spec.label]]
        suffix = f" (seed {seed})" if len(seeds) > 1 else ""
        fresh = run_benchmark(split, chosen, ks=ks, part=part, progress=progress, cold_part=cold_part,
                              label_suffix=suffix, popularity_weights=popularity_weights, cold_ranking=cold_ranking)
        run = BenchmarkRun({}, {}, {})
        for spec in specs:  # rows in the order of `specs`
            origin = fresh if number == 0 or seeded[spec.label] else runs[0]
            for name in BenchmarkRun.FIELDS:
                if spec.label in getattr(origin, name):
                    getattr(run, name)[spec.label] = getattr(origin, name)[spec.label]
        runs.append(run)
    return SeededRuns(list(seeds), runs, seeded)

"""Run several recommenders on one split and collect their evaluation results: the body of `benchmark recsys`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.splits import Split
from tunespace.errors import TunespaceError
from tunespace.evaluation.evaluate import DEFAULT_KS, EvaluationResult, evaluate
from tunespace.recommenders import get_recommender

logger = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    """One row of a benchmark: a registered recommender, its parameters and, for content models, embeddings."""

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    embeddings: ItemEmbeddings | None = None


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
            specs += [ModelSpec(f"{name}[{label}]", name, options, vectors) for label, vectors in embeddings.items()]
        else:
            specs.append(ModelSpec(name, name, options))
    return specs


@dataclass
class BenchmarkRun:
    results: dict[str, EvaluationResult]
    fit_seconds: dict[str, float]
    evaluate_seconds: dict[str, float]


def run_benchmark(
    split: Split,
    specs: Iterable[ModelSpec],
    ks: Iterable[int] = DEFAULT_KS,
    part: str = "test",
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> BenchmarkRun:
    """Fit each model on the train part and evaluate it on `part` (validation or test) by full ranking.

    progress(label, n_users) returns a callback that receives the number of users finished.
    """
    train = split.train_matrix()
    truth = split.part(part)
    run = BenchmarkRun({}, {}, {})
    for spec in specs:
        options = dict(spec.params)
        if spec.embeddings is not None:
            options["embeddings"] = spec.embeddings
        started = time.perf_counter()
        model = get_recommender(spec.name)(**options).fit(train)
        run.fit_seconds[spec.label] = time.perf_counter() - started
        started = time.perf_counter()
        callback = progress(spec.label, truth["user_id"].nunique()) if progress else None
        run.results[spec.label] = evaluate(model, truth, ks=ks, name=spec.label, progress=callback)
        run.evaluate_seconds[spec.label] = time.perf_counter() - started
        logger.info("%s: fit %.1fs, evaluate %.1fs", spec.label, run.fit_seconds[spec.label],
                    run.evaluate_seconds[spec.label])
    return run

"""Repeated split seeds: one train part, the test-window users re-partitioned into validation and test by each
split seed, and the aggregation of the per-split-seed results.

Why: with a hundred or two test users, one validation/test partition moves a model's mean by as much as the gaps
between models. Repeating the partition shows how much, beside the per-user intervals of each partition.

Running (`run_split_seeds`). The train part does not depend on the split seed. A model that never sees the
validation pairs (`uses_validation` False: popularity, EASE, ItemKNN, KNN) is therefore fitted once per training
seed (once in all when it takes no seed) and evaluated once on every test-window user (validation and test users
of the base split together, `Split.pooled`); each split seed's result is that evaluation sliced to its own users
(`EvaluationResult.subset`): identical numbers, as a user's ranking does not depend on which other users are
evaluated. Models that stop early on validation (`uses_validation`) are refitted for every split seed and training
seed. Split seed s partitions the users exactly as `temporal_split` with `SplitConfig(seed=s)` does
(`Split.repartitioned`).
Training seeds nest inside split seeds: each split seed holds one `SeededRuns` (a `BenchmarkRun` per training seed).
Popularity-aware rows (`benchmark.popularity_specs`) re-score their content row's fitted model at every weight of
the grid; one beta per row is then chosen on the validation users alone (`evaluation.popularity.choose_weight`: each
split seed's validation users, their values averaged over training seeds, then the mean over split seeds) and its
figures on the `part` and cold users become the row's results.

Aggregating (functions over `{split_seed: {row label: EvaluationResult}}`, one result per row and split seed,
already averaged over training seeds where there are several; `htcl evaluate` reuses them):

- `split_seed_means`: per row and split seed, the mean over that split seed's users.
- `split_seed_spread`: per row, the mean over split seeds of those means, and their sd (ddof 1; NaN with one).
- `user_averaged`: each user's metric averaged over the split seeds in which that user was evaluated (a test user).
- `compare_split_seeds`, the across-split-seed test: paired t and Wilcoxon signed-rank over the users of
  `user_averaged` (every user evaluated in at least one split seed, counted once), each method Holm-corrected over
  the pairs given; `sign_agreement` counts the split seeds whose own mean difference has the sign of the
  across-split-seed difference (out of `split_seeds`).
- `compare_each_split_seed`: the same tests within each split seed, Holm over the pairs within that split seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tunespace.data.splits import Split
from tunespace.errors import TunespaceError
from tunespace.evaluation.benchmark import BenchmarkRun, ModelSpec, SeededRuns, run_seeds, uses_validation
from tunespace.evaluation.evaluate import DEFAULT_KS, EvaluationResult, compare_pairs, headline_metric
from tunespace.evaluation.popularity import POPULARITY_WEIGHTS, PopularityWeightError, choose_weight

PerSplitSeed = Mapping[int, Mapping[str, EvaluationResult]]
"""split seed -> row label -> that row's result on the split seed's users."""


def split_seed_list(first: int, count: int) -> list[int]:
    """`count` consecutive split seeds from `first`: `--split-seed 42 --split-seeds 3` is 42, 43, 44."""
    if count < 1:
        raise TunespaceError(f"give at least one split seed, got {count}")
    return list(range(first, first + count))


@dataclass
class SplitSeedRuns:
    """Per split seed, one `SeededRuns` holding every row for every training seed, rows in the order of the specs.

    `shared` lists the rows fitted once and sliced per split seed (their fit time repeats in every split seed).
    `betas` maps each popularity-aware row to its chosen beta; `weights` is the table it was chosen from (row,
    set, model, beta, validation_<metric>, split_seeds, chosen; `evaluation.popularity.WeightChoice`)."""

    split_seeds: list[int]
    seeded: dict[int, SeededRuns]
    splits: dict[int, Split]
    shared: list[str]
    betas: dict[str, float] = field(default_factory=dict)
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)

    def averaged(self, part: str = "results") -> dict[int, dict[str, EvaluationResult]]:
        """Per split seed, every row's per-user values averaged over the training seeds: the input of the
        aggregation functions of this module."""
        from tunespace.reports.study import seed_averaged

        return {seed: seed_averaged(runs.runs, part) for seed, runs in self.seeded.items()
                if getattr(runs.runs[0], part)}


def _slice(run: BenchmarkRun, labels: Iterable[str], users: np.ndarray, cold_users: np.ndarray | None,
           into: BenchmarkRun) -> None:
    for label in labels:
        if label in run.results:  # a popularity-aware row has none until its beta is chosen
            into.results[label] = run.results[label].subset(users)
        if cold_users is not None and label in run.cold_results:
            into.cold_results[label] = run.cold_results[label].subset(cold_users)
        for name in BenchmarkRun.FIELDS:
            if name not in ("results", "cold_results") and label in getattr(run, name):
                getattr(into, name)[label] = getattr(run, name)[label]


def run_split_seeds(
    split: Split,
    specs: Iterable[ModelSpec],
    split_seeds: Sequence[int],
    seeds: Sequence[int] = (0,),
    ks: Iterable[int] = DEFAULT_KS,
    part: str = "test",
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    cold_part: str | None = None,
    popularity_weights: Sequence[float] = POPULARITY_WEIGHTS,
    cold_ranking: str = "mixed",
) -> SplitSeedRuns:
    """`run_seeds` for every split seed (see the module docstring: rows that do not use validation are fitted once
    and sliced; the others are refitted per split seed). With the split's own seed alone this is `run_seeds`.
    Popularity-aware rows get their beta, chosen over `popularity_weights` on the validation users by NDCG at the
    largest of `ks` (`choose_popularity`)."""
    specs, ks, split_seeds = list(specs), tuple(ks), list(split_seeds)
    if not split_seeds:
        raise TunespaceError("give at least one split seed")
    if len(set(split_seeds)) != len(split_seeds):
        raise TunespaceError(f"split seeds repeat: {split_seeds}")
    if split_seeds == [split.config.seed]:
        runs = run_seeds(split, specs, seeds, ks=ks, part=part, progress=progress, cold_part=cold_part,
                         popularity_weights=popularity_weights, cold_ranking=cold_ranking)
        out = SplitSeedRuns(split_seeds, {split_seeds[0]: runs}, {split_seeds[0]: split}, [])
        return choose_popularity(out, specs, part, cold_part, headline_metric(ks))
    shared = [spec for spec in specs if not uses_validation(spec)]
    own = [spec for spec in specs if uses_validation(spec)]
    pooled = None
    if shared:
        pooled = run_seeds(split.pooled(), shared, seeds, ks=ks, part="test", progress=progress,
                           cold_part="cold_test" if cold_part is not None else None,
                           popularity_weights=popularity_weights, cold_ranking=cold_ranking)
    out = SplitSeedRuns(split_seeds, {}, {}, [spec.label for spec in shared])
    for split_seed in split_seeds:
        current = out.splits[split_seed] = split.repartitioned(split_seed)
        refitted = None
        if own:
            tagged = None if progress is None else (
                lambda label, n, s=split_seed: progress(f"{label} (split seed {s})", n))
            refitted = run_seeds(current, own, seeds, ks=ks, part=part, progress=tagged, cold_part=cold_part,
                                 popularity_weights=popularity_weights, cold_ranking=cold_ranking)
        users = current.part(part)["user_id"].unique()
        cold = current.part(cold_part) if cold_part is not None else None
        cold_users = cold["user_id"].unique() if cold is not None and not cold.empty else None
        runs = []
        for number in range(len(seeds)):
            run = BenchmarkRun({}, {}, {})
            if pooled is not None:
                _slice(pooled.runs[number], [spec.label for spec in shared], users, cold_users, run)
            if refitted is not None:
                for name in BenchmarkRun.FIELDS:
                    getattr(run, name).update(getattr(refitted.runs[number], name))
            _in_order(run, specs)
            runs.append(run)
        seeded = {**(pooled.seeded if pooled else {}), **(refitted.seeded if refitted else {})}
        out.seeded[split_seed] = SeededRuns(list(seeds), runs, {spec.label: seeded[spec.label] for spec in specs})
    return choose_popularity(out, specs, part, cold_part, headline_metric(ks))


def _in_order(run: BenchmarkRun, specs: Sequence[ModelSpec]) -> None:
    """Every field of `run` with its rows in the order of `specs`."""
    for name in BenchmarkRun.FIELDS:
        values = getattr(run, name)
        setattr(run, name, {spec.label: values[spec.label] for spec in specs if spec.label in values})


def choose_popularity(runs: SplitSeedRuns, specs: Sequence[ModelSpec], part: str, cold_part: str | None,
                      metric: str) -> SplitSeedRuns:
    """Give each popularity-aware row of `runs` its beta and its results, in place (and return `runs`).

    Per row, `choose_weight` sees, for every beta and split seed, the row's values on that split seed's validation
    users alone, averaged over the training seeds; the chosen beta's values on each split seed's `part` users
    (and cold pairs) become the row's results in every run, unchanged. Every weight's figures are then dropped."""
    from tunespace.reports.study import mean_result

    tables = []
    for spec in specs:
        if spec.popularity_of is None:
            continue
        figures: dict[float, dict[int, EvaluationResult]] = {}
        for split_seed, seeded in runs.seeded.items():
            validation = runs.splits[split_seed].validation["user_id"].unique()
            if not len(validation):
                raise PopularityWeightError(f"{spec.label}: split seed {split_seed} has no validation users to "
                                            "choose beta on; leave popularity-aware rows out")
            for weight in seeded.runs[0].popularity[spec.label]:
                figures.setdefault(weight, {})[split_seed] = mean_result(
                    [run.popularity[spec.label][weight][0].subset(validation) for run in seeded.runs], spec.label)
        choice = choose_weight(figures, metric)
        runs.betas[spec.label] = choice.beta
        tables.append(choice.table.assign(row=spec.label, set=spec.backend, model=spec.name))
        for split_seed, seeded in runs.seeded.items():
            current = runs.splits[split_seed]
            users = current.part(part)["user_id"].unique()
            for run in seeded.runs:
                warm, cold = run.popularity[spec.label][choice.beta]
                run.results[spec.label] = warm.subset(users)
                if cold is not None and cold_part is not None and not current.part(cold_part).empty:
                    run.cold_results[spec.label] = cold.subset(current.part(cold_part)["user_id"].unique())
                run.params[spec.label] = {**run.params[spec.label], "weight": choice.beta}
    for seeded in runs.seeded.values():
        for run in seeded.runs:
            run.popularity = {}
            _in_order(run, specs)
    if tables:
        columns = ["row", "set", "model", "beta", f"validation_{metric}", "split_seeds", "chosen"]
        runs.weights = pd.concat(tables, ignore_index=True)[columns]
    return runs


# -- aggregation over split seeds -------------------------------------------------------------------------------

def split_seed_means(per_seed: PerSplitSeed, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per (model, split seed): the number of users and the mean over them of each metric."""
    rows = []
    for split_seed, results in per_seed.items():
        for label, result in results.items():
            row: dict[str, object] = {"model": label, "split_seed": split_seed, "users": len(result.per_user)}
            row.update({metric: float(result.per_user[metric].mean()) for metric in metrics})
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "split_seed", "users", *metrics])


def split_seed_spread(per_seed: PerSplitSeed, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per model: `split_seeds`, then per metric the mean over split seeds of the per-split-seed means and
    `<metric>_split_sd`, their standard deviation over split seeds (ddof 1; NaN with a single split seed)."""
    means = split_seed_means(per_seed, metrics)
    grouped = means.groupby("model", sort=False)
    frame = pd.DataFrame({"model": list(grouped.groups), "split_seeds": grouped.size().to_numpy()})
    for metric in metrics:
        frame[metric] = grouped[metric].mean().to_numpy()
        frame[f"{metric}_split_sd"] = grouped[metric].std(ddof=1).to_numpy()
    return frame


def user_averaged(per_seed: PerSplitSeed) -> dict[str, EvaluationResult]:
    """Per row, each user's metrics averaged over the split seeds in which the user was evaluated (a user drawn to
    the test side in two of three split seeds averages those two); coverage averaged over split seeds. Users are
    ordered by id; a column `split_seeds` says over how many split seeds each user was averaged."""
    labels = list(dict.fromkeys(label for results in per_seed.values() for label in results))
    averaged = {}
    for label in labels:
        results = [results[label] for results in per_seed.values() if label in results]
        frames = pd.concat([result.per_user for result in results], ignore_index=True)
        grouped = frames.groupby("user_id", sort=True)
        per_user = grouped.mean(numeric_only=True)
        per_user.insert(0, "split_seeds", grouped.size())
        per_user = per_user.reset_index()
        coverage = {key: float(np.mean([result.coverage.get(key, np.nan) for result in results]))
                    for key in results[0].coverage}
        averaged[label] = EvaluationResult(model=label, ks=results[0].ks, per_user=per_user, coverage=coverage)
    return averaged


def compare_each_split_seed(per_seed: PerSplitSeed, pairs: Sequence[tuple[str, str]], metric: str) -> pd.DataFrame:
    """The paired tests of `evaluate.compare_pairs` within each split seed (Holm over the pairs within a split
    seed), with a `split_seed` column first and the number of `users`."""
    frames = []
    for split_seed, results in per_seed.items():
        tests = compare_pairs(results, pairs, metric)
        tests.insert(0, "split_seed", split_seed)
        tests["users"] = [len(results[model].per_user) for model, _ in pairs]
        frames.append(tests)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compare_split_seeds(per_seed: PerSplitSeed, pairs: Sequence[tuple[str, str]], metric: str) -> pd.DataFrame:
    """The across-split-seed paired tests (module docstring): t and Wilcoxon over users' split-seed-averaged
    values, Holm over `pairs`; then `users`, `split_seeds` and `sign_agreement` (split seeds whose own mean
    difference has the sign of `mean_difference`; a zero difference agrees only with zero)."""
    averaged = user_averaged(per_seed)
    tests = compare_pairs(averaged, pairs, metric)
    tests["users"] = [len(averaged[model].per_user) for model, _ in pairs]
    agreement, counts = [], []
    for (model, baseline), difference in zip(pairs, tests["mean_difference"]):
        own = [float(results[model].per_user[metric].mean() - results[baseline].per_user[metric].mean())
               for results in per_seed.values() if model in results and baseline in results]
        agreement.append(int(sum(np.sign(value) == np.sign(difference) for value in own)))
        counts.append(len(own))
    tests["split_seeds"] = counts
    tests["sign_agreement"] = agreement
    return tests

"""The study's Table 3: its rows, the baseline of each paired test, seeded runs and their aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunespace.data.splits import SplitConfig, temporal_split
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset
from tunespace.evaluation.benchmark import (BenchmarkRun, ModelSpec, SeededRuns, fitted_as, is_seeded,
                                            popularity_pairs, popularity_specs, random_init_of, reference_pairs,
                                            run_seeds, strongest_reference, study_baselines, study_specs,
                                            uses_validation)
from tunespace.evaluation.evaluate import EvaluationResult, compare_pairs
from tunespace.evaluation.metrics import PER_USER_METRICS
from tunespace.evaluation.significance import holm, paired_test
from tunespace.reports.study import per_seed_frame, seed_averaged, study_chart, study_frame, write_png


def test_rows_are_references_then_random_init_then_one_row_per_backend():
    specs = study_specs(["knn", "shallow", "bert4rec"], {"mfcc": None, "musicnn-msd": None},
                        {"shallow": {"epochs": 3, "lr": 0.1}, "shallow-random": {"lr": 0.5}})
    assert [s.label for s in specs] == [
        "popularity", "ease", "knn[mfcc]", "knn[musicnn-msd]", "shallow-random", "shallow[mfcc]",
        "shallow[musicnn-msd]", "bert4rec-random", "bert4rec[mfcc]", "bert4rec[musicnn-msd]"]
    by_label = {s.label: s for s in specs}
    assert (by_label["shallow-random"].family, by_label["shallow-random"].variant) == ("shallow", "random init")
    assert (by_label["knn[mfcc]"].family, by_label["knn[mfcc]"].variant) == ("knn", "mfcc")
    assert by_label["ease"].variant == "reference"
    # the random-init row trains like its content model unless told otherwise
    assert by_label["shallow-random"].params == {"epochs": 3, "lr": 0.5}
    assert by_label["shallow[mfcc]"].params == {"epochs": 3, "lr": 0.1}
    # references named again are not repeated
    assert [s.label for s in study_specs(["popularity", "itemknn"])] == ["popularity", "ease", "itemknn"]
    assert random_init_of("knn") is None and random_init_of("bert4rec") == "bert4rec-random"
    assert [name for name in ("popularity", "ease", "knn", "shallow", "shallow-random", "bert4rec-random")
            if is_seeded(name)] == ["shallow", "shallow-random", "bert4rec-random"]


def test_each_content_row_is_tested_against_the_random_init_row_of_its_model():
    specs = study_specs(["knn", "shallow", "bert4rec"], {"mfcc": None, "musicnn-msd": None})
    assert study_baselines(specs) == {
        "knn[mfcc]": "popularity", "knn[musicnn-msd]": "popularity",
        "shallow[mfcc]": "shallow-random", "shallow[musicnn-msd]": "shallow-random",
        "bert4rec[mfcc]": "bert4rec-random", "bert4rec[musicnn-msd]": "bert4rec-random"}


def test_each_content_row_gets_a_popularity_aware_row_tested_in_every_family():
    specs = popularity_specs(study_specs(["knn", "shallow"], {"mfcc": None, "clap": None}))
    assert [s.label for s in specs] == [
        "popularity", "ease", "knn[mfcc]", "knn+pop[mfcc]", "knn[clap]", "knn+pop[clap]", "shallow-random",
        "shallow[mfcc]", "shallow+pop[mfcc]", "shallow[clap]", "shallow+pop[clap]"]
    by_label = {s.label: s for s in specs}
    aware = by_label["shallow+pop[mfcc]"]
    assert (aware.name, aware.family, aware.variant, aware.backend) == ("shallow", "shallow", "mfcc +pop", "mfcc")
    assert aware.popularity_of == "shallow[mfcc]" and by_label["shallow[mfcc]"].popularity_of is None
    assert popularity_specs(specs) == specs  # already popularity-aware: nothing added
    # the random-init family: +pop rows against the random-init twin; knn+pop has none and is tested against
    # popularity in the popularity family instead
    assert study_baselines(specs) == {
        "knn[mfcc]": "popularity", "knn[clap]": "popularity", "shallow[mfcc]": "shallow-random",
        "shallow+pop[mfcc]": "shallow-random", "shallow[clap]": "shallow-random",
        "shallow+pop[clap]": "shallow-random"}
    assert [pair for pair in reference_pairs(specs) if "+pop" in pair[0]] == [
        ("knn+pop[mfcc]", "ease"), ("knn+pop[clap]", "ease"), ("shallow+pop[mfcc]", "ease"),
        ("shallow+pop[clap]", "ease")]
    assert popularity_pairs(specs) == {
        "popularity": [("knn+pop[mfcc]", "popularity"), ("knn+pop[clap]", "popularity"),
                       ("shallow+pop[mfcc]", "popularity"), ("shallow+pop[clap]", "popularity")],
        "raw": [("knn+pop[mfcc]", "knn[mfcc]"), ("knn+pop[clap]", "knn[clap]"),
                ("shallow+pop[mfcc]", "shallow[mfcc]"), ("shallow+pop[clap]", "shallow[clap]")]}
    assert popularity_pairs(study_specs(["knn"], {"mfcc": None})) == {}


def test_a_registered_blend_is_fitted_as_its_base():
    blend = ModelSpec("b", "popularity-blend", {"base": "shallow", "weight": 0.1}, None, "x")
    assert fitted_as(blend) == "shallow" and uses_validation(blend) and is_seeded(fitted_as(blend))
    assert fitted_as(ModelSpec("b", "popularity-blend")) == "knn" and not uses_validation(ModelSpec("k", "knn"))


def test_every_row_is_also_tested_against_the_strongest_reference():
    specs = study_specs(["knn", "shallow"], {"mfcc": None})
    assert reference_pairs(specs) == [("popularity", "ease"), ("knn[mfcc]", "ease"), ("shallow-random", "ease"),
                                      ("shallow[mfcc]", "ease")]
    without_ease = [spec for spec in specs if spec.label != "ease"]
    assert strongest_reference(spec.label for spec in without_ease) == "popularity"
    assert reference_pairs(without_ease)[0] == ("knn[mfcc]", "popularity")
    assert strongest_reference(["knn[mfcc]"]) is None


def result(label: str, values: np.ndarray, users: list[str] | None = None) -> EvaluationResult:
    users = users or [f"u{i}" for i in range(len(values))]
    per_user = pd.DataFrame({"user_id": users, "n_relevant": 1})
    for metric in PER_USER_METRICS:
        per_user[f"{metric}@50"] = (values > 0).astype(float) if metric == "hit_rate" else values
    return EvaluationResult(model=label, ks=(50,), per_user=per_user, coverage={"coverage@50": 0.5})


def test_paired_tests_use_each_rows_baseline_and_holm_over_all_comparisons():
    rng = np.random.default_rng(0)
    base_a, base_b = rng.uniform(size=30), rng.uniform(size=30)
    results = {"a-random": result("a-random", base_a), "b-random": result("b-random", base_b),
               "a[x]": result("a[x]", base_a + 0.2 + 0.05 * rng.normal(size=30)),
               "b[x]": result("b[x]", base_b + 0.01 * rng.normal(size=30))}
    # users in another order are matched by id
    shuffled = results["b[x]"].per_user.sample(frac=1, random_state=1)
    results["b[x]"] = EvaluationResult("b[x]", (50,), shuffled.reset_index(drop=True), {})
    tests = compare_pairs(results, [("a[x]", "a-random"), ("b[x]", "b-random")], "ndcg@50")
    assert list(tests["baseline"]) == ["a-random", "b-random"]
    raw = [paired_test(results["a[x]"].per_user["ndcg@50"], base_a).p_value,
           paired_test(results["b[x]"].per_user.set_index("user_id").loc[[f"u{i}" for i in range(30)], "ndcg@50"],
                       base_b).p_value]
    np.testing.assert_allclose(tests["t_p"], raw)
    np.testing.assert_allclose(tests["t_p_holm"], holm(raw))
    assert tests["t_p_holm"].iloc[0] < 0.001 < tests["t_p_holm"].iloc[1]
    np.testing.assert_allclose(tests["mean_difference"].iloc[0],
                               results["a[x]"].per_user["ndcg@50"].mean() - base_a.mean())


def fake_runs(per_seed_values: dict[str, list[np.ndarray]], seeded: dict[str, bool]) -> SeededRuns:
    n_seeds = len(next(iter(per_seed_values.values())))
    runs = []
    for number in range(n_seeds):
        results = {label: result(label, values[number]) for label, values in per_seed_values.items()}
        runs.append(BenchmarkRun(results, {label: 1.0 + number for label in results}, {label: 0.0 for label in
                                                                                         results}))
    return SeededRuns(list(range(7, 7 + n_seeds)), runs, seeded)


def test_seeds_aggregate_to_the_mean_and_sd_of_the_per_seed_values():
    seeds = [np.array([0.1, 0.3, 0.2, 0.0]), np.array([0.3, 0.5, 0.4, 0.4]), np.array([0.2, 0.1, 0.3, 0.2])]
    fixed = np.array([0.2, 0.2, 0.1, 0.3])
    runs = fake_runs({"popularity": [fixed] * 3, "shallow[x]": seeds}, {"popularity": False, "shallow[x]": True})
    specs = study_specs(["shallow"], {"x": None})
    per_seed = per_seed_frame(runs)
    assert list(per_seed["seed"]) == [7, 7, 8, 8, 9, 9]
    np.testing.assert_allclose(per_seed.loc[per_seed["model"] == "shallow[x]", "ndcg@50"],
                               [s.mean() for s in seeds])
    table = study_frame(runs, [s for s in specs if s.label in ("popularity", "shallow[x]")]).set_index("model")
    means = [s.mean() for s in seeds]
    assert table.loc["shallow[x]", "ndcg@50"] == pytest.approx(np.mean(means))
    assert table.loc["shallow[x]", "ndcg@50_std"] == pytest.approx(np.std(means, ddof=1))
    averaged = np.mean(seeds, axis=0)  # the interval is over users of their seed-averaged values
    half = table.loc["shallow[x]", "ndcg@50_high"] - table.loc["shallow[x]", "ndcg@50"]
    from scipy import stats

    assert half == pytest.approx(stats.t.ppf(0.975, 3) * averaged.std(ddof=1) / 2)
    assert table.loc["shallow[x]", "seeds"] == 3 and table.loc["popularity", "seeds"] == 1
    assert np.isnan(table.loc["popularity", "ndcg@50_std"])  # deterministic: fitted once, no spread
    assert table.loc["shallow[x]", "fit_s"] == pytest.approx(2.0)
    assert list(seed_averaged(runs.runs)["shallow[x]"].per_user["ndcg@50"]) == pytest.approx(list(averaged))


def test_chart_is_a_png(tmp_path):
    runs = fake_runs({"popularity": [np.array([0.2, 0.3])], "knn[x]": [np.array([0.4, 0.5])]},
                     {"popularity": False, "knn[x]": False})
    table = study_frame(runs, study_specs(["knn"], {"x": None}))
    path = write_png(study_chart(table), tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_seeds_fits_deterministic_models_once_and_seeds_the_others(fit_log, single_thread):
    dataset, content = synthetic_dataset(SyntheticConfig(users=60, tracks=90, artists=8, seed=2))
    split = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=0))
    specs = [s for s in study_specs(["knn", "shallow"], {"c": content},
                                    {"shallow": {"epochs": 1, "device": "cpu"}, "knn": {"device": "cpu"}})
             if s.name != "ease"]
    runs = run_seeds(split, specs, [3, 4], ks=(50,), cold_part="cold_test")
    assert sorted(fit_log) == sorted([("popularity", None), ("knn", None), ("shallow-random", 3), ("shallow", 3),
                                     ("shallow-random", 4), ("shallow", 4)])
    assert [list(run.results) for run in runs.runs] == [[s.label for s in specs]] * 2
    assert runs.runs[1].results["knn[c]"] is runs.runs[0].results["knn[c]"]
    assert runs.seeded == {"popularity": False, "knn[c]": False, "shallow-random": True, "shallow[c]": True}
    # the cold table: knn places cold items, popularity never recommends one
    cold = runs.runs[0].cold_results
    assert cold["knn[c]"].per_user["hit_rate@50"].mean() > 0
    assert cold["popularity"].per_user[["hit_rate@50", "recall@50", "ndcg@50"]].eq(0).all().all()
    assert runs.runs[0].cold_placed == {"popularity": False, "knn[c]": True, "shallow-random": False,
                                        "shallow[c]": True}
    assert len(cold["knn[c]"].per_user) == split.cold_test["user_id"].nunique()

"""Repeated split seeds: re-partitioning as temporal_split does, "fit once + slice" equal to refitting per split
seed, and the across-split-seed aggregation and paired tests on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tunespace.data.splits import PARTS, SplitConfig, temporal_split
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset
from tunespace.errors import TunespaceError
from tunespace.evaluation.benchmark import model_specs, popularity_specs, run_seeds, study_specs
from tunespace.evaluation.evaluate import EvaluationResult, evaluate
from tunespace.evaluation.metrics import PER_USER_METRICS
from tunespace.evaluation.popularity import PopularityWeightError
from tunespace.evaluation.seeds import (compare_each_split_seed, compare_split_seeds,
                                        run_split_seeds, split_seed_list, split_seed_means, split_seed_spread,
                                        user_averaged)
from tunespace.evaluation.significance import holm
from tunespace.recommenders import get_recommender
from tunespace.reports.study import split_seed_results_table


@pytest.fixture(scope="module")
def data():
    dataset, content = synthetic_dataset(SyntheticConfig(users=70, tracks=100, artists=8, seed=6))
    return dataset, content


def test_split_seeds_are_consecutive():
    assert split_seed_list(42, 3) == [42, 43, 44]
    with pytest.raises(TunespaceError, match="at least one split seed"):
        split_seed_list(42, 0)


def test_repartitioned_partitions_as_temporal_split_does(data):
    dataset, _ = data
    base = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=42))
    assert base.repartitioned(42) is base
    for seed in (0, 7):
        direct = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=seed))
        again = base.repartitioned(seed)
        assert again.config == direct.config and again.stats == direct.stats
        for part in PARTS:
            pd.testing.assert_frame_equal(again.part(part), direct.part(part), check_dtype=False)
        assert set(again.validation["user_id"]) != set(base.validation["user_id"])


def test_subset_equals_evaluating_those_users_only(data):
    dataset, _ = data
    split = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=1))
    model = get_recommender("ease")(device="cpu").fit(split.train_matrix())
    every = evaluate(model, split.pooled().test, ks=(5, 20))
    alone = evaluate(model, split.test, ks=(5, 20))
    sliced = every.subset(split.test["user_id"])
    pd.testing.assert_frame_equal(sliced.per_user, alone.per_user)
    assert sliced.coverage == alone.coverage
    np.testing.assert_array_equal(sliced.lists, alone.lists)


def test_fit_once_and_slice_equals_a_run_per_split_seed(data, fit_log, single_thread):
    dataset, content = data
    config = SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=3)
    split = temporal_split(dataset.interactions, config)
    specs = [s for s in study_specs(["knn", "shallow", "itemknn"], {"c": content},
                                    {name: {"device": "cpu"} for name in ("popularity", "ease", "knn", "itemknn")}
                                    | {"shallow": {"epochs": 1, "device": "cpu", "batch_size": 256}})]
    runs = run_split_seeds(split, specs, [3, 4, 5], seeds=[0], ks=(10, 50), cold_part="cold_test")
    # popularity, ease, knn, itemknn: once; shallow and shallow-random: once per split seed
    counts = pd.Series([name for name, _ in fit_log]).value_counts().to_dict()
    assert counts == {"popularity": 1, "ease": 1, "knn": 1, "itemknn": 1, "shallow": 3, "shallow-random": 3}
    assert runs.shared == ["popularity", "ease", "knn[c]", "itemknn"]
    for split_seed in (3, 4, 5):
        own = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=split_seed))
        reference = run_seeds(own, specs, [0], ks=(10, 50), cold_part="cold_test").runs[0]
        got = runs.seeded[split_seed].runs[0]
        assert list(got.results) == [spec.label for spec in specs]
        for label in reference.results:  # identical numbers, the refitted rows too (same seed, same data)
            pd.testing.assert_frame_equal(got.results[label].per_user, reference.results[label].per_user)
            assert got.results[label].coverage == pytest.approx(reference.results[label].coverage)
            pd.testing.assert_frame_equal(got.cold_results[label].per_user, reference.cold_results[label].per_user)
        assert got.training == reference.training and got.cold_counts == reference.cold_counts


def hand(label: str, users: list[str], values: list[float]) -> EvaluationResult:
    per_user = pd.DataFrame({"user_id": users, "n_relevant": 1})
    for metric in PER_USER_METRICS:
        per_user[f"{metric}@10"] = np.asarray(values, dtype=float)
    return EvaluationResult(model=label, ks=(10,), per_user=per_user, coverage={"coverage@10": 0.5})


# Two split seeds over users a..e; seed 1 tests a, b, c; seed 2 tests c, d, e (c is a test user in both).
PER_SEED = {
    1: {"m": hand("m", ["a", "b", "c"], [0.3, 0.6, 0.9]), "base": hand("base", ["a", "b", "c"], [0.1, 0.2, 0.3])},
    2: {"m": hand("m", ["c", "d", "e"], [0.5, 0.0, 0.4]), "base": hand("base", ["c", "d", "e"], [0.1, 0.2, 0.3])},
}


def test_split_seed_means_and_spread_by_hand():
    means = split_seed_means(PER_SEED, ["ndcg@10"]).set_index(["model", "split_seed"])["ndcg@10"]
    assert means[("m", 1)] == pytest.approx(0.6) and means[("m", 2)] == pytest.approx(0.3)
    spread = split_seed_spread(PER_SEED, ["ndcg@10"]).set_index("model")
    assert spread.loc["m", "ndcg@10"] == pytest.approx(0.45)  # (0.6 + 0.3) / 2
    assert spread.loc["m", "ndcg@10_split_sd"] == pytest.approx(np.sqrt(2 * 0.15 ** 2))  # ddof 1
    assert spread.loc["base", "ndcg@10_split_sd"] == pytest.approx(0.0) and spread.loc["m", "split_seeds"] == 2
    table = split_seed_results_table(PER_SEED, ["ndcg@10"]).set_index("model")
    assert table.loc["m", "ndcg@10"] == pytest.approx(0.45)
    assert table.loc["m", "ndcg@10_split_sd"] == pytest.approx(np.sqrt(2 * 0.15 ** 2))
    # the half-width is the mean of the two split seeds' half-widths (t with 2 degrees of freedom, sd 0.3 and
    # sd(0.5, 0, 0.4) over sqrt(3) users)
    t = stats.t.ppf(0.975, 2)
    half = (t * 0.3 / np.sqrt(3) + t * np.std([0.5, 0.0, 0.4], ddof=1) / np.sqrt(3)) / 2
    assert table.loc["m", "ndcg@10_high"] - table.loc["m", "ndcg@10"] == pytest.approx(half)
    assert table.loc["m", "users"] == 3 and table.loc["m", "split_seeds"] == 2


def test_users_are_averaged_over_the_split_seeds_that_tested_them():
    averaged = user_averaged(PER_SEED)["m"].per_user.set_index("user_id")
    assert list(averaged.index) == ["a", "b", "c", "d", "e"]
    np.testing.assert_allclose(averaged["ndcg@10"], [0.3, 0.6, 0.7, 0.0, 0.4])  # c: (0.9 + 0.5) / 2
    assert list(averaged["split_seeds"]) == [1, 1, 2, 1, 1]


def test_across_split_seed_test_is_a_paired_test_over_the_averaged_users():
    tests = compare_split_seeds(PER_SEED, [("m", "base")], "ndcg@10")
    differences = np.array([0.3, 0.6, 0.7, 0.0, 0.4]) - np.array([0.1, 0.2, 0.2, 0.2, 0.3])
    row = tests.iloc[0]
    assert row["mean_difference"] == pytest.approx(differences.mean())  # 0.2
    assert row["t_p"] == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(differences).pvalue)
    assert row["t_p_holm"] == pytest.approx(row["t_p"])  # one pair: Holm leaves it
    assert row["users"] == 5 and row["split_seeds"] == 2
    # split seed 1: m - base = +0.4, split seed 2: +0.1; both share the sign of +0.2
    assert row["sign_agreement"] == 2
    flipped = {1: PER_SEED[1], 2: {"m": hand("m", ["c", "d", "e"], [0.0, 0.0, 0.0]), "base": PER_SEED[2]["base"]}}
    assert compare_split_seeds(flipped, [("m", "base")], "ndcg@10").iloc[0]["sign_agreement"] == 1


def test_per_split_seed_tests_are_holm_corrected_within_each_split_seed():
    extra = {seed: {**results, "n": hand("n", list(results["m"].per_user["user_id"]), [0.2, 0.1, 0.25])}
             for seed, results in PER_SEED.items()}
    tests = compare_each_split_seed(extra, [("m", "base"), ("n", "base")], "ndcg@10")
    assert list(tests["split_seed"]) == [1, 1, 2, 2] and list(tests["users"]) == [3, 3, 3, 3]
    for _, within in tests.groupby("split_seed"):
        np.testing.assert_allclose(within["t_p_holm"], holm(within["t_p"].to_numpy()))
    first = tests.iloc[0]
    assert first["t_p"] == pytest.approx(stats.ttest_rel([0.3, 0.6, 0.9], [0.1, 0.2, 0.3]).pvalue)


def test_one_split_seed_is_run_seeds(data, single_thread):
    dataset, content = data
    split = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=9))
    specs = model_specs(["popularity", "knn"], {"c": content}, {"knn": {"device": "cpu"}})
    runs = run_split_seeds(split, specs, [9], ks=(10,))
    assert list(runs.seeded) == [9] and runs.shared == []
    assert runs.splits[9] is split


def test_popularity_aware_rows_refit_nothing(data, fit_log, single_thread):
    """A +pop row re-scores its content row's fitted model: shallow is fitted once per split seed and training
    seed (not once more for shallow+pop), knn once in all; one beta per row, chosen over both split seeds."""
    dataset, content = data
    split = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=3))
    specs = popularity_specs(study_specs(["knn", "shallow"], {"c": content},
                                         {"knn": {"device": "cpu"},
                                          "shallow": {"epochs": 1, "device": "cpu", "batch_size": 256}}))
    specs = [spec for spec in specs if spec.name != "ease"]
    runs = run_split_seeds(split, specs, [3, 4], seeds=[0, 1], ks=(20,), cold_part="cold_test",
                           popularity_weights=(0.0, 0.5))
    counts = pd.Series([name for name, _ in fit_log]).value_counts().to_dict()
    # the blends wrap knn and shallow: each of their fits is one fit of the base inside
    assert counts == {"popularity": 1, "knn": 1, "shallow-random": 4, "shallow": 4, "popularity-blend": 5}
    assert runs.shared == ["popularity", "knn[c]", "knn+pop[c]"]
    assert set(runs.betas) == {"knn+pop[c]", "shallow+pop[c]"} and set(runs.betas.values()) <= {0.0, 0.5}
    assert len(runs.weights) == 4 and (runs.weights["split_seeds"] == 2).all()
    assert runs.weights.groupby("row")["chosen"].sum().to_dict() == {"knn+pop[c]": 1, "shallow+pop[c]": 1}
    for split_seed in (3, 4):
        seeded = runs.seeded[split_seed]
        assert seeded.seeded["shallow+pop[c]"] and not seeded.seeded["knn+pop[c]"]
        test_users = set(runs.splits[split_seed].test["user_id"])
        for run in seeded.runs:
            assert list(run.results) == [spec.label for spec in specs] and run.popularity == {}
            assert set(run.results["shallow+pop[c]"].per_user["user_id"]) == test_users
            assert run.params["shallow+pop[c]"]["weight"] == runs.betas["shallow+pop[c]"]
            assert run.training["shallow+pop[c]"] == run.training["shallow[c]"]
            assert set(run.cold_results) == set(run.results)
    # fitting shallow inside a blend leaves its raw row as it was without one
    alone = run_seeds(runs.splits[4], [spec for spec in specs if spec.label == "shallow[c]"], [1], ks=(20,))
    pd.testing.assert_frame_equal(alone.runs[0].results["shallow[c]"].per_user,
                                  runs.seeded[4].runs[1].results["shallow[c]"].per_user)


def test_no_validation_users_no_beta(data):
    dataset, content = data
    split = temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=3, validation_ratio=0.0))
    specs = popularity_specs(model_specs(["knn"], {"c": content}, {"knn": {"device": "cpu"}}))
    with pytest.raises(PopularityWeightError, match=r"knn\+pop\[c\]: split seed 3 has no validation users"):
        run_split_seeds(split, specs, [3], ks=(10,), popularity_weights=(0.0, 1.0))

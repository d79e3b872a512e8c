"""`htcl evaluate`'s popularity-aware rows: beta chosen on the validation users only, applied unchanged elsewhere,
the same figures as the registered blend run by name, and the comparisons the significance table holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tunespace.contrastive.evaluate as contrastive_evaluate
from tunespace.contrastive.evaluate import (POPULARITY_ROW, comparison_pairs, popularity_label, preference_results,
                                            seed_table)
from tunespace.recommenders import PopularityBlend

GRID = (0.0, 0.01, 0.1, 1.0, 10.0)
CUTOFF = "2025-01-01"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tunespace.corpus.build import CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, CorpusConfig(size="small", tracks=24, listeners=60, workers=2, max_seconds=6.0))
    return out


@pytest.fixture(scope="module")
def sets(corpus):
    from tunespace.data.dataset import Dataset
    from tunespace.data.embeddings import ItemEmbeddings

    ids = Dataset.load_tracks(corpus)["track_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    return {name: ItemEmbeddings(ids=ids, vectors=rng.normal(size=(len(ids), 8)).astype(np.float32))
            for name in ("fixed", "candidate")}


def splits(corpus, seeds):
    from tunespace.data.dataset import Dataset
    from tunespace.data.splits import SplitConfig, temporal_split

    interactions = Dataset.load(corpus).interactions
    return {seed: temporal_split(interactions, SplitConfig(cutoff=CUTOFF, seed=seed)) for seed in seeds}


def test_beta_is_chosen_on_validation_users_only_and_applied_unchanged(corpus, sets, monkeypatch):
    seen: list[tuple[float, int, set[str]]] = []
    choose = contrastive_evaluate.choose_weight

    def spy(figures, *args, **kwargs):
        seen.extend((beta, seed, set(result.per_user["user_id"])) for beta, per_seed in figures.items()
                    for seed, result in per_seed.items())
        return choose(figures, *args, **kwargs)

    ranked: list[tuple[float, set[str]]] = []
    evaluate = contrastive_evaluate.evaluate

    def spy_evaluate(model, truth, *args, **kwargs):
        blend = getattr(model, "model", model)  # an extended catalogue ranks with its model
        if isinstance(blend, PopularityBlend):
            ranked.append((blend.weight, set(truth["user_id"].astype(str))))
        return evaluate(model, truth, *args, **kwargs)

    monkeypatch.setattr(contrastive_evaluate, "choose_weight", spy)
    monkeypatch.setattr(contrastive_evaluate, "evaluate", spy_evaluate)
    seeds = (42, 43)
    results = preference_results(corpus, CUTOFF, sets, ("knn",), seeds, grid=GRID)
    by_seed = splits(corpus, seeds)
    validation = {seed: set(split.validation["user_id"].astype(str)) for seed, split in by_seed.items()}
    test = {seed: set(split.test["user_id"].astype(str)) for seed, split in by_seed.items()}

    assert len(seen) == 2 * len(GRID) * len(seeds)  # every beta, per set and split seed
    for _, seed, users in seen:
        assert users and users <= validation[seed] and not users & test[seed]
    chosen = set(results.betas.values())
    for weight, users in ranked:  # a beta that was not chosen never ranked a user outside validation
        if weight not in chosen:
            assert users <= set().union(*validation.values())

    weights = results.weights
    assert list(weights.columns) == ["set", "model", "beta", "validation_ndcg@50", "split_seeds", "chosen"]
    for name in sets:
        rows = weights[weights["set"] == name]
        assert rows["beta"].tolist() == list(GRID) and rows["chosen"].sum() == 1
        best = rows["validation_ndcg@50"].max()
        beta = rows[rows["validation_ndcg@50"] >= best - 1e-12]["beta"].min()  # ties to the smaller beta
        assert results.betas[f"knn+pop[{name}]"] == beta == rows[rows["chosen"]]["beta"].iloc[0]
        raw, _ = seed_table(results, "validation", ("ndcg@50",))
        figure = raw.set_index("model").loc[f"knn+pop[{name}]", "ndcg@50"]
        assert figure == pytest.approx(rows[rows["chosen"]]["validation_ndcg@50"].iloc[0])
        assert rows[rows["beta"] == 0]["validation_ndcg@50"].iloc[0] == pytest.approx(
            raw.set_index("model").loc[f"knn[{name}]", "ndcg@50"])  # beta 0 is the raw row

    for part in ("validation", "test", "cold_validation", "cold_test"):
        for seed in seeds:
            labels = set(results.parts[part][seed])
            if labels:
                assert labels == {POPULARITY_ROW, "knn[fixed]", "knn+pop[fixed]", "knn[candidate]",
                                  "knn+pop[candidate]"}


def test_pop_rows_equal_the_registered_blend_run_by_name(corpus, sets):
    from tunespace.evaluation.benchmark import ModelSpec, run_benchmark

    results = preference_results(corpus, CUTOFF, {"fixed": sets["fixed"]}, ("knn",), (42,), grid=GRID)
    beta = results.betas["knn+pop[fixed]"]
    split = splits(corpus, (42,))[42]
    spec = ModelSpec("blend", "popularity-blend", {"base": "knn", "weight": beta}, sets["fixed"], "fixed")
    direct = run_benchmark(split, [spec, ModelSpec(POPULARITY_ROW, POPULARITY_ROW)], ks=(50,), part="test",
                           cold_part="cold_test")
    for label, expected in (("knn+pop[fixed]", direct.results["blend"]), (POPULARITY_ROW,
                                                                          direct.results[POPULARITY_ROW])):
        mine = results.parts["test"][42][label].per_user.set_index("user_id").sort_index()
        pd.testing.assert_frame_equal(mine, expected.per_user.set_index("user_id").sort_index())
    if direct.cold_results:
        mine = results.parts["cold_test"][42]["knn+pop[fixed]"].per_user.set_index("user_id").sort_index()
        pd.testing.assert_frame_equal(mine, direct.cold_results["blend"].per_user.set_index("user_id").sort_index())


def test_a_given_beta_is_used_as_is_and_test_only_sets_need_one(corpus, sets, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("beta was given: nothing to choose")

    monkeypatch.setattr(contrastive_evaluate, "choose_weight", refuse)
    only = {"candidate": sets["candidate"]}
    results = preference_results(corpus, CUTOFF, only, ("knn",), (42,), {"candidate": ("test",)},
                                 betas={"knn+pop[candidate]": 0.1}, reference=False)
    assert results.betas == {"knn+pop[candidate]": 0.1} and results.weights.empty
    assert set(results.parts["test"][42]) == {"knn[candidate]", "knn+pop[candidate]"}
    assert not results.parts["validation"][42]
    with pytest.raises(ValueError, match="chosen on validation users"):
        preference_results(corpus, CUTOFF, only, ("knn",), (42,), {"candidate": ("test",)})


def test_labels_and_the_compared_pairs_by_hand():
    assert popularity_label("knn[s2]") == "knn+pop[s2]" and popularity_label("shallow[a[b]]") == "shallow+pop[a[b]]"
    families = comparison_pairs(("knn",), "control", "s2", "s1", ["s1", "control", "mfcc"], ["s2b"])
    assert families["reported"] == [
        ("knn+pop[s2]", "knn+pop[control]"), ("knn+pop[s2]", "knn+pop[s1]"), ("knn+pop[s2]", "popularity"),
        ("knn[s2]", "knn[control]"),
        ("knn+pop[s1]", "knn+pop[control]"), ("knn[s1]", "knn[control]"),
        ("knn+pop[mfcc]", "knn+pop[control]"), ("knn[mfcc]", "knn[control]")]
    assert families["information only"] == [("knn+pop[s2b]", "knn+pop[control]"), ("knn[s2b]", "knn[control]")]
    # the control is stage 1: no pair twice; nothing selected: the fixed arms alone
    same = comparison_pairs(("knn",), "s1", "s2", "s1", ["s1"])
    assert same["reported"] == [("knn+pop[s2]", "knn+pop[s1]"), ("knn+pop[s2]", "popularity"),
                                ("knn[s2]", "knn[s1]")]
    assert comparison_pairs(("knn",), "s1", None, "s1", ["s1", "mfcc"])["reported"] == [
        ("knn+pop[mfcc]", "knn+pop[s1]"), ("knn[mfcc]", "knn[s1]")]

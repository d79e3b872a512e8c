"""run_benchmark: early-stopping models get the split's validation pairs and never its test pairs; popularity-aware
rows get a beta chosen on the validation users alone, checked by hand on a six-item split."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from tunespace.data.splits import SplitConfig, temporal_split
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset
from tunespace.errors import TunespaceError
from tunespace.evaluation import seeds
from tunespace.evaluation.benchmark import model_specs, popularity_specs, run_benchmark
from tunespace.evaluation.popularity import choose_weight
from tunespace.evaluation.seeds import run_split_seeds
from tunespace.recommenders.base import Recommender


@pytest.fixture(scope="module")
def split_and_content():
    dataset, content = synthetic_dataset(SyntheticConfig(users=80, tracks=120, artists=10, seed=1))
    return temporal_split(dataset.interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=0)), content


def test_validation_pairs_go_to_early_stopping_models_only(split_and_content, monkeypatch, caplog):
    split, content = split_and_content
    given: dict[str, pd.DataFrame | None] = {}
    fit = Recommender.fit

    def spy(model, train, validation=None):
        given[model.name] = validation
        return fit(model, train, validation)

    monkeypatch.setattr(Recommender, "fit", spy)
    specs = model_specs(["popularity", "shallow"], {"content": content}, {"shallow": {"epochs": 2, "device": "cpu"}})
    run = run_benchmark(split, specs, ks=(50,))
    assert given["popularity"] is None
    assert given["shallow"] is split.validation
    test_pairs = set(zip(split.test["user_id"], split.test["track_id"]))
    assert test_pairs and not test_pairs & set(zip(given["shallow"]["user_id"], given["shallow"]["track_id"]))
    assert set(run.results) == {"popularity", "shallow[content]"}
    with caplog.at_level(logging.WARNING, logger="tunespace.evaluation.benchmark"):
        run_benchmark(split, specs[1:], ks=(50,), part="validation")
    assert "optimistic" in caplog.text


# -- popularity-aware rows on a hand-made split -------------------------------------------------------------------

EMBEDDINGS = {"A": (1.0, 0.0), "B": (0.0, 1.0), "C": (1.0, 0.2), "D": (0.2, 1.0), "P": (1.0, 1.0), "E": (0.0, 1.0)}


@pytest.fixture(scope="module")
def hand_made():
    """Train: fillers f1..f4 play P (f1 also C, f2 also D), v plays A, t plays B. Plays: P 4, A B C D 1 each, so
    z(log(1 + plays)) is 2 for P and -0.5 for the others (one value apart among five), and (log 1 - mean) / sd
    = -2.391 for the cold item E. Test window: v first plays P, t first plays D and E.

    knn cosines (2-d vectors above): v (profile A) ranks C 0.981, P 0.707, D 0.196, B 0, so P is 2nd: NDCG 1/log2 3;
    t (profile B) ranks D 0.981 first: NDCG 1. A weight of 1 adds 2.5 to P over the other train items, which puts
    P first for both (v: NDCG 1; t: D 2nd, 1/log2 3); 0.1 adds 0.25, less than the 0.274 cosine gaps: no change.
    Among the cold pairs, t's E (cosine 1) is 1st raw; at weight 1 it scores 1 - 2.391 and falls to 5th (after P,
    D, C, A): NDCG 1/log2 6. Split seed 3 makes v the validation user, split seed 0 makes t it."""
    from tunespace.data.embeddings import ItemEmbeddings

    train = [("f1", "P"), ("f2", "P"), ("f3", "P"), ("f4", "P"), ("f1", "C"), ("f2", "D"), ("v", "A"), ("t", "B")]
    window = [("v", "P"), ("t", "D"), ("t", "E")]
    frame = pd.DataFrame([(u, i, "2024-01-01") for u, i in train] + [(u, i, "2024-03-01") for u, i in window],
                         columns=["user_id", "track_id", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    split = temporal_split(frame, SplitConfig(cutoff="2024-02-01", seed=3))
    assert set(split.validation["user_id"]) == {"v"} and set(split.test["user_id"]) == {"t"}
    embeddings = ItemEmbeddings(ids=list(EMBEDDINGS), vectors=np.array(list(EMBEDDINGS.values())))
    return split, embeddings


def hand_specs(embeddings):
    return popularity_specs(model_specs(["popularity", "knn"], {"x": embeddings},
                                        {"knn": {"device": "cpu", "standardize": False}}))


def test_beta_is_chosen_on_the_validation_users_and_applied_unchanged_to_test_and_cold(hand_made, monkeypatch):
    split, embeddings = hand_made
    seen = []

    def spy(figures, metric="ndcg@50"):
        seen.append({weight: {seed: set(result.per_user["user_id"]) for seed, result in per_seed.items()}
                     for weight, per_seed in figures.items()})
        return choose_weight(figures, metric)

    monkeypatch.setattr(seeds, "choose_weight", spy)
    runs = run_split_seeds(split, hand_specs(embeddings), [3], ks=(5,), cold_part="cold_test",
                           popularity_weights=(0.0, 0.1, 1.0))
    assert seen == [{0.0: {3: {"v"}}, 0.1: {3: {"v"}}, 1.0: {3: {"v"}}}]  # the validation user alone
    assert runs.betas == {"knn+pop[x]": 1.0}
    third = 1 / np.log2(3)
    table = runs.weights
    assert list(table.columns) == ["row", "set", "model", "beta", "validation_ndcg@5", "split_seeds", "chosen"]
    np.testing.assert_allclose(table["validation_ndcg@5"], [third, third, 1.0], rtol=1e-6)
    assert table["chosen"].tolist() == [False, False, True] and set(table["row"]) == {"knn+pop[x]"}

    run = runs.seeded[3].runs[0]
    assert list(run.results) == ["popularity", "knn[x]", "knn+pop[x]"] and run.popularity == {}
    ndcg = {label: result.per_user.set_index("user_id")["ndcg@5"].to_dict() for label, result in run.results.items()}
    assert ndcg["knn[x]"] == {"t": pytest.approx(1.0)}
    assert ndcg["knn+pop[x]"] == {"t": pytest.approx(third)}  # test favours beta 0; validation chose 1
    cold = {label: result.per_user.set_index("user_id")["ndcg@5"].to_dict()
            for label, result in run.cold_results.items()}
    assert cold["knn[x]"] == {"t": pytest.approx(1.0)} and cold["knn+pop[x]"] == {"t": pytest.approx(1 / np.log2(6))}
    assert run.params["knn+pop[x]"] == {"base": "knn", "weight": 1.0, "standardize": False}
    assert run.params["knn[x]"] == {"standardize": False}
    assert run.fit_seconds["knn+pop[x]"] == run.fit_seconds["knn[x]"]
    assert run.cold_counts["knn+pop[x]"] == run.cold_counts["knn[x]"] == (1, 1)


def test_beta_is_the_mean_over_split_seeds_of_their_validation_users(hand_made):
    split, embeddings = hand_made
    alone = run_split_seeds(split, hand_specs(embeddings), [0], ks=(5,), popularity_weights=(0.0, 0.1, 1.0))
    assert alone.betas == {"knn+pop[x]": 0.0}  # t validates: beta 0 and 0.1 tie at NDCG 1, the smaller wins
    # over split seeds 3 and 0 the two users swap roles, so every beta averages (1 + 1/log2 3) / 2: a tie, beta 0
    both = run_split_seeds(split, hand_specs(embeddings), [3, 0], ks=(5,), popularity_weights=(0.0, 0.1, 1.0))
    assert both.betas == {"knn+pop[x]": 0.0}
    np.testing.assert_allclose(both.weights["validation_ndcg@5"], (1 + 1 / np.log2(3)) / 2, rtol=1e-6)
    assert (both.weights["split_seeds"] == 2).all()
    for split_seed, user in ((3, "t"), (0, "v")):
        results = both.seeded[split_seed].runs[0].results
        assert list(results["knn+pop[x]"].per_user["user_id"]) == [user]
        pd.testing.assert_frame_equal(results["knn+pop[x]"].per_user, results["knn[x]"].per_user)


def test_a_popularity_aware_row_needs_its_content_row_first(hand_made):
    split, embeddings = hand_made
    specs = hand_specs(embeddings)
    with pytest.raises(TunespaceError, match=r"knn\+pop\[x\] re-scores knn\[x\]"):
        run_benchmark(split, [specs[0], specs[2], specs[1]], ks=(5,))

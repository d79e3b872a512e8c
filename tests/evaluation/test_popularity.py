"""Choosing the popularity weight beta on validation users: the grid and the rule, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunespace.evaluation.evaluate import EvaluationResult
from tunespace.evaluation.popularity import POPULARITY_WEIGHTS, PopularityWeightError, choose_weight, weight_grid


def result(values: list[float]) -> EvaluationResult:
    per_user = pd.DataFrame({"user_id": [f"u{i}" for i in range(len(values))], "ndcg@50": values})
    return EvaluationResult(model="knn+pop[x]", ks=(50,), per_user=per_user, coverage={})


def test_the_grid_is_zero_then_four_values_a_decade_from_1e_3_to_10():
    assert POPULARITY_WEIGHTS[0] == 0.0 and len(POPULARITY_WEIGHTS) == 18
    positive = np.array(POPULARITY_WEIGHTS[1:])
    assert positive[0] == pytest.approx(1e-3) and positive[-1] == pytest.approx(10.0)
    np.testing.assert_allclose(positive[1:] / positive[:-1], 10 ** 0.25)
    assert weight_grid((0, 1)) == (0.0, 1.0)
    for bad in ((1.0, 2.0), (0.0, -1.0), (0.0, 1.0, 1.0)):
        with pytest.raises(PopularityWeightError):
            weight_grid(bad)


def test_best_mean_over_split_seeds_of_per_seed_means_ties_to_the_smaller_beta():
    figures = {
        1.0: {1: result([0.4, 0.4]), 2: result([0.2])},  # (0.4 + 0.2) / 2 = 0.3: ties with 0.1
        0.0: {1: result([0.2, 0.4]), 2: result([0.1])},  # (0.3 + 0.1) / 2 = 0.2 (pooled users would give 0.233)
        0.1: {1: result([0.5, 0.3]), 2: result([0.2])},  # 0.3
        10.0: {1: result([0.0, 0.0]), 2: result([0.0])},
    }
    choice = choose_weight(figures)
    assert choice.beta == 0.1
    table = choice.table.set_index("beta")
    assert list(table.index) == [1.0, 0.0, 0.1, 10.0]  # every beta, in the order given
    np.testing.assert_allclose(table["validation_ndcg@50"], [0.3, 0.2, 0.3, 0.0])
    assert table["chosen"].tolist() == [False, False, True, False] and (table["split_seeds"] == 2).all()


def test_all_equal_keeps_the_raw_model_and_nothing_to_choose_from_is_an_error():
    flat = {beta: {7: result([0.25])} for beta in (0.5, 0.0, 2.0)}
    assert choose_weight(flat).beta == 0.0
    with pytest.raises(PopularityWeightError):
        choose_weight({})
    with pytest.raises(PopularityWeightError):
        choose_weight({0.0: {}})
    assert choose_weight({0.0: {1: result([np.nan])}, 1.0: {1: result([0.1])}}).beta == 1.0


def test_a_choice_at_the_top_of_the_grid_is_flagged(caplog):
    rising = {0.0: {1: result([0.1])}, 1.0: {1: result([0.2])}, 10.0: {1: result([0.3])}}
    with caplog.at_level("WARNING", logger="tunespace.evaluation.popularity"):
        assert choose_weight(rising).beta == 10.0
    assert "largest of the grid" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tunespace.evaluation.popularity"):
        choose_weight({0.0: {1: result([0.3])}, 1.0: {1: result([0.2])}})
    assert not caplog.text

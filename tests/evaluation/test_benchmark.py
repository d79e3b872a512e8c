"""run_benchmark: early-stopping models get the split's validation pairs and never its test pairs."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from tunespace.data.splits import SplitConfig, temporal_split
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset
from tunespace.evaluation.benchmark import model_specs, run_benchmark
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

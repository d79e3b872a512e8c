"""EASE with a content -> collaborative map: the shared contract, EASE on train items without shrinkage, the ridge map
against a direct least-squares solve, the play-count blend, and new items scored with their predicted column."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.recommenders.contract import RecommenderContract, cluster_embeddings, two_clusters
from tunespace.errors import ModelConfigError
from tunespace.recommenders.ease import EASE
from tunespace.recommenders.mapped_ease import MappedEASE, ridge_map


class TestMappedEASE(RecommenderContract):
    def make(self, **options):
        return MappedEASE(embeddings=cluster_embeddings(), l2=1.0, ridge=0.1, shrink=1.0, device="cpu", **options)


def test_without_shrinkage_train_items_are_ease():
    train = two_clusters()
    users = np.arange(train.n_users)
    mapped = MappedEASE(embeddings=cluster_embeddings(), l2=2.0, shrink=0.0, device="cpu").fit(train)
    np.testing.assert_allclose(mapped.score(users), EASE(l2=2.0, device="cpu").fit(train).score(users), atol=1e-6)


def test_ridge_map_with_an_unpenalised_bias_matches_a_direct_solve():
    rng = np.random.default_rng(0)
    features = np.hstack([rng.standard_normal((30, 4)), np.ones((30, 1))])
    targets = rng.standard_normal((30, 6))
    ridge = 0.7
    # augmented least squares: sqrt(ridge) rows penalise the four weights, none the bias
    augmented = np.vstack([features, np.hstack([np.sqrt(ridge) * np.eye(4), np.zeros((4, 1))])])
    expected = np.linalg.lstsq(augmented, np.vstack([targets, np.zeros((4, 6))]), rcond=None)[0]
    np.testing.assert_allclose(ridge_map(features, targets, ridge), expected, atol=1e-10)


def test_columns_blend_own_and_predicted_by_play_count():
    train = two_clusters()
    shrink = 2.0
    model = MappedEASE(embeddings=cluster_embeddings(), l2=1.0, ridge=0.5, shrink=shrink, device="cpu").fit(train)
    plain = MappedEASE(embeddings=cluster_embeddings(), l2=1.0, ridge=0.5, shrink=0.0, device="cpu").fit(train)
    own = plain._weights.numpy().astype(np.float64)
    features = np.hstack([cluster_embeddings().vectors.astype(np.float64), np.ones((train.n_items, 1))])
    predicted = (features @ model._map).T
    plays = np.asarray(train.binary().sum(axis=0)).ravel()
    share = plays / (plays + shrink)
    expected = share * own + (1 - share) * predicted
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model._weights.numpy(), expected, atol=1e-5)
    assert share[-1] == 0  # item i8 has no plays: its column is the predicted one


def test_a_new_item_takes_its_predicted_column():
    train = two_clusters()
    model = MappedEASE(embeddings=cluster_embeddings(), l2=1.0, ridge=0.5, device="cpu").fit(train)
    extended = model.extended(train.items)  # nothing new: check the scorer directly on item i8's embedding
    assert extended._new_items is None
    scorer = model._new_item_scorer(np.array(["i8"]), None)
    profiles = train.binary().toarray().astype(np.float32)
    column = np.hstack([cluster_embeddings().vectors[-1].astype(np.float64), 1.0]) @ model._map
    got = scorer(torch.arange(train.n_users), 0, 1).numpy()[:, 0]
    np.testing.assert_allclose(got, profiles @ column, atol=1e-5)


def test_bad_options_are_named():
    with pytest.raises(ModelConfigError, match="ridge > 0"):
        MappedEASE(embeddings=cluster_embeddings(), ridge=0.0)

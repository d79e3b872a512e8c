"""Content-regularised EASE: the shared contract, EASE at w = 0, each column against the constrained least squares it
solves, and a new item placed exactly as if it had been in the catalogue with no plays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.recommenders.contract import RecommenderContract, cluster_embeddings, two_clusters
from tunespace.data.catalog import IdMap
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import ModelConfigError
from tunespace.recommenders.content_ease import ContentEASE, neighbour_similarity, unit_rows
from tunespace.recommenders.ease import EASE


class TestContentEASE(RecommenderContract):
    def make(self, **options):
        return ContentEASE(embeddings=cluster_embeddings(), l2=1.0, content_weight=0.5, neighbours=3, device="cpu",
                           **options)


def content_prior(neighbours: int) -> np.ndarray:
    embeddings = cluster_embeddings()
    units = unit_rows(embeddings.vectors, np.ones(len(embeddings.ids), bool))
    return neighbour_similarity(units, units, neighbours, same=True).toarray()


def test_no_content_weight_is_ease():
    train = two_clusters()
    plain = EASE(l2=2.0, device="cpu").fit(train)
    content = ContentEASE(embeddings=cluster_embeddings(), l2=2.0, content_weight=0.0, device="cpu").fit(train)
    np.testing.assert_allclose(content.score(np.arange(train.n_users)), plain.score(np.arange(train.n_users)),
                               atol=1e-5)


@pytest.mark.parametrize("weight", [0.3, 2.0])
def test_each_column_solves_its_constrained_least_squares(weight):
    """Column j minimises ||X_j - X b||^2 + l2 ||b - w S_j||^2 with b_j = 0 (solved here by dropping j)."""
    train = two_clusters()
    l2, neighbours = 1.5, 3
    model = ContentEASE(embeddings=cluster_embeddings(), l2=l2, content_weight=weight, neighbours=neighbours,
                        device="cpu").fit(train)
    x = train.binary().toarray().astype(np.float64)
    prior = weight * content_prior(neighbours)
    weights = model._weights.numpy()
    for j in range(x.shape[1]):
        others = [i for i in range(x.shape[1]) if i != j]
        a = x[:, others]
        b = np.linalg.solve(a.T @ a + l2 * np.eye(len(others)), a.T @ x[:, j] + l2 * prior[others, j])
        np.testing.assert_allclose(weights[others, j], b, atol=1e-5)
        assert weights[j, j] == 0.0


def test_prior_keeps_the_largest_positive_similarities_without_the_item_itself():
    prior = content_prior(neighbours=2)
    assert (np.diag(prior) == 0).all()
    assert ((prior > 0).sum(axis=0) <= 2).all()
    # within cluster A (items 0-3) every column's neighbours are cluster-A items
    assert set(np.flatnonzero(prior[:, 0])) <= {1, 2, 3}


def test_a_new_item_is_placed_as_an_unplayed_catalogue_item():
    """Item i8 has no plays: its column of B when fitted in the catalogue equals the new-item scorer's column when
    the model never saw it."""
    full = two_clusters()
    frame = pd.DataFrame({"user_id": full.users.ids[full.matrix.tocoo().row],
                          "track_id": full.items.ids[full.matrix.tocoo().col],
                          "timestamp": pd.Timestamp("2024-01-01", tz="UTC"), "weight": 1.0})
    items = IdMap(full.items.ids[:-1], name="track_id")
    without = InteractionMatrix.from_frame(frame, full.users, items)
    options = {"embeddings": cluster_embeddings(), "l2": 1.0, "content_weight": 0.7, "neighbours": 4,
               "device": "cpu"}
    fitted_with = ContentEASE(**options).fit(full)
    placed_later = ContentEASE(**options).fit(without).extended(full.items)
    users = np.arange(full.n_users)
    expected = fitted_with.score(users)[:, -1]
    got = placed_later._new_items(torch.from_numpy(users), 0, 1).numpy()[:, 0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(expected).max() > 0  # the content prior does place it
    stronger = ContentEASE(**options, cold_weight=2.1).fit(without).extended(full.items)
    np.testing.assert_allclose(stronger._new_items(torch.from_numpy(users), 0, 1).numpy()[:, 0], 3 * expected,
                               rtol=1e-5, atol=1e-6)  # the new items' column scales with cold_weight (0.7 -> 2.1)


def test_bad_options_are_named():
    with pytest.raises(ModelConfigError, match="content_weight >= 0"):
        ContentEASE(embeddings=cluster_embeddings(), content_weight=-1.0)


def test_saved_model_reloads(tmp_path):
    train = two_clusters()
    model = TestContentEASE().make(standardize=True).fit(train)
    model.save(tmp_path / "m")
    restored = ContentEASE.load(tmp_path / "m", device="cpu")
    np.testing.assert_allclose(restored.score(np.arange(train.n_users)), model.score(np.arange(train.n_users)))

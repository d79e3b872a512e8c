"""Ranking over an extended catalogue (train items, then cold items): content models place cold items from their
embeddings, the others never recommend them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.errors import ModelConfigError, UnknownIdError
from tunespace.evaluation.evaluate import evaluate
from tunespace.recommenders import (EASE, Bert4Rec, ContentKNN, Popularity, RandomBert4Rec, RandomShallowNet,
                                    ShallowNet)
from tunespace.recommenders.base import Recommender
from tests.recommenders.contract import cluster_embeddings, two_clusters

pytestmark = pytest.mark.usefixtures("single_thread")

COLD = ["cA", "cB", "cX"]  # like cluster A, like cluster B, and one without an embedding


def embeddings_with_cold() -> ItemEmbeddings:
    """The toy problem's embeddings plus cA (exactly item i0's vector) and cB (exactly item i4's)."""
    warm = cluster_embeddings()
    return ItemEmbeddings(ids=[*warm.ids, "cA", "cB"], vectors=np.vstack([warm.vectors, warm.vectors[[0, 4]]]))


@pytest.fixture
def train():
    return two_clusters()


@pytest.fixture
def catalogue(train):
    return train.items.extended(COLD)


def test_knn_scores_cold_items_by_cosine_to_the_user_mean(train, catalogue):
    vectors = embeddings_with_cold()
    model = ContentKNN(embeddings=vectors, standardize=False, device="cpu").fit(train)
    extended = model.extended(catalogue)
    assert extended.placed and len(extended.items) == train.n_items + 3
    scores = extended.score(np.arange(train.n_users))
    np.testing.assert_allclose(scores[:, :train.n_items], model.score(np.arange(train.n_users)), rtol=1e-6)
    seen = train.binary().toarray()
    unit = vectors.vectors / np.linalg.norm(vectors.vectors, axis=1, keepdims=True)
    means = seen @ cluster_embeddings().vectors / seen.sum(axis=1, keepdims=True)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    np.testing.assert_allclose(scores[:, train.n_items:train.n_items + 2], means @ unit[-2:].T, rtol=1e-5)
    assert np.isneginf(scores[:, -1]).all()  # cX has no embedding: it cannot be placed
    # the cold twin of each user's cluster ranks with the held-out item, above everything of the other cluster
    top = extended.recommend(np.arange(train.n_users), k=2).items
    for user in range(train.n_users):
        twin = catalogue.index_of(["cA" if user < 4 else "cB"])[0]
        assert set(top[user]) == {user, twin}


def test_chunks_across_the_boundary_change_nothing(train, catalogue):
    whole = ContentKNN(embeddings=embeddings_with_cold(), device="cpu").fit(train).extended(catalogue)
    chunked = ContentKNN(embeddings=embeddings_with_cold(), device="cpu", item_chunk=4, user_chunk=3).fit(train)
    chunked = chunked.extended(catalogue)  # chunk [8, 12) holds the last train item and the cold ones
    expected = whole.recommend(np.arange(train.n_users), k=len(catalogue))
    found = chunked.recommend(np.arange(train.n_users), k=len(catalogue))
    np.testing.assert_array_equal(expected.items, found.items)
    np.testing.assert_allclose(expected.scores, found.scores, rtol=1e-6)


@pytest.mark.parametrize("model", [Popularity(device="cpu"), EASE(l2=1.0, device="cpu"),
                                   RandomShallowNet(dim=4, epochs=1, device="cpu"),
                                   RandomBert4Rec(epochs=1, hidden=8, ff_dim=16, layers=1, device="cpu")],
                         ids=lambda m: m.name)
def test_models_without_content_never_recommend_cold_items(model, train, catalogue):
    extended = model.fit(train).extended(catalogue)
    assert not extended.placed and model.cold_items.startswith("never recommended")
    assert np.isneginf(extended.score(np.arange(train.n_users))[:, train.n_items:]).all()
    lists = extended.recommend(np.arange(train.n_users), k=len(catalogue)).items
    assert not (lists >= train.n_items).any()
    truth = pd.DataFrame({"user_id": [f"u{u}" for u in range(8)], "track_id": ["cA"] * 4 + ["cB"] * 4})
    assert evaluate(extended, truth, ks=(5,)).per_user["hit_rate@5"].eq(0).all()


def test_knn_hits_cold_items_that_popularity_cannot(train, catalogue):
    truth = pd.DataFrame({"user_id": [f"u{u}" for u in range(8)], "track_id": ["cA"] * 4 + ["cB"] * 4})
    knn = ContentKNN(embeddings=embeddings_with_cold(), device="cpu").fit(train)
    assert evaluate(knn.extended(catalogue), truth, ks=(2,)).per_user["hit_rate@2"].eq(1).all()
    with pytest.raises(UnknownIdError, match="cold"):
        evaluate(knn, truth, ks=(2,))  # the train catalogue alone does not hold them


def test_shallow_scores_a_cold_twin_exactly_like_its_train_item(train, catalogue):
    model = ShallowNet(embeddings=embeddings_with_cold(), epochs=3, lr=0.01, batch_size=8, device="cpu").fit(train)
    scores = model.extended(catalogue).score(np.arange(train.n_users))
    np.testing.assert_allclose(scores[:, catalogue.index_of(["cA", "cB"])], scores[:, [0, 4]], rtol=1e-5)
    assert np.isneginf(scores[:, -1]).all()


def test_bert4rec_gives_a_cold_item_its_projection_and_the_mean_bias(train, catalogue):
    model = Bert4Rec(embeddings=embeddings_with_cold(), epochs=3, hidden=8, ff_dim=16, layers=1, heads=2,
                     dropout=0.0, lr=0.01, device="cpu").fit(train)
    scores = model.extended(catalogue).score(np.arange(train.n_users))
    bias = model.net.item_bias.detach().numpy()
    shift = bias.mean() - bias[[0, 4]]  # every toy item has an embedding, so all are placed
    np.testing.assert_allclose(scores[:, catalogue.index_of(["cA", "cB"])], scores[:, [0, 4]] + shift, atol=1e-5)
    assert np.isneginf(scores[:, -1]).all()


def test_extension_must_keep_the_train_catalogue_and_a_loaded_model_needs_embeddings(train, catalogue, tmp_path):
    model = ContentKNN(embeddings=embeddings_with_cold(), device="cpu").fit(train)
    with pytest.raises(UnknownIdError, match="same order"):
        model.extended(type(catalogue)(catalogue.ids[::-1], name="track_id"))
    model.save(tmp_path / "knn")
    loaded = Recommender.load(tmp_path / "knn", device="cpu")
    with pytest.raises(ModelConfigError, match="embeddings"):
        loaded.extended(catalogue)
    np.testing.assert_allclose(loaded.extended(catalogue, embeddings_with_cold()).score(np.arange(8)),
                               model.extended(catalogue).score(np.arange(8)), rtol=1e-6)
    assert model.extended(train.items).placed  # nothing new: nothing to place


def test_new_only_ranks_the_cold_items_among_themselves(train, catalogue):
    knn = ContentKNN(embeddings=embeddings_with_cold(), device="cpu").fit(train)
    mixed = knn.extended(catalogue).score(np.arange(train.n_users))
    alone = knn.extended(catalogue, new_only=True)
    scores = alone.score(np.arange(train.n_users))
    assert np.isneginf(scores[:, :train.n_items]).all()
    np.testing.assert_array_equal(scores[:, train.n_items:], mixed[:, train.n_items:])
    top = alone.recommend(np.arange(train.n_users), k=2, exclude_seen=True).items
    assert set(np.unique(top[top >= 0])) <= set(catalogue.index_of(["cA", "cB"]))
    # item chunks that straddle the train/new boundary change nothing
    knn.item_chunk = 4
    chunked = knn.extended(catalogue, new_only=True).recommend(np.arange(train.n_users), k=2).items
    np.testing.assert_array_equal(chunked, top)

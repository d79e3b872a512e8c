"""Content hybrids of the trained models: a free item residual (dropped per item in training) and the
pretrained-unfrozen variant; and the standardisation every content model shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.recommenders.contract import RecommenderContract, cluster_embeddings, two_clusters
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.errors import ModelConfigError
from tunespace.recommenders import (
    Bert4Rec,
    ContentEASE,
    ContentKNN,
    MappedEASE,
    Recommender,
    ShallowNet,
    get_recommender,
)
from tunespace.recommenders.base import Standardiser
from tunespace.recommenders.bert4rec import FinetunedBert4Rec, HybridBert4Rec
from tunespace.recommenders.shallow import FinetunedShallowNet, HybridShallowNet

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL_BERT = dict(hidden=16, ff_dim=32, layers=1, heads=2, dropout=0.0, lr=0.01, device="cpu", standardize=False)
SMALL_SHALLOW = dict(epochs=10, lr=0.01, batch_size=64, device="cpu", standardize=False)


class TestHybridShallowNet(RecommenderContract):
    def make(self, **options):
        return HybridShallowNet(embeddings=cluster_embeddings(), **SMALL_SHALLOW, **options)


class TestFinetunedShallowNet(RecommenderContract):
    def make(self, **options):
        return FinetunedShallowNet(embeddings=cluster_embeddings(), **SMALL_SHALLOW, **options)


class TestHybridBert4Rec(RecommenderContract):
    def make(self, **options):
        # 50 epochs let the free residual memorise this 8-user toy (as bert4rec-random does); 20 do not
        return HybridBert4Rec(embeddings=cluster_embeddings(), epochs=20, **SMALL_BERT, **options)


class TestFinetunedBert4Rec(RecommenderContract):
    def make(self, **options):
        return FinetunedBert4Rec(embeddings=cluster_embeddings(), epochs=50, **SMALL_BERT, **options)


def scaled_embeddings() -> ItemEmbeddings:
    """The toy clusters with a first dimension 1000 times larger: raw inputs are dominated by it."""
    full = cluster_embeddings()
    return ItemEmbeddings(ids=full.ids, vectors=full.vectors * np.array([1000.0, 1.0, 1.0, 1.0], dtype=np.float32))


def z_scores(vectors: np.ndarray) -> np.ndarray:
    std = vectors.std(axis=0)
    return ((vectors - vectors.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def test_standardiser_by_hand():
    vectors = np.array([[1.0, 5.0], [3.0, 5.0]])
    standardiser = Standardiser().fit(vectors)
    np.testing.assert_allclose(standardiser.shift, [2.0, 5.0])
    np.testing.assert_allclose(standardiser.scale, [1.0, 1.0])  # std 1, and a constant dimension keeps scale 1
    out = standardiser(np.array([[4.0, 7.0], [9.0, 9.0]]), placed=np.array([True, False]))
    np.testing.assert_allclose(out, [[2.0, 2.0], [0.0, 0.0]])  # a row without an embedding stays zero
    assert Standardiser.from_state(standardiser.state()).shift.tolist() == [2.0, 5.0]
    with pytest.raises(ModelConfigError):
        Standardiser().fit(np.zeros((0, 2)))


@pytest.mark.parametrize("name", ["shallow", "bert4rec", "shallow-hybrid", "bert4rec-finetune"])
def test_trained_models_take_z_scored_content_and_give_new_items_the_same_shift(name, tmp_path):
    train = two_clusters()
    options = SMALL_BERT if name.startswith("bert4rec") else SMALL_SHALLOW
    model = get_recommender(name)(embeddings=scaled_embeddings(), **{**options, "epochs": 0,
                                                                     "standardize": True}).fit(train)
    table = model.net.content if name.startswith("bert4rec") else model.net.items
    expected = z_scores(scaled_embeddings().aligned(train.items))
    np.testing.assert_allclose(table.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / name)
    restored = Recommender.load(tmp_path / name, device="cpu")
    twin = ItemEmbeddings(ids=np.array(["c1"]), vectors=scaled_embeddings().vectors[[1]])
    extended = restored.extended(train.items.extended(["c1"]), twin)
    scores = extended.score(np.arange(train.n_users))
    if name.startswith("shallow"):  # a cold twin of item 1 scores as item 1 (no residual was trained)
        np.testing.assert_allclose(scores[:, -1], scores[:, 1], rtol=1e-5, atol=1e-6)
    else:  # same input vector as item 1: the same score up to the bias difference
        bias = restored.net.item_bias.detach().numpy()
        np.testing.assert_allclose(scores[:, -1], scores[:, 1] + bias.mean() - bias[1], atol=1e-5)


@pytest.mark.parametrize("model_class", [ContentKNN, ContentEASE, MappedEASE])
def test_closed_form_content_models_share_the_standardiser(model_class):
    train = two_clusters()
    raw = model_class(embeddings=scaled_embeddings(), standardize=False, device="cpu").fit(train)
    standardised = model_class(embeddings=scaled_embeddings(), standardize=True, device="cpu").fit(train)
    pre_scaled = ItemEmbeddings(ids=scaled_embeddings().ids,
                                vectors=z_scores(scaled_embeddings().aligned(train.items)))
    by_hand = model_class(embeddings=pre_scaled, standardize=False, device="cpu").fit(train)
    users = np.arange(train.n_users)
    np.testing.assert_allclose(standardised.score(users), by_hand.score(users), rtol=1e-4, atol=1e-5)
    if model_class is not MappedEASE:  # the map's train columns are EASE's whatever the content (shrink 0)
        assert not np.allclose(standardised.score(users), raw.score(users), atol=1e-4)


def test_hybrid_residual_starts_at_zero_and_learns_while_content_stays_frozen():
    train = two_clusters()
    untrained = HybridBert4Rec(embeddings=cluster_embeddings(), epochs=0, **SMALL_BERT).fit(train)
    assert torch.count_nonzero(untrained.net.residual) == 0
    plain = Bert4Rec(embeddings=cluster_embeddings(), epochs=0, **SMALL_BERT).fit(train)
    np.testing.assert_allclose(untrained.score(np.arange(8)), plain.score(np.arange(8)), atol=1e-6)
    model = HybridBert4Rec(embeddings=cluster_embeddings(), epochs=5, **SMALL_BERT).fit(train)
    assert torch.count_nonzero(model.net.residual) > 0
    assert np.array_equal(model.net.content.numpy(), cluster_embeddings().aligned(train.items))
    shallow = HybridShallowNet(embeddings=cluster_embeddings(), **{**SMALL_SHALLOW, "epochs": 5}).fit(train)
    assert torch.count_nonzero(shallow.net.residual) > 0
    assert np.array_equal(shallow.net.items.numpy(), cluster_embeddings().aligned(train.items))


def test_residual_is_dropped_per_item_in_training_and_kept_whole_in_evaluation():
    model = HybridBert4Rec(embeddings=cluster_embeddings(), epochs=0, residual_dropout=0.5, **SMALL_BERT)
    model.fit(two_clusters())
    net = model.net
    with torch.no_grad():
        net.residual.copy_(torch.randn_like(net.residual))
    generator = torch.Generator().manual_seed(0)
    model._resample_residual(generator)
    keep = net.residual_keep
    assert set(keep.unique().tolist()) <= {0.0, 2.0}  # inverted dropout: kept rows are scaled by 1 / (1 - p)
    projected = net.projection(net.content)
    net.train()
    np.testing.assert_allclose(net.item_vectors().detach(), (projected + net.residual * keep[:, None]).detach(),
                               atol=1e-6)
    np.testing.assert_allclose(net.item_vectors(torch.tensor([3, 3])).detach(),
                               (projected + net.residual * keep[:, None])[[3, 3]].detach(), atol=1e-6)
    net.eval()
    np.testing.assert_allclose(net.item_vectors().detach(), (projected + net.residual).detach(), atol=1e-6)


def test_a_new_item_is_scored_from_content_alone_without_a_residual():
    train = two_clusters()
    model = HybridShallowNet(embeddings=cluster_embeddings(), **{**SMALL_SHALLOW, "epochs": 5}).fit(train)
    twin = ItemEmbeddings(ids=np.array(["c1"]), vectors=cluster_embeddings().vectors[[1]])
    scores = model.extended(train.items.extended(["c1"]), twin).score(np.arange(train.n_users))
    net = model.net
    with torch.no_grad():
        users = net.user_vectors(torch.arange(train.n_users))
        content_only = users @ net.encode(net.items[[1]]).T
    np.testing.assert_allclose(scores[:, -1], content_only[:, 0].numpy(), atol=1e-5)
    assert not np.allclose(scores[:, -1], scores[:, 1], atol=1e-4)  # item 1 itself has its residual


def test_finetuning_moves_the_content_and_a_new_item_keeps_its_pretrained_vector():
    train = two_clusters()
    start = cluster_embeddings().aligned(train.items)
    bert = FinetunedBert4Rec(embeddings=cluster_embeddings(), epochs=5, **SMALL_BERT).fit(train)
    shallow = FinetunedShallowNet(embeddings=cluster_embeddings(), **{**SMALL_SHALLOW, "epochs": 5}).fit(train)
    for table in (bert.net.content, shallow.net.items):
        assert table.requires_grad and not np.allclose(table.detach().numpy(), start)
    twin = ItemEmbeddings(ids=np.array(["c1"]), vectors=cluster_embeddings().vectors[[1]])
    scores = shallow.extended(train.items.extended(["c1"]), twin).score(np.arange(train.n_users))
    with torch.no_grad():
        expected = shallow.net.user_vectors(torch.arange(8)) @ shallow.net.encode(torch.from_numpy(start[[1]])).T
    np.testing.assert_allclose(scores[:, -1], expected[:, 0].numpy(), atol=1e-5)


def test_saved_hybrids_reload_with_their_residual_and_finetuned_tables(tmp_path):
    train = two_clusters()
    for model in (HybridBert4Rec(embeddings=cluster_embeddings(), epochs=3, **SMALL_BERT),
                  FinetunedShallowNet(embeddings=cluster_embeddings(), **{**SMALL_SHALLOW, "epochs": 3})):
        model.fit(train)
        model.save(tmp_path / model.name)
        restored = Recommender.load(tmp_path / model.name, device="cpu")
        assert type(restored) is type(model)
        np.testing.assert_allclose(restored.score(np.arange(8)), model.score(np.arange(8)), rtol=1e-5, atol=1e-6)


def test_residual_dropout_is_checked():
    for model_class in (HybridBert4Rec, HybridShallowNet):
        with pytest.raises(ModelConfigError, match="residual_dropout"):
            model_class(embeddings=cluster_embeddings(), residual_dropout=1.0)
    # the defaults chosen on validation users (docs/recommenders.md): on for knn and the trained models, off for EASE's
    for model_class, default in ((ShallowNet, True), (Bert4Rec, True), (ContentKNN, True), (ContentEASE, False),
                                 (MappedEASE, False)):
        assert model_class(embeddings=cluster_embeddings()).params["standardize"] is default

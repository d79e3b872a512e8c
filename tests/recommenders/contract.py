"""The contract every recommender passes: subclass `RecommenderContract` and implement `make`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import NotFittedError, UnknownIdError
from tunespace.recommenders.base import Recommender

CLUSTER = 4  # items 0-3 form cluster A, items 4-7 cluster B; item 8 nobody has heard


def two_clusters() -> InteractionMatrix:
    """User u (0-7) has every item of its cluster except item u: the right next item is item u."""
    rows = []
    for user in range(2 * CLUSTER):
        first = 0 if user < CLUSTER else CLUSTER
        for item in range(first, first + CLUSTER):
            if item != user:
                rows.append((f"u{user}", f"i{item}", pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=item)))
    frame = pd.DataFrame(rows, columns=["user_id", "track_id", "timestamp"]).assign(weight=1.0)
    users = IdMap([f"u{u}" for u in range(2 * CLUSTER)], name="user_id")
    items = IdMap([f"i{i}" for i in range(2 * CLUSTER + 1)], name="track_id")
    return InteractionMatrix.from_frame(frame, users, items)


RAW = {"standardize": False}
"""The toy's third and fourth dimensions are mostly noise (0.05 N(0, 1)): z-scoring lifts that noise to the scale of
the cluster dimensions, so content models meet the toy with raw vectors; `standardize` has its own tests."""


def cluster_embeddings() -> ItemEmbeddings:
    """Cluster A points one way, cluster B another; within a cluster item vectors differ slightly."""
    rng = np.random.default_rng(0)
    vectors = np.zeros((2 * CLUSTER + 1, 4), dtype=np.float32)
    vectors[:CLUSTER, 0] = 1.0
    vectors[CLUSTER:2 * CLUSTER, 1] = 1.0
    vectors[-1, 2] = 1.0
    vectors += 0.05 * rng.standard_normal(vectors.shape).astype(np.float32)
    return ItemEmbeddings(ids=[f"i{i}" for i in range(2 * CLUSTER + 1)], vectors=vectors)


class RecommenderContract:
    """Shared tests. `make(**options)` returns an unfitted model; `expected_top1` is the known right answer."""

    def make(self, **options) -> Recommender:
        raise NotImplementedError

    def expected_top1(self, train: InteractionMatrix) -> np.ndarray:
        return np.arange(train.n_users)

    @pytest.fixture
    def train(self) -> InteractionMatrix:
        return two_clusters()

    @pytest.fixture
    def model(self, train) -> Recommender:
        return self.make().fit(train)

    def test_known_answer(self, model, train):
        top = model.recommend(np.arange(train.n_users), k=1).items[:, 0]
        np.testing.assert_array_equal(top, self.expected_top1(train))

    def test_never_recommends_seen_items(self, model, train):
        lists = model.recommend(np.arange(train.n_users), k=train.n_items).items
        seen = train.binary().toarray() > 0
        for user, row in enumerate(lists):
            valid = row[row >= 0]
            assert not seen[user, valid].any()
            assert set(valid) == set(np.flatnonzero(~seen[user]))  # everything else is ranked
            assert (row[len(valid):] == -1).all()

    def test_without_exclusion_ranks_whole_catalogue(self, model, train):
        lists = model.recommend(np.arange(train.n_users), k=train.n_items, exclude_seen=False).items
        assert (np.sort(lists, axis=1) == np.arange(train.n_items)).all()

    def test_scores_are_sorted_and_match_score(self, model, train):
        result = model.recommend(np.arange(train.n_users), k=5)
        assert (np.diff(result.scores, axis=1) <= 0).all()
        raw = model.score(np.arange(train.n_users))
        np.testing.assert_allclose(result.scores, np.take_along_axis(raw, result.items, axis=1), rtol=1e-6)

    def test_chunking_does_not_change_results(self, train):
        whole = self.make().fit(train).recommend(np.arange(train.n_users), k=6)
        chunked = self.make(user_chunk=3, item_chunk=2).fit(train).recommend(np.arange(train.n_users), k=6)
        np.testing.assert_array_equal(whole.items, chunked.items)
        np.testing.assert_allclose(whole.scores, chunked.scores, rtol=1e-6, atol=1e-6)

    def test_save_load_round_trip(self, model, train, tmp_path):
        model.save(tmp_path / "model")
        loaded = Recommender.load(tmp_path / "model")
        assert type(loaded) is type(model)
        before = model.recommend(np.arange(train.n_users), k=4)
        after = loaded.recommend(np.arange(train.n_users), k=4)
        np.testing.assert_array_equal(before.items, after.items)
        np.testing.assert_allclose(before.scores, after.scores, rtol=1e-6)
        assert loaded.items == model.items and loaded.users == model.users

    def test_deterministic(self, train):
        first = self.make().fit(train).recommend(np.arange(train.n_users), k=4)
        second = self.make().fit(train).recommend(np.arange(train.n_users), k=4)
        np.testing.assert_array_equal(first.items, second.items)

    def test_recommend_ids(self, model, train):
        expected = train.items.id_of(self.expected_top1(train)[:1])
        assert model.recommend_ids(["u0"], k=1) == [list(expected)]

    def test_errors(self, model, train):
        with pytest.raises(NotFittedError):
            self.make().recommend(np.array([0]), k=1)
        with pytest.raises(UnknownIdError):
            model.recommend(np.array([train.n_users]), k=1)
        with pytest.raises(UnknownIdError):
            model.recommend_ids(["nobody"], k=1)

"""The popularity-aware blend ("+pop"): hand-computed scores on a 3-user x 4-item toy, re-weighting without a
refit, save/load, and the shared recommender contract over a content base and a collaborative one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.recommenders.contract import RecommenderContract, cluster_embeddings
from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.recommenders import PopularityBlend, Recommender
from tunespace.recommenders.blend import popularity_z


class TestPopularityBlendOverKnn(RecommenderContract):
    def make(self, **options):
        return PopularityBlend(base="knn", weight=0.5, embeddings=cluster_embeddings(), device="cpu",
                               **{"standardize": False, **options})


class TestPopularityBlendOverPopularity(RecommenderContract):
    def make(self, **options):
        return PopularityBlend(base="popularity", weight=0.5, device="cpu", **options)

    def expected_top1(self, train):
        """Most users first (plays are one per user here, so the z term keeps that order), ties to the lower
        index, among unseen items."""
        counts = (train.binary().toarray() > 0).sum(axis=0)
        seen = train.binary().toarray() > 0
        return np.array([min(np.flatnonzero(~seen[u]), key=lambda i: (-counts[i], i)) for u in range(train.n_users)])


def toy() -> InteractionMatrix:
    """u0 played a 3 times and b once, u1 a once and c twice, u2 b once; nobody played d. Plays: a 4, b 2, c 2, d 0."""
    day = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [("u0", "a", 0, 1.0), ("u0", "a", 1, 2.0), ("u0", "b", 2, 1.0), ("u1", "a", 0, 1.0), ("u1", "c", 1, 2.0),
            ("u2", "b", 0, 1.0)]
    frame = pd.DataFrame([(u, i, day + pd.Timedelta(days=d), w) for u, i, d, w in rows],
                         columns=["user_id", "track_id", "timestamp", "weight"])
    return InteractionMatrix.from_frame(frame, IdMap(["u0", "u1", "u2"], name="user_id"),
                                        IdMap(["a", "b", "c", "d"], name="track_id"))


# a = (1, 0), b = (0, 1), c = (1, 1); d has no embedding (knn scores it -inf); e is a cold item (1, 0)
EMBEDDINGS = ItemEmbeddings(ids=["a", "b", "c", "e"], vectors=np.array([[1, 0], [0, 1], [1, 1], [1, 0]], np.float32))
R2, R5, R10 = math.sqrt(2), math.sqrt(5), math.sqrt(10)
# knn cosines: u0's mean (0.5, 0.5), u1's (1, 0.5), u2's (0, 1); columns a, b, c, d, e
KNN = np.array([[1 / R2, 1 / R2, 1.0, -np.inf, 1 / R2],
                [2 / R5, 1 / R5, 3 / R10, -np.inf, 2 / R5],
                [0.0, 1.0, 1 / R2, -np.inf, 0.0]])


def hand_z() -> np.ndarray:
    """z of log(1 + plays) over a, b, c, d (population sd), then the cold item e with no plays."""
    logs = [math.log(5), math.log(3), math.log(3), 0.0]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / 4)
    return np.array([(v - mean) / sd for v in [*logs, 0.0]])


def test_scores_are_base_plus_weight_times_popularity_z_cold_items_included():
    model = PopularityBlend(base="knn", weight=0.5, embeddings=EMBEDDINGS, device="cpu", standardize=False).fit(toy())
    expected = KNN + 0.5 * hand_z()
    np.testing.assert_allclose(model.score(np.arange(3)), expected[:, :4], rtol=1e-5)
    extended = model.extended(toy().items.extended(["e"]))
    scores = extended.score(np.arange(3))
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert np.isneginf(scores[:, 3]).all()  # unplaced by the base: stays -inf whatever the weight
    assert hand_z()[4] == pytest.approx(hand_z()[3])  # d and e both have no plays


def test_weight_zero_is_the_base_and_a_constant_catalogue_has_zero_z():
    model = PopularityBlend(base="knn", weight=0.0, embeddings=EMBEDDINGS, device="cpu").fit(toy())
    np.testing.assert_array_equal(model.score(np.arange(3)), model.base.score(np.arange(3)))
    z, cold = popularity_z(np.array([2.0, 2.0, 2.0]))
    assert z.tolist() == [0.0, 0.0, 0.0] and cold == 0.0


def test_with_weight_equals_a_refit_and_shares_the_fitted_base(fit_log):
    fitted = PopularityBlend(base="knn", weight=0.0, embeddings=EMBEDDINGS, device="cpu").fit(toy())
    fits = len(fit_log)
    reweighted = fitted.with_weight(2.0)
    assert len(fit_log) == fits and reweighted.base is fitted.base  # a re-score, not a refit
    refit = PopularityBlend(base="knn", weight=2.0, embeddings=EMBEDDINGS, device="cpu").fit(toy())
    np.testing.assert_array_equal(reweighted.score(np.arange(3)), refit.score(np.arange(3)))
    items = toy().items.extended(["e"])
    np.testing.assert_array_equal(reweighted.extended(items).score(np.arange(3)),
                                  refit.extended(items).score(np.arange(3)))
    assert fitted.weight == 0.0 and fitted.params["weight"] == 0.0 and reweighted.params["weight"] == 2.0


def test_save_load_round_trips_base_weight_and_plays(tmp_path):
    model = PopularityBlend(base="knn", weight=0.5, embeddings=EMBEDDINGS, device="cpu", standardize=False)
    model.fit(toy()).save(tmp_path / "blend")
    loaded = Recommender.load(tmp_path / "blend", device="cpu")
    assert isinstance(loaded, PopularityBlend) and loaded.weight == 0.5 and loaded.params["base"] == "knn"
    assert loaded.params["standardize"] is False
    # the loaded train matrix is binary: the plays must come from the saved state, not be recounted
    np.testing.assert_allclose(loaded.score(np.arange(3)), model.score(np.arange(3)), rtol=1e-6)
    cold = ItemEmbeddings(ids=["e"], vectors=np.array([[1, 0]], np.float32))
    items = toy().items.extended(["e"])
    np.testing.assert_allclose(loaded.extended(items, cold).score(np.arange(3)),
                               (KNN + 0.5 * hand_z()), rtol=1e-5)
    np.testing.assert_allclose(loaded.with_weight(1.0).score(np.arange(3)), (KNN + hand_z())[:, :4], rtol=1e-5)


def test_the_blend_stops_early_exactly_when_its_base_does():
    assert not PopularityBlend(base="knn", device="cpu").uses_validation
    assert PopularityBlend(base="shallow", device="cpu").uses_validation

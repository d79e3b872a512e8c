"""Tests for tunespace.evaluation.evaluate on a ContentKNN whose rankings are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix, pairs_to_csr
from tunespace.errors import UnknownIdError
from tunespace.evaluation.evaluate import EvaluationResult, compare, evaluate, hit_matrix
from tunespace.evaluation.metrics import PER_USER_METRICS, ranking_metrics
from tunespace.recommenders.knn import ContentKNN
from tests.evaluation.test_metrics import reference_metrics

D2, D3, D4, D5 = 0.6309297535714574, 0.5, 0.43067655807339306, 0.38685280723454163  # 1 / log2(r + 2), r = 1..4

TRACKS = ["t0", "t1", "t2", "t3", "t4", "t5"]
# t0 and t2 point the same way, so every user scores them equally
VECTORS = np.array([[1, 0], [0, 1], [1, 0], [1, 1], [-1, 0], [0, -1]], dtype=np.float32)


def interactions(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({
        "user_id": [u for u, _ in pairs],
        "track_id": [t for _, t in pairs],
        "timestamp": [start + pd.Timedelta(hours=h) for h in range(len(pairs))],
        "weight": np.ones(len(pairs), dtype=np.float32),
    })


@pytest.fixture(scope="module")
def knn() -> ContentKNN:
    train = interactions([("u0", "t0"), ("u1", "t1"), ("u1", "t3"), ("u2", "t4")])
    matrix = InteractionMatrix.from_frame(train, IdMap.from_values(["u0", "u1", "u2"], name="user_id"),
                                          IdMap(TRACKS, name="track_id"))
    model = ContentKNN(embeddings=ItemEmbeddings(ids=np.array(TRACKS), vectors=VECTORS), device="cpu",
                       standardize=False)
    return model.fit(matrix)


def truth_frame(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [u for u, _ in pairs], "track_id": [t for _, t in pairs]})


TRUTH = truth_frame([("u0", "t1"), ("u1", "t0"), ("u1", "t5"), ("u2", "t3")])


def test_scores_are_the_hand_computed_cosines(knn):
    s = 1 / np.sqrt(5)  # u1's profile mean is (0.5, 1), of norm sqrt(5)/2
    expected = np.array([
        [1, 0, 1, np.sqrt(0.5), -1, 0],                 # u0 = (1, 0)
        [s, 2 * s, s, 3 * s / np.sqrt(2), -s, -2 * s],  # u1 ~ (1, 2)
        [-1, 0, -1, -np.sqrt(0.5), 1, 0],               # u2 = (-1, 0)
    ])
    scores = knn.score(np.arange(3))
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    # the ties the test relies on are exact
    assert (scores[:, 0] == scores[:, 2]).all()
    assert scores[0, 1] == scores[0, 5] == 0 and scores[2, 1] == scores[2, 5] == 0


def test_recommend_ties_resolve_against_the_relevant_item(knn):
    plain = knn.recommend(np.arange(3), 5)
    assert plain.items.tolist() == [[2, 3, 1, 5, 4], [0, 2, 4, 5, -1], [1, 5, 3, 0, 2]]
    relevant = pairs_to_csr(knn.users.index_of(TRUTH["user_id"]), knn.items.index_of(TRUTH["track_id"]), 3, 6)
    pessimistic = knn.recommend(np.arange(3), 5, demote=relevant)
    # u0: t1 (relevant) ties with t5 at 0 and drops behind it; u1: t0 (relevant) ties with t2 and drops behind it
    assert pessimistic.items.tolist() == [[2, 3, 5, 1, 4], [2, 0, 4, 5, -1], [1, 5, 3, 0, 2]]


def test_per_user_metrics_by_hand(knn):
    result = evaluate(knn, TRUTH, ks=(5, 1, 3, 3))
    assert isinstance(result, EvaluationResult)
    assert result.model == "knn" and result.ks == (1, 3, 5)
    assert result.metric_names == [f"{m}@{k}" for k in (1, 3, 5) for m in PER_USER_METRICS]
    frame = result.per_user
    assert list(frame.columns) == ["user_id", "n_relevant", *result.metric_names]
    assert frame["user_id"].tolist() == ["u0", "u1", "u2"]
    assert frame["n_relevant"].tolist() == [1, 2, 1]
    expected = {
        # u0 list t2 t3 t5 t1 t4: its one relevant item at rank 4 (it lost the tie with t5)
        "u0": {"hit_rate@1": 0, "hit_rate@3": 0, "hit_rate@5": 1,
               "recall@3": 0, "recall@5": 1, "recall_capped@5": 1, "precision@3": 0, "precision@5": 0.2,
               "ndcg@3": 0, "ndcg@5": D4, "mrr@3": 0, "mrr@5": 1 / 4},
        # u1 list t2 t0 t4 t5 (-1): relevant t0 at rank 2 (lost the tie with t2) and t5 at rank 4
        "u1": {"hit_rate@1": 0, "hit_rate@3": 1, "hit_rate@5": 1,
               "recall@1": 0, "recall@3": 0.5, "recall@5": 1, "recall_capped@1": 0, "recall_capped@3": 0.5,
               "recall_capped@5": 1, "precision@3": 1 / 3, "precision@5": 0.4,
               "ndcg@1": 0, "ndcg@3": D2 / (1 + D2), "ndcg@5": (D2 + D4) / (1 + D2), "mrr@3": 0.5, "mrr@5": 0.5},
        # u2 list t1 t5 t3 t0 t2: relevant t3 at rank 3
        "u2": {"hit_rate@1": 0, "hit_rate@3": 1, "recall@3": 1, "recall_capped@3": 1, "precision@1": 0,
               "precision@3": 1 / 3, "precision@5": 0.2, "ndcg@3": D3, "ndcg@5": D3, "mrr@1": 0, "mrr@3": 1 / 3},
    }
    by_user = frame.set_index("user_id")
    for user, values in expected.items():
        for name, value in values.items():
            assert by_user.loc[user, name] == pytest.approx(value, abs=1e-6), (user, name)
    # coverage: top-1 {t2, t1}; top-3 and top-5 reach all six tracks
    assert result.coverage == pytest.approx({"coverage@1": 2 / 6, "coverage@3": 1.0, "coverage@5": 1.0})


def test_without_exclusion_seen_items_can_be_hits(knn):
    truth = truth_frame([("u0", "t0"), ("u2", "t4")])  # each user's own train item, scored 1 by cosine
    excluded = evaluate(knn, truth, ks=(1,))
    assert excluded.per_user["hit_rate@1"].tolist() == [0, 0]
    kept = evaluate(knn, truth, ks=(1,), exclude_seen=False)
    # u0: t0 ties t2 at 1 and loses, so rank 2; u2: t4 alone at the top
    assert kept.per_user["hit_rate@1"].tolist() == [0, 1]
    assert evaluate(knn, truth, ks=(2,), exclude_seen=False).per_user["mrr@2"].tolist() == [0.5, 1.0]


def test_duplicate_truth_pairs_count_once(knn):
    result = evaluate(knn, pd.concat([TRUTH, TRUTH.iloc[[0, 1]]], ignore_index=True), ks=(1, 3, 5))
    reference = evaluate(knn, TRUTH, ks=(1, 3, 5))
    pd.testing.assert_frame_equal(result.per_user, reference.per_user)


def test_summary_has_mean_and_interval(knn):
    result = evaluate(knn, TRUTH, ks=(1, 3, 5), name="content")
    summary = result.summary()
    assert list(summary.columns) == ["model", "metric", "mean", "low", "high", "users"]
    assert summary["metric"].tolist() == result.metric_names + ["coverage@1", "coverage@3", "coverage@5"]
    assert (summary["model"] == "content").all()
    row = summary.set_index("metric").loc["hit_rate@3"]
    assert row["mean"] == pytest.approx(2 / 3) and row["users"] == 3
    assert row["low"] < row["mean"] < row["high"]
    constant = summary.set_index("metric").loc["hit_rate@1"]  # every user 0: a zero-width interval
    assert constant["mean"] == constant["low"] == constant["high"] == 0
    coverage_row = summary.set_index("metric").loc["coverage@1"]
    assert coverage_row["mean"] == pytest.approx(1 / 3) and np.isnan(coverage_row["low"])
    wider = result.summary(level=0.99).set_index("metric").loc["hit_rate@3"]
    assert wider["low"] < row["low"] and wider["high"] > row["high"]


def test_unknown_truth_ids_raise(knn):
    with pytest.raises(UnknownIdError, match="t9"):
        evaluate(knn, truth_frame([("u0", "t1"), ("u1", "t9")]), ks=(1,))
    with pytest.raises(UnknownIdError):
        evaluate(knn, truth_frame([("u7", "t1")]), ks=(1,))


def test_hit_matrix_ignores_padding():
    relevant = sp.csr_matrix(np.array([[0, 0, 1], [0, 0, 0], [1, 0, 1]], dtype=np.float32))
    lists = np.array([[2, -1], [2, 1], [-1, 0]])
    # padding -1 of user r would otherwise share a code with the last item of user r - 1
    assert hit_matrix(lists, np.array([0, 1, 2]), relevant).tolist() == [[True, False], [False, False],
                                                                        [False, True]]


# ---------------------------------------------------------------- a larger random case

@pytest.fixture(scope="module")
def random_setup():
    rng = np.random.default_rng(2024)
    n_users, n_items = 60, 40
    users = [f"user{u:03d}" for u in range(n_users)]
    tracks = [f"track{i:03d}" for i in range(n_items)]
    pairs, truth = [], []
    for u in users:
        seen = rng.choice(n_items, size=int(rng.integers(1, 6)), replace=False)
        pairs += [(u, tracks[i]) for i in seen]
        unseen = np.setdiff1d(np.arange(n_items), seen)
        if rng.random() < 0.9:  # some train users are not evaluated
            truth += [(u, tracks[i]) for i in rng.choice(unseen, size=int(rng.integers(1, 5)), replace=False)]
    matrix = InteractionMatrix.from_frame(interactions(pairs), IdMap.from_values(users, name="user_id"),
                                          IdMap(tracks, name="track_id"))
    # small integer vectors: many exact score ties, so the tie rule matters
    vectors = rng.integers(-1, 2, size=(n_items, 3)).astype(np.float32)
    vectors[vectors.sum(axis=1) == 0] = 1.0
    other = rng.normal(size=(n_items, 3)).astype(np.float32)
    first = ContentKNN(embeddings=ItemEmbeddings(ids=np.array(tracks), vectors=vectors), device="cpu",
                       item_chunk=7, user_chunk=9, standardize=False).fit(matrix)
    second = ContentKNN(embeddings=ItemEmbeddings(ids=np.array(tracks), vectors=other), device="cpu",
                        standardize=False).fit(matrix)
    return first, second, truth_frame(truth)


def test_evaluate_equals_independent_metrics_of_recommend(random_setup):
    model, _, truth = random_setup
    result = evaluate(model, truth, ks=(1, 3), users_per_step=7)
    user_idx = model.users.index_of(truth["user_id"])
    item_idx = model.items.index_of(truth["track_id"])
    evaluated = sorted(set(user_idx.tolist()))
    relevant_sets = {u: set() for u in evaluated}
    for u, i in zip(user_idx.tolist(), item_idx.tolist()):
        relevant_sets[u].add(i)
    relevant = pairs_to_csr(user_idx, item_idx, len(model.users), len(model.items))
    lists = model.recommend(np.array(evaluated), 3, demote=relevant).items
    # the data has ties that demotion decides, so the pessimistic rule is exercised
    assert (model.recommend(np.array(evaluated), 3).items != lists).any()
    want = reference_metrics([row.tolist() for row in lists], [relevant_sets[u] for u in evaluated], (1, 3))
    assert result.per_user["user_id"].tolist() == list(model.users.id_of(evaluated))
    assert result.per_user["n_relevant"].tolist() == [len(relevant_sets[u]) for u in evaluated]
    for name, values in want.items():
        np.testing.assert_allclose(result.per_user[name].to_numpy(), values, rtol=0, atol=1e-12, err_msg=name)

    # and the lists themselves follow the pessimistic rule over the model's own scores
    scores = model.score(np.array(evaluated))
    seen = model.train_.binary()
    for row, u in enumerate(evaluated):
        candidates = [i for i in range(len(model.items)) if seen[u, i] == 0]
        ranked = sorted(candidates, key=lambda i: (-float(scores[row, i]), i in relevant_sets[u], i))[:3]
        assert lists[row].tolist() == ranked + [-1] * (3 - len(ranked))


def test_evaluate_equals_ranking_metrics_of_hits(random_setup):
    model, _, truth = random_setup
    result = evaluate(model, truth, ks=(2, 5))
    user_idx = model.users.index_of(truth["user_id"])
    relevant = pairs_to_csr(user_idx, model.items.index_of(truth["track_id"]), len(model.users), len(model.items))
    evaluated = np.unique(user_idx)
    lists = model.recommend(evaluated, 5, demote=relevant).items
    hits = np.array([[item in set(relevant[u].indices.tolist()) for item in row] for u, row in zip(evaluated, lists)])
    want = ranking_metrics(hits, np.diff(relevant.indptr)[evaluated], (2, 5))
    for name, values in want.items():
        np.testing.assert_array_equal(result.per_user[name].to_numpy(), values)


def test_progress_is_reported(random_setup):
    model, _, truth = random_setup
    seen = []
    evaluate(model, truth, ks=(1,), users_per_step=10, progress=seen.append)
    assert sum(seen) == truth["user_id"].nunique() and max(seen) == 10


def test_compare_two_models_gives_both_p_values(random_setup):
    first, second, truth = random_setup
    results = {"ints": evaluate(first, truth, ks=(3,), name="ints"),
               "normal": evaluate(second, truth, ks=(3,), name="normal")}
    table = compare(results, baseline="ints", metric="ndcg@3")
    assert len(table) == 1
    row = table.iloc[0]
    assert row["model"] == "normal" and row["baseline"] == "ints" and row["metric"] == "ndcg@3"
    for column in ("t_p", "wilcoxon_p", "t_p_holm", "wilcoxon_p_holm"):
        assert 0.0 <= row[column] <= 1.0
    a = results["normal"].per_user["ndcg@3"].to_numpy()
    b = results["ints"].per_user["ndcg@3"].to_numpy()
    assert row["mean_difference"] == pytest.approx(float(np.mean(a - b)), abs=1e-12)
    # one comparison: Holm leaves the p-values alone
    assert row["t_p_holm"] == pytest.approx(row["t_p"]) and row["wilcoxon_p_holm"] == pytest.approx(row["wilcoxon_p"])


def test_compare_matches_users_by_id(random_setup):
    first, second, truth = random_setup
    base = evaluate(first, truth, ks=(3,), name="ints")
    other = evaluate(second, truth, ks=(3,), name="normal")
    shuffled = EvaluationResult(model="normal", ks=other.ks, coverage=other.coverage,
                                per_user=other.per_user.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(compare({"ints": base, "normal": other}, "ints", "recall@3"),
                                  compare({"ints": base, "normal": shuffled}, "ints", "recall@3"))
    fewer = evaluate(second, truth[truth["user_id"] != truth["user_id"].iloc[0]], ks=(3,))
    with pytest.raises(ValueError, match="other users"):
        compare({"ints": base, "normal": fewer}, "ints", "recall@3")

"""Tests for tunespace.evaluation.similarity: `similarity_per_query` against a hand-ranked 2-D catalogue, the
pessimistic tie rule (a relevant track tied with a non-relevant one is ranked after it), exclusion of the query
itself, cosine scale invariance, chunking, an independent brute-force ranking in numpy (random data, with exact
ties from duplicated directions, small and large catalogues), every `SimilarityError`, and
`shared_group_relevance` on a hand-made membership matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tunespace.evaluation.similarity import SimilarityError, shared_group_relevance, similarity_per_query

# ---------------------------------------------------------------- helpers


def relevance_matrix(rows: list[list[int]], n_tracks: int) -> sp.csr_matrix:
    """(len(rows), n_tracks) bool CSR with True at the listed tracks of each row."""
    dense = np.zeros((len(rows), n_tracks), dtype=bool)
    for row, tracks in enumerate(rows):
        dense[row, tracks] = True
    return sp.csr_matrix(dense)


def brute_force_metrics(vectors: np.ndarray, queries: np.ndarray, relevance: np.ndarray,
                        k: int) -> dict[str, np.ndarray]:
    """ndcg@k, hit_rate@k and recall@k by sorting every track per query in float64: cosine descending, then
    non-relevant before relevant, then lower index first; the query itself is dropped before ranking."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    ndcg, hit_rate, recall = [], [], []
    for row, query in enumerate(queries):
        cosine = np.round(unit @ unit[query], 10)  # duplicated directions tie exactly
        candidates = np.array([t for t in range(len(vectors)) if t != query])
        order = np.lexsort((candidates, relevance[row, candidates], -cosine[candidates]))
        ranked = candidates[order][:k]
        hits = relevance[row, ranked]
        n_relevant = relevance[row].sum()
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(n_relevant, k)))
        ndcg.append(dcg / ideal)
        hit_rate.append(float(hits.any()))
        recall.append(hits.sum() / n_relevant)
    return {f"ndcg@{k}": np.array(ndcg), f"hit_rate@{k}": np.array(hit_rate), f"recall@{k}": np.array(recall)}


def random_case(seed: int, n_tracks: int, n_queries: int, n_directions: int, dim: int = 3):
    """Tracks drawn from a few directions (so exact cosine ties occur), some scaled by powers of two (exact in
    float), with random relevance: at least one relevant track per query, never the query itself."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_directions, dim))
    vectors = directions[rng.integers(0, n_directions, n_tracks)] * 2.0 ** rng.integers(-2, 3, (n_tracks, 1))
    queries = rng.choice(n_tracks, n_queries, replace=False)
    relevance = rng.random((n_queries, n_tracks)) < 0.2
    relevance[np.arange(n_queries), queries] = False
    for row, query in enumerate(queries):
        if not relevance[row].any():
            relevance[row, (query + 1) % n_tracks] = True
    return vectors, queries, relevance


# ---------------------------------------------------------------- hand-computed ranking

# Five tracks in 2-D and their cosines with the two queries (track 0 = [1, 0] and track 2 = [0, 1]):
#   track      vector      cos with 0          cos with 2
#   0          [1, 0]      (itself)            0
#   1          [2, 1]      2/sqrt5 = 0.894     1/sqrt5 = 0.447
#   2          [0, 1]      0                   (itself)
#   3          [1, 1]      1/sqrt2 = 0.707     1/sqrt2 = 0.707
#   4          [-1, 0.1]   -0.995              0.0995
# Query 0 ranks 1, 3, 2, 4; relevant {3, 4} -> hits [F, T, F, T].
# Query 2 ranks 3, 1, 4, 0; relevant {0, 3} -> hits [T, F, F, T].
HAND_VECTORS = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.1]])
HAND_QUERIES = np.array([0, 2])
HAND_RELEVANCE = relevance_matrix([[3, 4], [0, 3]], 5)
D2, D3, D4 = 1.0, 1 / math.log2(3), 1 / math.log2(5)  # discounts of ranks 1, 2, 4


def test_hand_computed_ranking_metrics():
    result = similarity_per_query(HAND_VECTORS, HAND_QUERIES, HAND_RELEVANCE, ks=(1, 2, 4))
    # query 0: ndcg@2 = (1/log2 3) / (1 + 1/log2 3); nothing at rank 1; first hit at rank 2; 2 of 2 found by 4
    # query 2: ndcg@2 = 1 / (1 + 1/log2 3); hit at rank 1; ndcg@4 = (1 + 1/log2 5) / (1 + 1/log2 3)
    assert result["ndcg@2"] == pytest.approx([D3 / (D2 + D3), D2 / (D2 + D3)], abs=1e-12)
    assert result["hit_rate@1"] == pytest.approx([0.0, 1.0], abs=1e-12)
    assert result["mrr@2"] == pytest.approx([0.5, 1.0], abs=1e-12)
    assert result["recall@2"] == pytest.approx([0.5, 0.5], abs=1e-12)
    assert result["recall@4"] == pytest.approx([1.0, 1.0], abs=1e-12)
    assert result["ndcg@4"] == pytest.approx([(D3 + D4) / (D2 + D3), (D2 + D4) / (D2 + D3)], abs=1e-12)


def test_k_beyond_catalogue_counts_every_other_track():
    # 4 rankable tracks per query; K = 50 sees them all, so recall is 1 and ndcg equals ndcg@4
    result = similarity_per_query(HAND_VECTORS, HAND_QUERIES, HAND_RELEVANCE, ks=(4, 50))
    assert result["recall@50"] == pytest.approx([1.0, 1.0], abs=1e-12)
    assert result["ndcg@50"] == pytest.approx(result["ndcg@4"], abs=1e-12)


def test_query_never_counts_in_its_own_ranking():
    # the query's own vector (cosine 1) and an exact copy of it (track 1, also cosine 1): the copy is relevant
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    result = similarity_per_query(vectors, np.array([0]), relevance_matrix([[1]], 4), ks=(1, 3))
    assert result["mrr@1"] == pytest.approx([1.0], abs=1e-12)  # the copy is first: the query took no rank
    assert result["hit_rate@1"] == pytest.approx([1.0], abs=1e-12)
    # and with only a far track relevant, the query still takes no slot: [0, 1] comes third of the three others
    result = similarity_per_query(vectors, np.array([0]), relevance_matrix([[2]], 4), ks=(3,))
    assert result["mrr@3"] == pytest.approx([1 / 3], abs=1e-12)


# ---------------------------------------------------------------- ties


@pytest.mark.parametrize("relevant_track", [1, 2])
def test_relevant_track_loses_an_exact_tie(relevant_track):
    # tracks 1 = [1, 1] and 2 = [1, -1] have exactly the same cosine with the query [1, 0]; track 3 is far behind.
    # Whichever of the two is relevant (lower index or higher), it must come second.
    vectors = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 0.2]])
    result = similarity_per_query(vectors, np.array([0]), relevance_matrix([[relevant_track]], 4), ks=(1, 2))
    assert result["hit_rate@1"] == pytest.approx([0.0], abs=1e-12)
    assert result["mrr@2"] == pytest.approx([0.5], abs=1e-12)
    assert result["ndcg@2"] == pytest.approx([1 / math.log2(3)], abs=1e-12)


def test_all_tied_relevant_tracks_come_after_all_tied_non_relevant_ones():
    # every other track has cosine 0 with the query: the two relevant ones (1 and 2) go after the three others
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, -1.0], [0.0, 0.5]])
    result = similarity_per_query(vectors, np.array([0]), relevance_matrix([[1, 2]], 6), ks=(3, 5))
    assert result["hit_rate@3"] == pytest.approx([0.0], abs=1e-12)
    assert result["mrr@5"] == pytest.approx([0.25], abs=1e-12)
    assert result["ndcg@5"] == pytest.approx([(1 / math.log2(5) + 1 / math.log2(6)) / (1 + 1 / math.log2(3))],
                                             abs=1e-12)


# ---------------------------------------------------------------- against an independent implementation


@pytest.mark.parametrize(("seed", "n_tracks", "n_queries", "n_directions"), [
    (0, 40, 10, 12), (1, 40, 10, 12), (2, 40, 10, 12),
    (3, 1024, 20, 400),  # large enough for the block-maximum prefilter of top_k, with many exact ties
])
def test_agrees_with_brute_force(seed, n_tracks, n_queries, n_directions):
    vectors, queries, relevance = random_case(seed, n_tracks=n_tracks, n_queries=n_queries, n_directions=n_directions)
    result = similarity_per_query(vectors, queries, sp.csr_matrix(relevance), ks=(5,))
    expected = brute_force_metrics(vectors, queries, relevance, k=5)
    for name, values in expected.items():
        np.testing.assert_allclose(result[name], values, rtol=0, atol=1e-12, err_msg=name)


def test_vectors_are_normalised_inside():
    _, queries, relevance = random_case(4, n_tracks=40, n_queries=10, n_directions=12)
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((40, 6))  # distinct directions: no ties for a rescaling to break
    scaled = vectors * rng.uniform(0.01, 100.0, (40, 1))
    plain = similarity_per_query(vectors, queries, sp.csr_matrix(relevance), ks=(1, 5, 10))
    rescaled = similarity_per_query(scaled, queries, sp.csr_matrix(relevance), ks=(1, 5, 10))
    assert plain.keys() == rescaled.keys()
    for name in plain:
        np.testing.assert_array_equal(plain[name], rescaled[name], err_msg=name)


def test_query_chunking_and_dense_relevance_do_not_change_results():
    vectors, queries, relevance = random_case(5, n_tracks=40, n_queries=10, n_directions=12)
    whole = similarity_per_query(vectors, queries, sp.csr_matrix(relevance), ks=(5, 10))
    chunked = similarity_per_query(vectors, queries, relevance, ks=(5, 10), query_chunk=3)
    for name in whole:
        np.testing.assert_array_equal(whole[name], chunked[name], err_msg=name)


def test_output_has_one_value_per_query_for_each_metric_and_k():
    result = similarity_per_query(HAND_VECTORS, HAND_QUERIES, HAND_RELEVANCE, ks=(1, 3))
    for metric in ("ndcg", "hit_rate", "recall", "mrr"):
        for k in (1, 3):
            assert result[f"{metric}@{k}"].shape == (2,)


# ---------------------------------------------------------------- errors


def test_relevance_shape_mismatch_is_rejected():
    with pytest.raises(SimilarityError, match="shape"):
        similarity_per_query(HAND_VECTORS, HAND_QUERIES, relevance_matrix([[3]], 5))  # one row for two queries
    with pytest.raises(SimilarityError, match="shape"):
        similarity_per_query(HAND_VECTORS, HAND_QUERIES, relevance_matrix([[3], [1]], 6))  # one column too many


@pytest.mark.parametrize("bad_query", [-1, 5])
def test_query_out_of_range_is_rejected(bad_query):
    with pytest.raises(SimilarityError, match="query rows"):
        similarity_per_query(HAND_VECTORS, np.array([0, bad_query]), relevance_matrix([[3], [1]], 5))


def test_query_without_relevant_track_is_rejected():
    with pytest.raises(SimilarityError, match="no relevant track"):
        similarity_per_query(HAND_VECTORS, HAND_QUERIES, relevance_matrix([[3], []], 5))


def test_explicitly_stored_zero_is_not_a_relevant_track():
    stored_zero = sp.csr_matrix((np.array([1.0, 0.0]), np.array([3, 1]), np.array([0, 1, 2])), shape=(2, 5))
    assert stored_zero.nnz == 2
    with pytest.raises(SimilarityError, match="no relevant track"):
        similarity_per_query(HAND_VECTORS, HAND_QUERIES, stored_zero)


def test_query_relevant_to_itself_is_rejected():
    with pytest.raises(SimilarityError, match="relevant to itself"):
        similarity_per_query(HAND_VECTORS, HAND_QUERIES, relevance_matrix([[3], [1, 2]], 5))


def test_similarity_error_is_a_value_error():
    assert issubclass(SimilarityError, ValueError)


# ---------------------------------------------------------------- shared_group_relevance


# groups x tracks: group 0 = {0, 1, 2}, group 1 = {2, 3}, group 2 = {4}; track 5 is in no group, track 2 in two
GROUPS = sp.csr_matrix(np.array([
    [1, 1, 1, 0, 0, 0],
    [0, 0, 1, 1, 0, 0],
    [0, 0, 0, 0, 1, 0],
]))


def test_shared_group_relevance_by_hand():
    relevance = shared_group_relevance(GROUPS, np.array([2, 0, 3, 4, 5]))
    expected = np.array([
        [1, 1, 0, 1, 0, 0],  # track 2 shares group 0 with 0, 1 and group 1 with 3; itself left out
        [0, 1, 1, 0, 0, 0],  # track 0: group 0 only
        [0, 0, 1, 0, 0, 0],  # track 3: group 1 only
        [0, 0, 0, 0, 0, 0],  # track 4: alone in its group
        [0, 0, 0, 0, 0, 0],  # track 5: in no group
    ], dtype=bool)
    assert sp.issparse(relevance) and relevance.shape == (5, 6) and relevance.dtype == bool
    np.testing.assert_array_equal(relevance.toarray(), expected)
    assert relevance.nnz == expected.sum()  # no stored False entries (the query cell is dropped, not zeroed)


def test_shared_group_relevance_ignores_membership_weights_and_repeats_queries():
    weighted = GROUPS.multiply(np.array([[3], [0.5], [7]])).tocsr()  # counts or weights instead of 0/1
    plain = shared_group_relevance(GROUPS, np.array([2, 2, 1]))
    np.testing.assert_array_equal(shared_group_relevance(weighted, np.array([2, 2, 1])).toarray(), plain.toarray())
    np.testing.assert_array_equal(plain.toarray()[0], plain.toarray()[1])
    np.testing.assert_array_equal(plain.toarray()[2], [1, 0, 1, 0, 0, 0])


def test_shared_group_relevance_feeds_similarity_per_query():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0], [0.0, -1.0]])
    queries = np.array([0, 2])  # track 0 shares group 0 with {1, 2}; track 2 shares with {0, 1, 3}
    result = similarity_per_query(vectors, queries, shared_group_relevance(GROUPS, queries), ks=(1,))
    assert result["hit_rate@1"] == pytest.approx([1.0, 1.0], abs=1e-12)  # nearest: 1 for query 0, 3 for query 2

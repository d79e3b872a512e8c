"""Tests for tunespace.evaluation.ranking.top_k: chunking, exclusion, padding, and pessimistic deterministic ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tunespace.errors import TunespaceError
from tunespace.evaluation.ranking import MAX_ITEMS, RankingError, TopK, top_k

NEG_INF = float("-inf")


# ---------------------------------------------------------------- helpers

def table_scorer(scores: np.ndarray):
    """A scorer reading a fixed (n_users, n_items) table, so every chunking sees bit-identical scores."""
    table = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))

    def scorer(users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        return table[users, start:stop].clone()

    return scorer


def buffer_scorer(scores: np.ndarray, calls: list | None = None):
    """Like table_scorer, but fills and returns the buffer top_k offers, as the embedding models do."""
    table = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))

    def scorer(users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert out is not None and out.dtype == torch.float32 and out.is_contiguous()
        assert out.shape == (len(users), stop - start)
        if calls is not None:
            calls.append((len(users), start, stop))
        out.copy_(table[users, start:stop])
        return out

    return scorer


def matmul_scorer(user_vectors: np.ndarray, item_vectors: np.ndarray):
    """A scorer that multiplies embedding blocks, the way the embedding models do."""
    users_t = torch.from_numpy(np.asarray(user_vectors, dtype=np.float32))
    items_t = torch.from_numpy(np.asarray(item_vectors, dtype=np.float32))

    def scorer(users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.matmul(users_t[users], items_t[start:stop].T, out=out)

    return scorer


def random_csr(rng: np.random.Generator, n_users: int, n_items: int, density: float) -> sp.csr_matrix:
    mask = rng.random((n_users, n_items)) < density
    return sp.csr_matrix(mask.astype(np.float32))


def csr_rows(matrix: sp.csr_matrix | None, n_users: int) -> list[set[int]]:
    if matrix is None:
        return [set() for _ in range(n_users)]
    return [set(matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]].tolist()) for u in range(n_users)]


def reference_top_k(scores: np.ndarray, users, k: int, exclude=None, demote=None) -> tuple[np.ndarray, np.ndarray]:
    """Sort every rankable item of each user with sorted() by (-score, demoted?, index); pad with -1 / -inf."""
    scores = np.asarray(scores, dtype=np.float32)
    excluded = csr_rows(exclude, scores.shape[0])
    demoted = csr_rows(demote, scores.shape[0])
    items_out, scores_out = [], []
    for u in users:
        u = int(u)
        candidates = [i for i in range(scores.shape[1])
                      if i not in excluded[u] and float(scores[u, i]) != NEG_INF]
        ranked = sorted(candidates, key=lambda i: (-float(scores[u, i]), 1 if i in demoted[u] else 0, i))[:k]
        items_out.append(ranked + [-1] * (k - len(ranked)))
        scores_out.append([float(scores[u, i]) for i in ranked] + [NEG_INF] * (k - len(ranked)))
    return (np.array(items_out, dtype=np.int64).reshape(len(items_out), k),
            np.array(scores_out, dtype=np.float32).reshape(len(scores_out), k))


def assert_topk_equal(got: TopK, want_items: np.ndarray, want_scores: np.ndarray) -> None:
    np.testing.assert_array_equal(got.items, want_items)
    np.testing.assert_array_equal(got.scores, want_scores)


def assert_scores_match_scorer(result: TopK, scores: np.ndarray, users) -> None:
    """Every returned score is the scorer's score of the returned item; padding has -inf."""
    for row, u in enumerate(users):
        for item, score in zip(result.items[row], result.scores[row]):
            if item == -1:
                assert score == NEG_INF
            else:
                assert score == scores[u, item]


# ---------------------------------------------------------------- chunking

N_USERS, N_ITEMS = 23, 50


@pytest.fixture(scope="module")
def random_problem():
    rng = np.random.default_rng(42)
    user_vectors = rng.normal(size=(N_USERS, 8)).astype(np.float32)
    item_vectors = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    scores = (torch.from_numpy(user_vectors) @ torch.from_numpy(item_vectors).T).numpy()
    exclude = random_csr(rng, N_USERS, N_ITEMS, 0.2)
    demote = random_csr(rng, N_USERS, N_ITEMS, 0.1)
    return scores, exclude, demote


@pytest.mark.parametrize("k", [1, 5, 10, 37, 60])
@pytest.mark.parametrize(("user_chunk", "item_chunk"), [(3, 7), (8, 1), (5, 13), (4, 50), (23, 49), (100, 3)])
def test_chunked_equals_unchunked(random_problem, k, user_chunk, item_chunk):
    scores, exclude, demote = random_problem
    users = np.arange(N_USERS)
    whole = top_k(table_scorer(scores), users, N_ITEMS, k, exclude=exclude, demote=demote)
    chunked = top_k(buffer_scorer(scores), users, N_ITEMS, k, exclude=exclude, demote=demote,
                    user_chunk=user_chunk, item_chunk=item_chunk)
    assert whole.items.shape == (N_USERS, k) and whole.items.dtype == np.int64
    assert whole.scores.shape == (N_USERS, k) and whole.scores.dtype == np.float32
    np.testing.assert_array_equal(chunked.items, whole.items)
    np.testing.assert_array_equal(chunked.scores, whole.scores)
    assert_topk_equal(whole, *reference_top_k(scores, users, k, exclude, demote))
    assert_scores_match_scorer(chunked, scores, users)


def test_live_matmul_scorer_chunked_equals_unchunked():
    """Dyadic embeddings keep the matmul exact whatever the block shape; small integers also make many ties."""
    rng = np.random.default_rng(7)
    user_vectors = rng.integers(-3, 4, size=(17, 4)).astype(np.float32) / 4
    item_vectors = rng.integers(-3, 4, size=(41, 4)).astype(np.float32) / 2
    scores = user_vectors @ item_vectors.T
    exclude = random_csr(rng, 17, 41, 0.15)
    demote = random_csr(rng, 17, 41, 0.2)
    scorer = matmul_scorer(user_vectors, item_vectors)
    users = np.arange(17)
    for k in (1, 4, 9, 41):
        whole = top_k(scorer, users, 41, k, exclude=exclude, demote=demote)
        for user_chunk, item_chunk in [(3, 7), (2, 5), (17, 40)]:
            chunked = top_k(scorer, users, 41, k, exclude=exclude, demote=demote,
                            user_chunk=user_chunk, item_chunk=item_chunk)
            assert_topk_equal(chunked, whole.items, whole.scores)
        assert_topk_equal(whole, *reference_top_k(scores, users, k, exclude, demote))


# ---------------------------------------------------------------- agreement with sorted(), heavy ties

def tie_problems():
    rng = np.random.default_rng(3)
    base = rng.normal(scale=2.0, size=(19, 31)).astype(np.float32)
    yield "rounded", np.round(base)
    yield "coarse", np.round(base / 3)  # nearly everything tied
    yield "zeros", np.zeros((19, 31), dtype=np.float32)
    yield "signed-zeros", np.where(rng.random((19, 31)) < 0.5, -0.0, 0.0).astype(np.float32)
    wide = rng.normal(size=(19, 31)) * 10.0 ** rng.integers(-40, 38, size=(19, 31))
    yield "wide-range", np.where(rng.random((19, 31)) < 0.3, np.round(wide[:, :1]), wide).astype(np.float32)


@pytest.mark.parametrize("with_demote", [True, False])
@pytest.mark.parametrize(("user_chunk", "item_chunk"), [(1024, 65536), (4, 7), (10, 2), (19, 1)])
def test_matches_sorted_reference_with_heavy_ties(with_demote, user_chunk, item_chunk):
    rng = np.random.default_rng(11)
    for _, scores in tie_problems():
        n_users, n_items = scores.shape
        exclude = random_csr(rng, n_users, n_items, 0.2)
        demote = random_csr(rng, n_users, n_items, 0.3) if with_demote else None
        users = np.arange(n_users)
        for k in (1, 2, 5, 31, 40):
            got = top_k(table_scorer(scores), users, n_items, k, exclude=exclude, demote=demote,
                        user_chunk=user_chunk, item_chunk=item_chunk)
            assert_topk_equal(got, *reference_top_k(scores, users, k, exclude, demote))
            assert_scores_match_scorer(got, scores, users)


def test_ties_never_favour_the_ground_truth():
    n_items = 12
    scores = np.zeros((2, n_items), dtype=np.float32)
    scores[1, [2, 5, 9]] = 1.0  # user 1: three items tied on top, the rest tied below
    demote = sp.csr_matrix(([1.0] * 5, ([0, 0, 0, 1, 1], [0, 3, 7, 2, 10])), shape=(2, n_items))
    for item_chunk in (n_items, 5, 1):
        got = top_k(table_scorer(scores), np.arange(2), n_items, n_items, demote=demote, item_chunk=item_chunk)
        # equal scores: non-relevant items first, lower index first; relevant ones last
        assert got.items[0].tolist() == [1, 2, 4, 5, 6, 8, 9, 10, 11, 0, 3, 7]
        assert got.items[1].tolist() == [5, 9, 2, 0, 1, 3, 4, 6, 7, 8, 11, 10]
        # the first k positions are the same pessimistic prefix
        short = top_k(table_scorer(scores), np.arange(2), n_items, 3, demote=demote, item_chunk=item_chunk)
        np.testing.assert_array_equal(short.items, got.items[:, :3])
        # without demotion the lower index wins every tie
        plain = top_k(table_scorer(scores), np.arange(2), n_items, n_items, item_chunk=item_chunk)
        assert plain.items[0].tolist() == list(range(n_items))
        assert plain.items[1].tolist() == [2, 5, 9, 0, 1, 3, 4, 6, 7, 8, 10, 11]


def test_relevant_item_tied_at_the_cut_is_left_out():
    """A relevant item tied with a non-relevant one at the k-th place loses the place, whichever index is lower."""
    scores = np.array([[3.0, 2.0, 2.0, 1.0], [3.0, 2.0, 2.0, 1.0]], dtype=np.float32)
    demote = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 2])), shape=(2, 4))
    got = top_k(table_scorer(scores), np.arange(2), 4, 2, demote=demote)
    assert got.items.tolist() == [[0, 2], [0, 1]]
    got = top_k(table_scorer(scores), np.arange(2), 4, 2, demote=demote, item_chunk=2)
    assert got.items.tolist() == [[0, 2], [0, 1]]
    # a strictly higher score still wins over a tie-break
    demote_top = sp.csr_matrix(([1.0], ([0], [0])), shape=(2, 4))
    assert top_k(table_scorer(scores), np.arange(2), 4, 1, demote=demote_top).items.tolist() == [[0], [0]]


# ---------------------------------------------------------------- exclusion and padding

def test_excluded_items_never_appear(random_problem):
    scores, exclude, _ = random_problem
    rows = csr_rows(exclude, N_USERS)
    got = top_k(table_scorer(scores), np.arange(N_USERS), N_ITEMS, N_ITEMS, exclude=exclude, item_chunk=9)
    for u in range(N_USERS):
        listed = [i for i in got.items[u].tolist() if i != -1]
        assert not rows[u] & set(listed)
        assert len(listed) == len(set(listed)) == N_ITEMS - len(rows[u])
        assert set(listed) | rows[u] == set(range(N_ITEMS))
        # padding follows the real items
        assert (got.items[u, len(listed):] == -1).all()
        assert np.isneginf(got.scores[u, len(listed):]).all()
        assert np.isfinite(got.scores[u, :len(listed)]).all()


def test_fewer_rankable_items_than_k_pads():
    scores = np.array([[0.5, 0.9, 0.1, 0.7]], dtype=np.float32)
    exclude = sp.csr_matrix(([1.0, 1.0], ([0, 0], [1, 2])), shape=(1, 4))
    for item_chunk in (4, 3, 1):
        got = top_k(table_scorer(scores), np.array([0]), 4, 3, exclude=exclude, item_chunk=item_chunk)
        assert got.items.tolist() == [[3, 0, -1]]
        assert got.scores[0, :2].tolist() == [np.float32(0.7), np.float32(0.5)]
        assert got.scores[0, 2] == NEG_INF


def test_everything_excluded_gives_only_padding():
    scores = np.ones((2, 3), dtype=np.float32)
    exclude = sp.csr_matrix(np.array([[1, 1, 1], [0, 1, 0]], dtype=np.float32))
    got = top_k(table_scorer(scores), np.arange(2), 3, 2, exclude=exclude)
    assert got.items.tolist() == [[-1, -1], [0, 2]]
    assert np.isneginf(got.scores[0]).all()


def test_k_larger_than_catalogue():
    scores = np.array([[0.2, 0.8, 0.5], [0.0, 0.0, 1.0]], dtype=np.float32)
    for item_chunk in (3, 2, 1):
        got = top_k(table_scorer(scores), np.arange(2), 3, 7, item_chunk=item_chunk)
        assert got.items.shape == (2, 7)
        assert got.items.tolist() == [[1, 2, 0, -1, -1, -1, -1], [2, 0, 1, -1, -1, -1, -1]]
        assert np.isneginf(got.scores[:, 3:]).all()
        assert_scores_match_scorer(got, scores, [0, 1])


def test_negative_and_positive_zero_tie():
    scores = np.array([[-0.0, 0.0, -0.0, 0.0], [0.0, -0.0, 0.0, -0.0]], dtype=np.float32)
    assert math.copysign(1.0, scores[0, 0]) == -1.0
    demote = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 0])), shape=(2, 4))
    for k in (1, 2, 4):
        for item_chunk in (4, 3, 1):
            plain = top_k(table_scorer(scores), np.arange(2), 4, k, item_chunk=item_chunk)
            assert plain.items.tolist() == [[0, 1, 2, 3][:k]] * 2
            assert (plain.scores == 0.0).all()
            pessimistic = top_k(table_scorer(scores), np.arange(2), 4, k, demote=demote, item_chunk=item_chunk)
            assert pessimistic.items.tolist() == [[0, 2, 3, 1][:k], [1, 2, 3, 0][:k]]
    # a zero of either sign sorts above any negative and below any positive number
    mixed = np.array([[-1e-45, -0.0, 1e-45, 0.0]], dtype=np.float32)
    got = top_k(table_scorer(mixed), np.array([0]), 4, 4)
    assert got.items.tolist() == [[2, 1, 3, 0]]


def test_infinite_scores():
    inf = float("inf")
    scores = np.array([
        [1.0, inf, -inf, 5.0, inf],
        [-inf, -inf, -inf, -inf, 0.0],
        [-inf, -3.0e38, 3.0e38, inf, -1.0],
    ], dtype=np.float32)
    demote = sp.csr_matrix(([1.0], ([0], [1])), shape=(3, 5))
    for item_chunk in (5, 2, 1):
        got = top_k(table_scorer(scores), np.arange(3), 5, 5, demote=demote, item_chunk=item_chunk)
        # +inf ranks first (ties broken as usual), -inf is never recommended
        assert got.items.tolist() == [[4, 1, 3, 0, -1], [4, -1, -1, -1, -1], [3, 2, 4, 1, -1]]
        assert got.scores[0, :2].tolist() == [inf, inf]
        assert_scores_match_scorer(got, scores, [0, 1, 2])
        assert_topk_equal(got, *reference_top_k(scores, [0, 1, 2], 5, demote=demote))


def test_returned_scores_are_the_scorer_scores(random_problem):
    scores, exclude, demote = random_problem
    users = np.array([5, 0, 22, 5, 11])  # unordered, with a repeat
    got = top_k(table_scorer(scores), users, N_ITEMS, 12, exclude=exclude, demote=demote, user_chunk=2,
                item_chunk=8)
    assert_scores_match_scorer(got, scores, users)
    np.testing.assert_array_equal(got.items[0], got.items[3])
    assert_topk_equal(got, *reference_top_k(scores, users, 12, exclude, demote))
    # scores are non-increasing along each list
    assert (np.diff(got.scores, axis=1) <= 0).all()


def test_float64_scorer_is_ranked_in_float32():
    values = np.array([[1.0, 1.0 + 1e-12, 0.5]])  # equal once in float32: a tie, broken by index
    def scorer(users, start, stop, out=None):
        return torch.from_numpy(values[users.numpy(), start:stop].copy())

    got = top_k(scorer, np.array([0]), 3, 3)
    assert got.items.tolist() == [[0, 1, 2]]
    assert got.scores.dtype == np.float32


def test_empty_user_list():
    got = top_k(table_scorer(np.zeros((3, 4))), np.zeros(0, dtype=np.int64), 4, 2)
    assert got.items.shape == (0, 2) and got.scores.shape == (0, 2)


def test_progress_reports_each_user_chunk():
    seen = []
    top_k(table_scorer(np.zeros((10, 4))), np.arange(10), 4, 2, user_chunk=4, progress=seen.append)
    assert seen == [4, 4, 2]


# ---------------------------------------------------------------- large chunks (block-maximum prefilter)
# Chunks whose width is a multiple of 32 and at least 4 (k + 1) 32 items take a prefilter over 32-item blocks;
# these catalogues are big enough for it, and item_chunk=100 shows the plain path on the same data.

BIG_ITEMS = 1024


def big_problems():
    rng = np.random.default_rng(99)
    base = rng.normal(size=(9, BIG_ITEMS)).astype(np.float32)
    yield "random", base
    yield "rounded", np.round(base * 1.5)  # block maxima tie all the time
    yield "few-values", rng.integers(0, 3, size=(9, BIG_ITEMS)).astype(np.float32)
    # the best items all in one block, so several of the top k come from the same block
    clustered = base.copy()
    clustered[:, 64:96] += 10.0
    yield "clustered", clustered


@pytest.mark.parametrize("with_demote", [True, False])
def test_large_chunks_match_sorted_reference(with_demote):
    rng = np.random.default_rng(17)
    users = np.array([0, 3, 4, 8])
    for _, scores in big_problems():
        exclude = random_csr(rng, 9, BIG_ITEMS, 0.05)
        demote = random_csr(rng, 9, BIG_ITEMS, 0.2) if with_demote else None
        for k in (1, 3, 7):
            want = reference_top_k(scores, users, k, exclude, demote)
            for item_chunk in (BIG_ITEMS, 512, 256, 100):
                got = top_k(buffer_scorer(scores), users, BIG_ITEMS, k, exclude=exclude, demote=demote,
                            user_chunk=4, item_chunk=item_chunk)
                assert_topk_equal(got, *want)


def test_tie_between_block_maxima_goes_to_the_lower_index():
    """k=1: the two best items sit in different blocks; whichever block the prefilter picks, index 70 must win."""
    rng = np.random.default_rng(5)
    scores = rng.uniform(-1, 1, size=(2, BIG_ITEMS)).astype(np.float32)
    scores[:, [70, 230]] = 5.0
    demote = sp.csr_matrix(([1.0], ([1], [70])), shape=(2, BIG_ITEMS))
    for item_chunk in (BIG_ITEMS, 256):
        got = top_k(buffer_scorer(scores), np.arange(2), BIG_ITEMS, 1, demote=demote, item_chunk=item_chunk)
        assert got.items.tolist() == [[70], [230]]
        got = top_k(buffer_scorer(scores), np.arange(2), BIG_ITEMS, 2, demote=demote, item_chunk=item_chunk)
        assert got.items.tolist() == [[70, 230], [230, 70]]
        assert (got.scores == 5.0).all()


def test_tie_inside_one_block_at_the_cut():
    """k=3: the 2nd to 5th best items are tied inside one block; relevant ones must lose, lower index first."""
    rng = np.random.default_rng(6)
    scores = np.repeat(rng.uniform(-1, 0, size=(1, BIG_ITEMS)), 3, axis=0).astype(np.float32)
    scores[:, 64] = 10.0
    scores[:, 70:74] = 5.0
    demote = sp.csr_matrix(([1.0] * 4, ([0, 0, 1, 1], [70, 71, 72, 73])), shape=(3, BIG_ITEMS))
    for item_chunk in (BIG_ITEMS, 512, 256):
        got = top_k(buffer_scorer(scores), np.arange(3), BIG_ITEMS, 3, demote=demote, item_chunk=item_chunk)
        assert got.items.tolist() == [[64, 72, 73], [64, 70, 71], [64, 70, 71]]
        got = top_k(buffer_scorer(scores), np.arange(3), BIG_ITEMS, 5, demote=demote, item_chunk=item_chunk)
        assert got.items.tolist() == [[64, 72, 73, 70, 71], [64, 70, 71, 72, 73], [64, 70, 71, 72, 73]]

def test_large_chunk_exclusion_and_padding():
    scores = np.random.default_rng(8).normal(size=(3, BIG_ITEMS)).astype(np.float32)
    keep = [[5, 900], [], [1, 2, 3, 40, 1000]]
    mask = np.ones((3, BIG_ITEMS), dtype=np.float32)
    for u, items in enumerate(keep):
        mask[u, items] = 0.0
    exclude = sp.csr_matrix(mask)
    got = top_k(buffer_scorer(scores), np.arange(3), BIG_ITEMS, 3, exclude=exclude)
    assert sorted(got.items[0, :2].tolist()) == [5, 900] and got.items[0, 2] == -1
    assert got.items[1].tolist() == [-1, -1, -1] and np.isneginf(got.scores[1]).all()
    assert set(got.items[2].tolist()) <= set(keep[2])
    assert_topk_equal(got, *reference_top_k(scores, range(3), 3, exclude))


def test_large_chunk_nan_raises():
    scores = np.zeros((2, BIG_ITEMS), dtype=np.float32)
    scores[1, 517] = np.nan
    for item_chunk in (BIG_ITEMS, 512, 100):
        with pytest.raises(RankingError, match="NaN"):
            top_k(buffer_scorer(scores), np.arange(2), BIG_ITEMS, 1, item_chunk=item_chunk)


def test_buffer_is_offered_per_chunk():
    calls = []
    scores = np.arange(5 * 70, dtype=np.float32).reshape(5, 70)
    got = top_k(buffer_scorer(scores, calls), np.arange(5), 70, 4, user_chunk=3, item_chunk=32)
    assert calls == [(3, 0, 32), (3, 32, 64), (3, 64, 70), (2, 0, 32), (2, 32, 64), (2, 64, 70)]
    assert got.items.tolist() == [[69, 68, 67, 66]] * 5


# ---------------------------------------------------------------- errors

def test_nan_scores_raise():
    scores = np.zeros((2, 6), dtype=np.float32)
    scores[1, 4] = np.nan
    with pytest.raises(RankingError, match="NaN"):
        top_k(table_scorer(scores), np.arange(2), 6, 2)
    with pytest.raises(RankingError, match="NaN"):
        top_k(table_scorer(scores), np.arange(2), 6, 2, user_chunk=1, item_chunk=4)
    assert issubclass(RankingError, TunespaceError) and issubclass(RankingError, ValueError)


def test_wrong_scorer_shape_raises():
    def too_wide(users, start, stop, out=None):
        return torch.zeros((len(users), stop - start + 1))

    def transposed(users, start, stop, out=None):
        return torch.zeros((stop - start, len(users)))

    def flat(users, start, stop, out=None):
        return torch.zeros(stop - start)

    for scorer in (too_wide, transposed, flat):
        with pytest.raises(RankingError, match="shape"):
            top_k(scorer, np.arange(3), 5, 2)


def test_bad_k_raises():
    for k in (0, -1):
        with pytest.raises(RankingError, match="k must be at least 1"):
            top_k(table_scorer(np.zeros((1, 3))), np.array([0]), 3, k)


def test_catalogue_too_large_raises_before_scoring():
    def never(users, start, stop, out=None):  # pragma: no cover - must not be called
        raise AssertionError("scored a catalogue that cannot be ranked")

    with pytest.raises(RankingError, match="exceeds"):
        top_k(never, np.array([0]), MAX_ITEMS + 1, 1)


# ---------------------------------------------------------------- the scorer owns what it returns

def test_scorer_state_is_not_modified():
    table = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    before = table.clone()
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    top_k(lambda users, start, stop, out=None: table[:, start:stop], np.arange(3), 4, 2, exclude=exclude)
    assert torch.equal(table, before)


def test_broadcast_scorer_exclusion_is_per_user():
    popularity = torch.tensor([0.0, 1.0, 2.0, 3.0])
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    def broadcast(users, start, stop, out=None):
        return popularity[start:stop].expand(len(users), -1)

    got = top_k(broadcast, np.arange(3), 4, 2, exclude=exclude)
    assert got.items.tolist() == [[3, 2], [3, 2], [2, 1]]


# ---------------------------------------------------------------- re-ranking candidates

def test_ranking_candidates_orders_as_top_k_does_with_ties_demotion_and_exclusion():
    """Scores from a few integer values (many ties); with every item a candidate, in a shuffled order per row,
    `rank_candidates` must give top_k's lists; with a subset, top_k restricted to that subset."""
    from tunespace.evaluation.ranking import rank_candidates

    rng = np.random.default_rng(1)
    n_users, n_items, k = 30, 40, 12
    scores = rng.integers(-3, 4, (n_users, n_items)).astype(np.float32)
    exclude = sp.random(n_users, n_items, density=0.2, format="csr", random_state=2)
    demote = sp.random(n_users, n_items, density=0.2, format="csr", random_state=3)
    for matrix in (exclude, demote):
        matrix.data[:] = 1
    expected = top_k(table_scorer(scores), np.arange(n_users), n_items, k, exclude=exclude, demote=demote)
    columns = np.stack([rng.permutation(n_items) for _ in range(n_users)])
    rows = np.arange(n_users)[:, None]
    candidate_scores = np.where(exclude.toarray()[rows, columns] > 0, -np.inf, scores[rows, columns])
    demoted = demote.toarray()[rows, columns] > 0
    got = rank_candidates(torch.from_numpy(candidate_scores.astype(np.float32)), torch.from_numpy(columns),
                          torch.from_numpy(demoted), k)
    np.testing.assert_array_equal(got.items, expected.items)
    np.testing.assert_array_equal(got.scores, expected.scores)
    few = columns[:, :8].copy()
    few[:, -1] = -1  # an empty slot
    kept = np.full((n_users, n_items), -np.inf, dtype=np.float32)
    kept[rows, few[:, :-1]] = scores[rows, few[:, :-1]]
    expected = top_k(table_scorer(kept), np.arange(n_users), n_items, k, exclude=exclude, demote=demote)
    got = rank_candidates(torch.from_numpy(np.take_along_axis(candidate_scores, np.arange(8)[None].repeat(
        n_users, 0), 1).astype(np.float32)), torch.from_numpy(few), torch.from_numpy(demoted[:, :8]), k)
    np.testing.assert_array_equal(got.items, expected.items)
    assert (got.items[:, 7:] == -1).all()

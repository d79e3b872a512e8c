"""Partitioned evaluation: per-user metrics equal to `evaluate(ContentKNN)` in memory, identical across Ray tasks,
and with ANN candidates equal to exact ranking when every item is a candidate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.scale import (
    EMBEDDINGS_FILE,
    INTERACTIONS_DIR,
    ScaleLogConfig,
    ScaleSplit,
    generate_log,
    scale_split,
)
from tunespace.data.schema import INTERACTIONS, validate_table
from tunespace.data.splits import SplitConfig, temporal_split
from tunespace.evaluation.evaluate import evaluate
from tunespace.evaluation.scale import (
    ScaleEvalConfig,
    ScaleEvaluationError,
    evaluate_partitioned,
    evaluate_partitioned_ray,
)
from tunespace.recommenders.knn import ContentKNN

LOG = ScaleLogConfig(tracks=1500, users=240, interactions=30_000, item_clusters=30, genres=5, rows_per_part=9000,
                     embedding_dim=16, seed=5)
SPLIT = SplitConfig(cutoff="2024-12-01", test_end="2025-01-01")
SMALL_BLOCKS = ScaleEvalConfig(ks=(5, 50), user_block=37, user_chunk=8, item_chunk=128)  # many blocks and chunks


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale")
    generate_log(LOG, folder / "log")
    scale_split(folder / "log", SPLIT, folder / "split")
    frame = pd.concat([pd.read_parquet(p) for p in sorted((folder / "log" / INTERACTIONS_DIR).iterdir())])
    embeddings = ItemEmbeddings.load(folder / "log" / EMBEDDINGS_FILE)
    return ScaleSplit.load(folder / "split"), temporal_split(validate_table(frame, INTERACTIONS), SPLIT), embeddings


@pytest.fixture(scope="module")
def exact(setting):
    split, _, embeddings = setting
    return evaluate_partitioned(split, embeddings, config=SMALL_BLOCKS)


def test_per_user_metrics_equal_the_in_memory_evaluation(setting, exact):
    _, memory, embeddings = setting
    model = ContentKNN(embeddings=embeddings, device="cpu", standardize=False).fit(memory.train_matrix())
    expected = evaluate(model, memory.test, ks=SMALL_BLOCKS.ks).per_user
    expected = expected.assign(user_id=expected["user_id"].astype(np.int64))
    expected = expected.sort_values("user_id").reset_index(drop=True)
    assert len(expected) == memory.stats["test_users"] > 50
    pdt.assert_frame_equal(exact.per_user, expected, check_dtype=False)
    assert exact.per_user["ndcg@50"].mean() > 0.02  # the clusters make taste learnable from content


def test_a_subset_of_users_gets_the_same_rows(setting, exact):
    split, _, embeddings = setting
    chosen = exact.per_user["user_id"].to_numpy()[::3]
    part = evaluate_partitioned(split, embeddings, config=ScaleEvalConfig(ks=(5, 50)), users=chosen)
    pdt.assert_frame_equal(part.per_user, exact.per_user.iloc[::3].reset_index(drop=True))


def test_ray_tasks_give_identical_per_user_metrics(setting, exact):
    ray = pytest.importorskip("ray")
    split, _, embeddings = setting
    try:
        result = evaluate_partitioned_ray(split, embeddings, config=SMALL_BLOCKS, tasks=2)
    finally:
        ray.shutdown()
    pdt.assert_frame_equal(result.per_user, exact.per_user)
    np.testing.assert_array_equal(result.lists, exact.lists)


def index_over(split: ScaleSplit, embeddings: ItemEmbeddings, kind: str):
    from tunespace.index import EmbeddingIndex

    ids = split.items[:split.n_warm_items].astype(str)
    return EmbeddingIndex.build(ItemEmbeddings(ids=ids, vectors=embeddings.aligned(IdMap(ids))), kind)


def test_ann_candidates_of_the_whole_catalogue_equal_exact_ranking(setting, exact):
    pytest.importorskip("faiss")
    split, _, embeddings = setting
    index = index_over(split, embeddings, "hnsw")
    config = ScaleEvalConfig(ks=(5, 50), user_block=50, user_chunk=16, candidates=split.n_warm_items)
    result = evaluate_partitioned(split, embeddings, config=config, retriever=index.candidates)
    pdt.assert_frame_equal(result.per_user, exact.per_user)
    np.testing.assert_array_equal(result.lists, exact.lists)


def test_too_few_candidates_are_searched_again_until_k_unseen_remain(setting, exact):
    pytest.importorskip("faiss")
    split, _, embeddings = setting
    index = index_over(split, embeddings, "flat")  # exact candidates: the re-ranked lists must equal exact ones
    calls = []

    def retriever(queries, n):
        calls.append(n)
        return index.candidates(queries, n)

    config = ScaleEvalConfig(ks=(5, 50), user_block=500, user_chunk=500, candidates=10)
    result = evaluate_partitioned(split, embeddings, config=config, retriever=retriever)
    assert calls[:3] == [10, 20, 40]  # users with seen items among their nearest need more than k=50
    assert (result.lists >= 0).all()
    np.testing.assert_array_equal(result.lists, exact.lists)


def test_bad_settings_are_named(setting):
    split, _, embeddings = setting
    with pytest.raises(ScaleEvaluationError, match="user_block"):
        ScaleEvalConfig(user_block=0)
    with pytest.raises(ScaleEvaluationError, match="validation or test"):
        evaluate_partitioned(split, embeddings, part="cold_test")
    with pytest.raises(ScaleEvaluationError, match="no test users"):
        evaluate_partitioned(split, embeddings, users=np.array([10**9]))

"""EmbeddingIndex: exact search against brute force, approximate recall on clustered data, exact exclusion, saving
and the refusal of a stale index, and the errors a caller meets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.index.fixtures import clustered, embedding_folder
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.errors import DataValidationError, MissingExtraError, UnknownIdError
from tunespace.index import EmbeddingIndex, IndexConfigError, IndexFormatError, StaleIndexError
from tunespace.index.ann import AUTO_HNSW_MIN_ITEMS, ivfpq_params, resolve_kind


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = unit(queries) @ unit(items).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def embeddings_of(vectors: np.ndarray) -> ItemEmbeddings:
    return ItemEmbeddings(ids=[f"t{i}" for i in range(len(vectors))], vectors=vectors)


def test_exact_search_equals_numpy_top_k():
    rng = np.random.default_rng(1)
    items, queries = rng.normal(size=(500, 24)), rng.normal(size=(20, 24))
    index = EmbeddingIndex.build(embeddings_of(items), kind="flat")
    hits = index.search(queries, 10)
    order, scores = brute_force(items, queries, 10)
    assert [[h.item_id for h in row] for row in hits] == [[f"t{i}" for i in row] for row in order]
    np.testing.assert_allclose([[h.score for h in row] for row in hits], scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kind", "params", "bound"), [
    ("hnsw", {"hnsw_m": 16, "ef_search": 64}, 0.9),
    ("ivfpq", {"nprobe": 8}, 0.3),  # 6-bit codes at this size: far above chance (0.005), far below exact
])
def test_approximate_recall_on_clustered_data(kind, params, bound):
    points = clustered(4050, 32, 20)
    items, queries = points[:4000], points[4000:]  # queries from the same clusters, not catalogue members
    index = EmbeddingIndex.build(embeddings_of(items), kind=kind, **params)
    assert index.kind == kind
    truth, _ = brute_force(items, queries, 20)
    found = index.search(queries, 20)
    recall = np.mean([len({h.item_id for h in row} & {f"t{i}" for i in want}) / 20
                      for row, want in zip(found, truth)])
    assert recall >= bound


@pytest.mark.parametrize(("kind", "params"), [("flat", {}), ("hnsw", {"ef_search": 8}),
                                              ("ivfpq", {"nprobe": 1})])
def test_exclusion_is_exact_and_still_returns_k(kind, params):
    """The excluded ids are the query's own nearest neighbours, so a search for k alone would return none."""
    items = clustered(2000, 16, 10, seed=3)
    index = EmbeddingIndex.build(embeddings_of(items), kind=kind, **params)
    query = items[:1]
    order, _ = brute_force(items, query, 300)
    excluded = {f"t{i}" for i in order[0][:200]} | {"not-in-the-index"}
    hits = index.search(query, 25, exclude=[excluded])[0]
    assert len(hits) == 25 and not excluded & {h.item_id for h in hits}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_k_beyond_the_catalogue_returns_what_remains():
    index = EmbeddingIndex.build(embeddings_of(clustered(12, 4, 2)), kind="flat")
    assert len(index.search(np.ones((1, 4)), 50)[0]) == 12
    assert len(index.search(np.ones((1, 4)), 50, exclude=[{"t0", "t1"}])[0]) == 10


def test_auto_kind_and_parameters_are_checked():
    assert resolve_kind("auto", AUTO_HNSW_MIN_ITEMS - 1) == "flat"
    assert resolve_kind("auto", AUTO_HNSW_MIN_ITEMS) == "hnsw"
    with pytest.raises(IndexConfigError, match="unknown index kind 'annoy'"):
        resolve_kind("annoy", 10)
    embeddings = embeddings_of(clustered(200, 8, 2))
    with pytest.raises(IndexConfigError, match="a flat index takes no parameter nprobe"):
        EmbeddingIndex.build(embeddings, kind="flat", nprobe=4)
    with pytest.raises(IndexConfigError, match="pq_m=3 must divide the dimension 8"):
        EmbeddingIndex.build(embeddings, kind="ivfpq", pq_m=3)
    with pytest.raises(IndexConfigError, match="hnsw_m must be positive"):
        EmbeddingIndex.build(embeddings, kind="hnsw", hnsw_m=0)
    params = ivfpq_params(1_000_000, 128)
    assert params == {"nlist": 4000, "pq_m": 32, "nbits": 8, "nprobe": 32}
    assert ivfpq_params(2000, 104)["nbits"] == 5  # 2^5 codes x 39 training vectors fit in 2000


def test_queries_are_checked():
    index = EmbeddingIndex.build(embeddings_of(clustered(50, 8, 2)), kind="flat")
    with pytest.raises(DataValidationError, match="4-d query cannot search a 8-d index"):
        index.search(np.ones((1, 4)), 3)
    with pytest.raises(DataValidationError, match="zero vector"):
        index.search(np.zeros((1, 8)), 3)
    with pytest.raises(IndexConfigError, match="k must be at least 1"):
        index.search(np.ones((1, 8)), 0)


def test_a_zero_vector_in_the_catalogue_is_named():
    vectors = clustered(5, 4, 1)
    vectors[3] = 0
    with pytest.raises(DataValidationError, match="row 4: the vector of track 't3' is all zeros"):
        EmbeddingIndex.build(embeddings_of(vectors))


def test_vector_returns_the_unit_vector_and_unknown_ids_are_named(small_embeddings):
    index = EmbeddingIndex.build(small_embeddings, kind="hnsw")
    np.testing.assert_allclose(index.vector("t007"), unit(small_embeddings.vectors[7:8])[0], rtol=1e-6)
    with pytest.raises(UnknownIdError, match="track 'nope' is not in the index"):
        index.vector("nope")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_save_and_load_round_trip(small_folder, tmp_path, kind):
    index = EmbeddingIndex.from_folder(small_folder, kind=kind)
    index.tune(**({"ef_search": 40} if kind == "hnsw" else {"nprobe": 3} if kind == "ivfpq" else {}))
    index.save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    assert (loaded.kind, loaded.ids, loaded.dim, loaded.params) == (index.kind, index.ids, index.dim, index.params)
    assert loaded.manifest == index.manifest and loaded.manifest["backend"] == "test"
    assert len(loaded.manifest["fingerprint"]) == 64
    queries = clustered(5, 16, 6, seed=9)
    assert loaded.search(queries, 7) == index.search(queries, 7)
    index.save(tmp_path / "idx")  # an index folder is replaced in place
    assert EmbeddingIndex.load(tmp_path / "idx").ids == index.ids


def test_a_stale_index_is_refused(small_folder, small_embeddings, tmp_path):
    EmbeddingIndex.from_folder(small_folder).save(tmp_path / "idx")
    changed = small_embeddings.vectors.copy()
    changed[3] += 1.0
    embedding_folder(small_folder, ItemEmbeddings(ids=small_embeddings.ids, vectors=changed))
    with pytest.raises(StaleIndexError, match="is stale: the embeddings in .* changed"):
        EmbeddingIndex.load(tmp_path / "idx")


def test_moved_embeddings_are_named_or_found(small_folder, tmp_path):
    EmbeddingIndex.from_folder(small_folder).save(tmp_path / "idx")
    moved = small_folder.rename(tmp_path / "moved")
    with pytest.raises(StaleIndexError, match="cannot check the index .* are gone"):
        EmbeddingIndex.load(tmp_path / "idx")
    assert len(EmbeddingIndex.load(tmp_path / "idx", embeddings_dir=moved)) == 300


def test_folders_that_are_not_indexes_are_refused(small_embeddings, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    index = EmbeddingIndex.build(small_embeddings, kind="flat")
    with pytest.raises(IndexFormatError, match="not an index folder; refusing to replace it"):
        index.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    with pytest.raises(IndexFormatError, match="is not an index folder .*index.json is missing"):
        EmbeddingIndex.load(tmp_path / "notes")


def test_a_damaged_index_file_is_named(small_folder, tmp_path):
    EmbeddingIndex.from_folder(small_folder).save(tmp_path / "idx")
    (tmp_path / "idx" / "index.faiss").write_bytes(b"truncated")
    with pytest.raises(IndexFormatError, match="a file of the index cannot be read"):
        EmbeddingIndex.load(tmp_path / "idx")


def test_without_faiss_the_index_extra_is_named(monkeypatch, small_embeddings):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"the 'index' extra.*pip install \"tunespace\[index\]\""):
        EmbeddingIndex.build(small_embeddings)


def test_the_package_imports_without_faiss():
    code = ("import sys; sys.modules['faiss'] = None; import tunespace.index, tunespace.index.queries, "
            "tunespace.cli.search; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_candidates_are_the_rows_search_returns(kind):
    """`candidates` gives row positions (what an evaluation re-ranks), in the order `search` gives ids; asked for
    more than the catalogue it returns every row (HNSW scans its storage)."""
    items = clustered(600, 16, 6, seed=4)
    index = EmbeddingIndex.build(embeddings_of(items), kind=kind)
    queries = items[:5] + 0.1
    rows = index.candidates(queries, 30)
    assert rows.shape == (5, 30) and rows.dtype == np.int64
    assert [[f"t{r}" for r in row] for row in rows] == [[h.item_id for h in row] for row in index.search(queries, 30)]
    every = index.candidates(queries, 10_000)
    assert every.shape == (5, 600) and all(sorted(row) == list(range(600)) for row in every)
    with pytest.raises(IndexConfigError, match="n must be at least 1"):
        index.candidates(queries, 0)

"""IdMap (id <-> index) and ItemEmbeddings (one vector per track id)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.errors import DataValidationError, UnknownIdError

ids_strategy = st.lists(st.text(alphabet="abcxyz019_", min_size=1, max_size=4), unique=True, max_size=20)


# ---------------------------------------------------------------- IdMap


def test_basic_lookup():
    m = IdMap(["b", "a", "c"], name="track_id")
    assert len(m) == 3
    assert list(m.ids) == ["b", "a", "c"]
    assert m.index_of(["a", "c", "b", "a"]).tolist() == [1, 2, 0, 1]
    assert m.index_of(["a"]).dtype == np.int64
    assert m.id_of([2, 0]).tolist() == ["c", "b"]
    assert "a" in m and "z" not in m
    assert m.contains(["a", "z", "c"]).tolist() == [True, False, True]
    assert repr(m) == "IdMap(track_id, 3 ids)"


@settings(max_examples=100, deadline=None)
@given(ids=ids_strategy, data=st.data())
def test_index_of_and_id_of_are_inverse(ids, data):
    m = IdMap(ids)
    assert m.index_of(ids).tolist() == list(range(len(ids)))
    assert m.id_of(np.arange(len(ids))).tolist() == ids
    if ids:
        query = data.draw(st.lists(st.sampled_from(ids), max_size=30))
        assert m.id_of(m.index_of(query)).tolist() == query
        indices = data.draw(st.lists(st.integers(0, len(ids) - 1), max_size=30))
        assert m.index_of(m.id_of(indices)).tolist() == indices


def test_index_of_empty_query():
    assert IdMap(["a"]).index_of([]).tolist() == []
    assert IdMap(["a"]).id_of([]).tolist() == []


def test_unknown_id_raises_naming_it():
    m = IdMap(["a", "b"], name="user_id")
    with pytest.raises(UnknownIdError) as info:
        m.index_of(["a", "ghost", "phantom"])
    message = str(info.value)
    assert "'ghost'" in message and "user_id" in message
    assert "2 unknown of 3" in message
    # UnknownIdError is a KeyError too, so dict-style callers can catch it
    assert isinstance(info.value, KeyError)


def test_out_of_range_index_raises():
    m = IdMap(["a", "b"])
    for bad in ([2], [-1], [0, 5]):
        with pytest.raises(UnknownIdError):
            m.id_of(bad)


def test_int_ids_are_looked_up_as_strings():
    m = IdMap([7, 8])
    assert list(m.ids) == ["7", "8"]
    assert m.index_of(["8"]).tolist() == [1]
    assert m.index_of([8]).tolist() == [1]


@pytest.mark.parametrize("ids", [["a", "b", "a"], ["1", 1]])
def test_duplicates_rejected(ids):
    with pytest.raises(ValueError, match="duplicate"):
        IdMap(ids)


def test_missing_id_rejected():
    with pytest.raises(ValueError, match="missing"):
        IdMap(["a", None])


def test_from_values_sorted_and_distinct():
    m = IdMap.from_values(["c", "a", "c", "b", "a"], name="user_id")
    assert list(m.ids) == ["a", "b", "c"]
    assert m.name == "user_id"
    assert list(IdMap.from_values([]).ids) == []


def test_from_values_rejects_a_missing_id_like_the_constructor():
    with pytest.raises(ValueError, match="missing"):
        IdMap.from_values(["a", None, "b"])


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.sampled_from(["u1", "u2", "u10", "x", "07", "7"]), max_size=40),
       seed=st.integers(0, 2**32 - 1))
def test_from_values_independent_of_row_order(values, seed):
    shuffled = list(np.random.default_rng(seed).permutation(np.asarray(values, dtype=object)))
    a, b = IdMap.from_values(values), IdMap.from_values(shuffled)
    assert a == b
    assert list(a.ids) == sorted(set(values))


def test_extended_keeps_the_first_entries():
    m = IdMap(["z", "a", "m"], name="track_id")
    bigger = m.extended(["b", "y"])
    assert list(bigger.ids) == ["z", "a", "m", "b", "y"]
    assert bigger.name == "track_id"
    assert bigger.index_of(m.ids).tolist() == [0, 1, 2]
    assert list(m.ids) == ["z", "a", "m"]  # the original is untouched
    assert m.extended([]) == m
    with pytest.raises(ValueError, match="duplicate"):
        m.extended(["a"])


def test_equality():
    assert IdMap(["a", "b"]) == IdMap(["a", "b"])
    assert IdMap(["a", "b"]) != IdMap(["b", "a"])
    assert IdMap(["a"]) != ["a"]


@pytest.mark.parametrize("ids", [["b", "a", "c"], [], ["007", "7", "é"], [str(i) for i in range(500)]])
def test_idmap_save_load_round_trip(tmp_path, ids):
    m = IdMap(ids, name="track_id")
    m.save(tmp_path / "items.parquet")
    back = IdMap.load(tmp_path / "items.parquet")
    assert back == m
    assert back.name == "track_id"
    assert list(back.ids) == ids
    if ids:
        assert back.index_of(ids).tolist() == list(range(len(ids)))


def test_idmap_save_leaves_no_temporary_files(tmp_path):
    IdMap(["a"]).save(tmp_path / "m.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]


# ---------------------------------------------------------------- ItemEmbeddings


def embeddings() -> ItemEmbeddings:
    vectors = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    return ItemEmbeddings(ids=["t1", "t2", 3, "t4"], vectors=vectors)


def test_embeddings_normalise_types():
    e = embeddings()
    assert e.vectors.dtype == np.float32
    assert list(e.ids) == ["t1", "t2", "3", "t4"]
    assert e.dim == 3


def test_embeddings_save_load_round_trip(tmp_path):
    e = embeddings()
    e.save(tmp_path / "emb.parquet")
    back = ItemEmbeddings.load(tmp_path / "emb.parquet")
    assert list(back.ids) == list(e.ids)
    np.testing.assert_array_equal(back.vectors, e.vectors)
    assert back.vectors.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["emb.parquet"]
    schema = pq.read_schema(tmp_path / "emb.parquet")
    assert pa.types.is_fixed_size_list(schema.field("embedding").type)


def test_embeddings_load_variable_size_list_column(tmp_path):
    table = pa.table({"track_id": ["a", "b"], "embedding": pa.array([[1.0, 2.0], [3.0, 4.0]])})
    pq.write_table(table, tmp_path / "e.parquet")
    back = ItemEmbeddings.load(tmp_path / "e.parquet")
    np.testing.assert_array_equal(back.vectors, np.array([[1, 2], [3, 4]], dtype=np.float32))


def test_embeddings_load_ragged_rejected(tmp_path):
    table = pa.table({"track_id": ["a", "b", "c"], "embedding": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0]])})
    path = tmp_path / "e.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataValidationError) as info:
        ItemEmbeddings.load(path)
    assert str(path) in str(info.value) and info.value.row == 3 and info.value.column == "embedding"


def test_embeddings_load_missing_column_and_corrupt_file(tmp_path):
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"track_id": ["a"]}), path)
    with pytest.raises(DataValidationError) as info:
        ItemEmbeddings.load(path)
    assert str(path) in str(info.value) and info.value.column == "embedding"
    path.write_bytes(b"garbage")
    with pytest.raises(DataValidationError) as info:
        ItemEmbeddings.load(path)
    assert str(path) in str(info.value)


def test_aligned_follows_the_map_order():
    e = embeddings()
    items = IdMap(["t4", "3", "t1"])
    out = e.aligned(items)
    assert out.shape == (3, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, e.vectors[[3, 2, 0]])
    assert e.aligned(IdMap([])).shape == (0, 3)


def test_aligned_missing_vector_raises_naming_it():
    e = embeddings()
    with pytest.raises(UnknownIdError) as info:
        e.aligned(IdMap(["t1", "nope", "t2", "gone"]))
    assert "'nope'" in str(info.value)
    assert "2 of 4" in str(info.value)


def test_aligned_missing_vector_zero():
    e = embeddings()
    out = e.aligned(IdMap(["t2", "nope", "t1"]), missing="zero")
    np.testing.assert_array_equal(out[0], e.vectors[1])
    np.testing.assert_array_equal(out[1], np.zeros(3, dtype=np.float32))
    np.testing.assert_array_equal(out[2], e.vectors[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vector_rejected(bad):
    vectors = np.ones((3, 2), dtype=np.float32)
    vectors[1, 0] = bad
    with pytest.raises(DataValidationError) as info:
        ItemEmbeddings(ids=["a", "b", "c"], vectors=vectors)
    assert info.value.row == 2 and info.value.column == "embedding"
    assert "'b'" in str(info.value)


def test_nan_vector_in_file_rejected_naming_file(tmp_path):
    flat = pa.array([1.0, 2.0, float("nan"), 4.0], type=pa.float32())
    table = pa.table({"track_id": ["a", "b"], "embedding": pa.FixedSizeListArray.from_arrays(flat, 2)})
    path = tmp_path / "nan.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataValidationError) as info:
        ItemEmbeddings.load(path)
    assert str(path) in str(info.value)
    assert info.value.row == 2 and info.value.column == "embedding"


def test_embedding_shape_and_duplicate_checks():
    with pytest.raises(DataValidationError):
        ItemEmbeddings(ids=["a", "b"], vectors=np.ones((3, 2)))
    with pytest.raises(DataValidationError):
        ItemEmbeddings(ids=["a", "b"], vectors=np.ones(2))
    with pytest.raises(DataValidationError, match="duplicate"):
        ItemEmbeddings(ids=["a", "b", "a"], vectors=np.ones((3, 2)))


@settings(max_examples=50, deadline=None)
@given(ids=ids_strategy, dim=st.integers(1, 5), seed=st.integers(0, 1000))
def test_embeddings_round_trip_property(tmp_path_factory, ids, dim, seed):
    vectors = np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32)
    e = ItemEmbeddings(ids=ids, vectors=vectors)
    path = tmp_path_factory.mktemp("emb") / "e.parquet"
    e.save(path)
    back = ItemEmbeddings.load(path)
    assert list(back.ids) == ids
    np.testing.assert_array_equal(back.vectors, vectors)
    order = IdMap(list(reversed(ids)))
    np.testing.assert_array_equal(back.aligned(order), vectors[::-1].reshape(len(ids), dim))

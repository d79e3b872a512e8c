"""TF-IDF + LSA item vectors: geometry that can be checked by hand, clamping, and determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunespace.data.text_features import tfidf_lsa_embeddings, tfidf_matrix

TEXTS = pd.Series(
    {
        "a": "rock guitar grunge",
        "b": "rock guitar grunge",
        "c": "jazz piano",
        "d": "jazz saxophone piano",
        "e": "rock grunge seattle",
    },
    name="tag_text",
)


def cosine(embeddings, left: str, right: str) -> float:
    ids = list(embeddings.ids)
    return float(embeddings.vectors[ids.index(left)] @ embeddings.vectors[ids.index(right)])


def test_identical_texts_identical_vectors_and_disjoint_vocabularies_orthogonal():
    embeddings = tfidf_lsa_embeddings(TEXTS, dim=128)
    assert list(embeddings.ids) == ["a", "b", "c", "d", "e"]
    np.testing.assert_allclose(np.linalg.norm(embeddings.vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(embeddings, "a", "b") == pytest.approx(1.0, abs=1e-5)
    # rank 4 matrix, 4 dimensions kept: the projection is exact and disjoint texts stay orthogonal
    assert cosine(embeddings, "a", "c") == pytest.approx(0.0, abs=1e-5)
    assert cosine(embeddings, "e", "d") == pytest.approx(0.0, abs=1e-5)
    assert cosine(embeddings, "c", "d") > 0.3 and cosine(embeddings, "a", "e") > 0.3


def test_dim_is_clamped_and_honoured():
    assert tfidf_lsa_embeddings(TEXTS, dim=128).dim == 4  # min(5 documents, 8 tokens) - 1
    small = tfidf_lsa_embeddings(TEXTS, dim=2)
    assert small.vectors.shape == (5, 2) and small.vectors.dtype == np.float32
    with pytest.raises(ValueError, match="dim"):
        tfidf_lsa_embeddings(TEXTS, dim=0)
    with pytest.raises(ValueError, match="two documents"):
        tfidf_lsa_embeddings(pd.Series({"a": "rock", "b": "rock"}))


def test_deterministic_under_a_seed():
    rng = np.random.default_rng(7)
    vocabulary = np.array([f"tag{i}" for i in range(60)])
    texts = pd.Series({str(i): " ".join(rng.choice(vocabulary, size=6)) for i in range(80)})
    first = tfidf_lsa_embeddings(texts, dim=10, seed=3)
    again = tfidf_lsa_embeddings(texts, dim=10, seed=3)
    np.testing.assert_array_equal(first.vectors, again.vectors)
    other_seed = tfidf_lsa_embeddings(texts, dim=10, seed=4)
    # another start vector converges to the same subspace; the sign convention makes it the same vectors
    np.testing.assert_allclose(np.abs(first.vectors @ other_seed.vectors.T).diagonal(), 1.0, atol=1e-3)


def test_empty_texts_get_no_vector_and_tokens_are_whitespace_separated_lowercase():
    texts = pd.Series({"a": "Hip_Hop rap", "b": "", "c": None, "d": "hip_hop  RAP", "e": "jazz"})
    embeddings = tfidf_lsa_embeddings(texts, dim=8)
    assert list(embeddings.ids) == ["a", "d", "e"]
    assert cosine(embeddings, "a", "d") == pytest.approx(1.0, abs=1e-5)
    matrix, vocabulary = tfidf_matrix(pd.Series(["Hip_Hop rap", "hip_hop jazz jazz"]))
    assert list(vocabulary) == ["hip_hop", "jazz", "rap"]
    # idf = ln(3/3)+1 = 1 for hip_hop, ln(3/2)+1 for the others; tf of jazz is 1 + ln 2 (sublinear)
    rare = np.log(1.5) + 1
    expected = np.array([[1.0, 0.0, rare], [1.0, (1 + np.log(2)) * rare, 0.0]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(matrix.toarray(), expected)

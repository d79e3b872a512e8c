"""Character n-gram TF-IDF: vocabulary and IDF from training documents only, rows L2-normalised (by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunespace.symbolic.tfidf import CharTfidf, char_ngrams


def test_ngrams_by_hand():
    assert char_ngrams("abca", (1, 2)) == {"a": 2, "b": 1, "c": 1, "ab": 1, "bc": 1, "ca": 1}


def test_weights_by_hand():
    tfidf = CharTfidf(sizes=(1,), max_features=10).fit(["ab", "aa"])
    assert tfidf.vocabulary == {"a": 0, "b": 1}  # most documents first
    idf_b = math.log(3 / 2) + 1  # smoothed: ln((1 + n) / (1 + df)) + 1; "a" is in both documents: idf 1
    rows = tfidf.transform(["ab", "aa", "zz"]).toarray()
    expected = np.array([1.0, idf_b]) / math.hypot(1.0, idf_b)
    assert rows[0] == pytest.approx(expected)
    assert rows[1] == pytest.approx([1.0, 0.0])
    assert rows[2] == pytest.approx([0.0, 0.0])  # nothing of the training vocabulary: an all-zero row, no NaN


def test_vocabulary_is_capped_by_document_frequency():
    tfidf = CharTfidf(sizes=(1,), max_features=2).fit(["abc", "ab", "a"])
    assert tfidf.vocabulary == {"a": 0, "b": 1}

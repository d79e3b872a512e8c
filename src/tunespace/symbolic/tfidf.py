"""TF-IDF over character n-grams of score text: the classic baseline any learned score encoder has to beat.

The vocabulary (the `max_features` n-grams in most training documents) and the IDF weights come from the training
documents only; every document is then weighted and L2-normalised. scipy sparse, no scikit-learn needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def char_ngrams(text: str, sizes: tuple[int, ...]) -> Counter[str]:
    return Counter(text[i:i + n] for n in sizes for i in range(len(text) - n + 1))


@dataclass
class CharTfidf:
    """`fit` on training documents, then `transform` any documents into (n, vocabulary) L2-normalised rows."""

    sizes: tuple[int, ...] = (1, 2, 3, 4)
    max_features: int = 4096

    def fit(self, documents: Sequence[str]) -> CharTfidf:
        frequency: Counter[str] = Counter()
        for document in documents:
            frequency.update(set(char_ngrams(document, self.sizes)))
        kept = sorted(frequency, key=lambda gram: (-frequency[gram], gram))[: self.max_features]
        self.vocabulary = {gram: column for column, gram in enumerate(kept)}
        counts = np.array([frequency[gram] for gram in kept], dtype=np.float64)
        self.idf = np.log((1 + len(documents)) / (1 + counts)) + 1.0  # smoothed, as scikit-learn's default
        return self

    def transform(self, documents: Sequence[str]) -> sp.csr_matrix:
        rows, columns, values = [], [], []
        for row, document in enumerate(documents):
            for gram, count in char_ngrams(document, self.sizes).items():
                column = self.vocabulary.get(gram)
                if column is not None:
                    rows.append(row)
                    columns.append(column)
                    values.append(count * self.idf[column])
        matrix = sp.csr_matrix((values, (rows, columns)), shape=(len(documents), len(self.vocabulary)))
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
        return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix

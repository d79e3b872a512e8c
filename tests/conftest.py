"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """Tiny networks train several times faster on one thread than on threads that fight over a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fit_log(monkeypatch):
    """Every `Recommender.fit` call during the test, as (model name, its seed), in order."""
    from tunespace.recommenders.base import Recommender

    calls: list[tuple[str, object]] = []
    fit = Recommender.fit

    def logged(model, train, validation=None):
        calls.append((model.name, model.params.get("seed")))
        return fit(model, train, validation)

    monkeypatch.setattr(Recommender, "fit", logged)
    return calls


@pytest.fixture
def small_embeddings():
    """300 clustered 16-d vectors (tests/index/fixtures.py), for the index and search-command tests."""
    from tests.index import fixtures

    return fixtures.small_embeddings()


@pytest.fixture
def small_folder(tmp_path, small_embeddings):
    """`small_embeddings` as `tunespace embed` writes a folder."""
    from tests.index import fixtures

    return fixtures.embedding_folder(tmp_path / "emb", small_embeddings)

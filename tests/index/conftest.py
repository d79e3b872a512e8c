"""Fixtures of the index tests, made by tests/index/fixtures.py (the embeddings ones live in tests/conftest.py:
tests/cli/test_search.py uses them too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.index import fixtures

pytest.importorskip("faiss")


@pytest.fixture
def saved_recommender(tmp_path) -> Path:
    return fixtures.saved_recommender(tmp_path / "popularity")


@pytest.fixture
def audio_catalogue(tmp_path) -> tuple[Path, Path]:
    return fixtures.audio_catalogue(tmp_path)


@pytest.fixture(scope="module")
def htcl_run(tmp_path_factory) -> Path:
    return fixtures.htcl_run(tmp_path_factory.mktemp("bert"), tmp_path_factory.mktemp("run"))

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

"""Device names to torch devices, in one place every layer may import, so "auto" means the same everywhere."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" is CUDA when torch sees a GPU and the CPU otherwise; any other name goes to torch unchanged."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

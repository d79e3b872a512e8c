"""The contract every audio backend fulfils, and the registry that names them.

A backend turns a batch of mono waveforms (at its own sample rate) into frame-level features with a mask of
valid frames. The extraction pipeline, not the backend, pools: it averages the valid frames of every segment of a
track (so zero padding never enters a mean), optionally with their standard deviation, then lets the backend
`finalize` the pooled statistics (MFCC turns second moments into a covariance, for instance).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tunespace.errors import TunespaceError


class UnknownBackendError(TunespaceError):
    """No backend is registered under that name."""


class BackendUnavailableError(TunespaceError):
    """A backend's weights or package are missing; the message says what to install or where to put files."""


class AudioBackend(ABC):
    """A frozen audio encoder. Subclasses set the class attributes and implement `frames`."""

    name: str
    sample_rate: int
    dim: int
    # Longest waveform given to `frames` in one piece: the model's training context, or a memory bound.
    segment_seconds: float
    # Shortest audio that yields at least one valid frame; shorter tracks are skipped with a reason.
    min_seconds: float = 0.1

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    @abstractmethod
    def frames(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame features for a batch.

        waveforms: (batch, samples) float32, zero-padded on the right; lengths: (batch,) valid samples.
        Returns features (batch, frames, dim) and a bool mask (batch, frames) of frames computed from real audio.
        """

    def finalize(self, mean: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Map pooled frame means (n, dim) over `count` frames each to the published track vector."""
        return mean

    @property
    def output_dim(self) -> int:
        """Width of the track vector `finalize` returns."""
        return self.dim


BackendFactory = Callable[..., AudioBackend]
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Class or factory decorator: `@register_backend("mfcc")`."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        if name in _REGISTRY:
            raise ValueError(f"backend {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorate


def backend_names() -> list[str]:
    _import_builtin_backends()
    return sorted(_REGISTRY)


def get_backend(name: str, **options: Any) -> AudioBackend:
    """Instantiate a registered backend; `options` go to its constructor (device, layer, weights path...)."""
    _import_builtin_backends()
    if name not in _REGISTRY:
        raise UnknownBackendError(f"unknown backend {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


# Backends defined in layers built on this one (the audio tower of an HTCL run lives with its training code in
# tunespace.contrastive), named by module path and imported on first use so that encoders never imports them.
_UPPER_LAYER_BACKENDS = ("tunespace.contrastive.backend",)


def _import_builtin_backends() -> None:
    """Importing the modules registers their backends; heavy imports inside them stay lazy."""
    import tunespace.encoders.encodecmae  # noqa: F401
    import tunespace.encoders.hf  # noqa: F401
    import tunespace.encoders.jukebox  # noqa: F401
    import tunespace.encoders.mfcc  # noqa: F401
    import tunespace.encoders.musicfm  # noqa: F401
    import tunespace.encoders.musicnn  # noqa: F401

    for module in _UPPER_LAYER_BACKENDS:
        importlib.import_module(module)

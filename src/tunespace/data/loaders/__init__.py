"""Loaders that turn public datasets and plain files into validated :class:`~tunespace.data.dataset.Dataset`s.

`LOADERS` maps a dataset name to a function of one path that returns the Dataset, for command lines and
configs; call the modules' functions directly for their extra options and outputs (hetrec's tag events).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tunespace.data.dataset import Dataset
from tunespace.data.loaders.hetrec import HetrecData, load_hetrec, tag_text
from tunespace.data.loaders.movielens import load_movielens_100k
from tunespace.data.loaders.onion import load_onion_events, load_onion_features
from tunespace.data.loaders.tabular import load_interactions_table


def _hetrec_dataset(path: str | Path) -> Dataset:
    return load_hetrec(path).dataset


LOADERS: dict[str, Callable[[str | Path], Dataset]] = {
    "hetrec": _hetrec_dataset,
    "movielens-100k": load_movielens_100k,
    "onion": load_onion_events,
    "table": load_interactions_table,
}

__all__ = [
    "LOADERS",
    "HetrecData",
    "load_hetrec",
    "load_interactions_table",
    "load_movielens_100k",
    "load_onion_events",
    "load_onion_features",
    "tag_text",
]

"""One mapping between external ids (strings) and contiguous indices, used by every model and metric."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.errors import UnknownIdError
from tunespace.io import write_parquet


def _as_string_index(ids: Iterable[str], name: str | None = None) -> pd.Index:
    values = ids if isinstance(ids, (pd.Series, np.ndarray, pd.Index)) else list(ids)
    return pd.Index(pd.array(values, dtype="string"), name=name)


class IdMap:
    """Bijection id <-> index in [0, len). Order is fixed at construction and saved with the model or split."""

    def __init__(self, ids: Iterable[str], name: str = "id"):
        self.name = name
        self._index = _as_string_index(ids, name)
        if self._index.hasnans:
            raise ValueError(f"{name}: an id map cannot hold a missing id")
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise ValueError(f"{name}: duplicate id {dup!r} in id map")

    @classmethod
    def from_values(cls, values: Iterable[str], name: str = "id") -> IdMap:
        """Distinct values in sorted order, so the map does not depend on row order."""
        distinct = pd.unique(pd.Series(values, dtype="string"))
        if pd.isna(distinct).any():
            raise ValueError(f"{name}: an id map cannot hold a missing id")
        return cls(np.sort(distinct.astype(str)), name=name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._index.equals(other._index)

    def __repr__(self) -> str:
        return f"IdMap({self.name}, {len(self)} ids)"

    @property
    def ids(self) -> np.ndarray:
        return self._index.to_numpy(dtype=object)

    def contains(self, ids: Iterable[str]) -> np.ndarray:
        """Boolean mask: which of `ids` are in the map."""
        return self._index.get_indexer(_as_string_index(ids)) >= 0

    def index_of(self, ids: Iterable[str]) -> np.ndarray:
        """Indices of `ids`; raises UnknownIdError naming the first unknown id."""
        query = _as_string_index(ids)
        positions = self._index.get_indexer(query)
        missing = positions < 0
        if missing.any():
            raise UnknownIdError(f"{self.name} {query[int(np.flatnonzero(missing)[0])]!r} is not in the map "
                                 f"({int(missing.sum())} unknown of {len(query)})")
        return positions.astype(np.int64)

    def id_of(self, indices: np.ndarray | Iterable[int]) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise UnknownIdError(f"{self.name} index out of range [0, {len(self)})")
        return self.ids[indices]

    def extended(self, new_ids: Iterable[str]) -> IdMap:
        """A map whose first len(self) entries are unchanged and `new_ids` follow."""
        return IdMap(np.concatenate([self.ids, np.asarray(list(new_ids), dtype=object)]), name=self.name)

    def save(self, path: str | Path) -> None:
        write_parquet(pd.DataFrame({self.name: self._index.to_numpy()}), path)

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        frame = pd.read_parquet(path)
        return cls(frame.iloc[:, 0].astype("string"), name=str(frame.columns[0]))

"""Interactions indexed by the id maps: the sparse user x item matrix every recommender is fitted on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tunespace.data.catalog import IdMap


@dataclass
class InteractionMatrix:
    """`matrix[u, i]` sums the weights of user u's events on item i; `events` keeps the time order.

    events: columns user_idx, item_idx (int64), timestamp (UTC), weight (float32), sorted by user then time.
    """

    users: IdMap
    items: IdMap
    matrix: sp.csr_matrix
    events: pd.DataFrame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, users: IdMap, items: IdMap) -> InteractionMatrix:
        """Index a validated interactions table; every user and item must be in the maps."""
        user_idx = users.index_of(frame["user_id"])
        item_idx = items.index_of(frame["track_id"])
        weight = frame["weight"].to_numpy(dtype=np.float32) if "weight" in frame else np.ones(len(frame), np.float32)
        matrix = sp.csr_matrix((weight, (user_idx, item_idx)), shape=(len(users), len(items)), dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        events = pd.DataFrame({"user_idx": user_idx, "item_idx": item_idx,
                               "timestamp": frame["timestamp"].to_numpy(), "weight": weight})
        events = events.sort_values(["user_idx", "timestamp", "item_idx"], kind="stable").reset_index(drop=True)
        return cls(users=users, items=items, matrix=matrix, events=events)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def binary(self) -> sp.csr_matrix:
        """1 where the user interacted with the item at all: implicit feedback."""
        out = self.matrix.copy()
        out.data = np.ones_like(out.data)
        return out


def pairs_to_csr(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """A binary CSR matrix from (user, item) index pairs, duplicates collapsed."""
    matrix = sp.csr_matrix((np.ones(len(user_idx), dtype=np.float32), (user_idx, item_idx)),
                           shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix

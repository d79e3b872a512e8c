"""Interactions indexed by the id maps: the sparse user x item matrix every recommender is fitted on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tunespace.data.catalog import IdMap
from tunespace.errors import ModelConfigError


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

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """Each user's distinct items in order of first interaction, for sequential models.

        Returns (indptr, items): user u's sequence is items[indptr[u]:indptr[u + 1]]. Items first met at the same
        timestamp are ordered by item index, as in `events`.
        """
        if self.events is None:
            raise ModelConfigError("this interaction matrix has no events (a loaded model's): sequences need times")
        first = self.events.drop_duplicates(["user_idx", "item_idx"], keep="first")
        users = first["user_idx"].to_numpy(np.int64)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=self.n_users))]).astype(np.int64)
        return indptr, first["item_idx"].to_numpy(np.int64)


def pairs_to_csr(user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """A binary CSR matrix from (user, item) index pairs, duplicates collapsed."""
    matrix = sp.csr_matrix((np.ones(len(user_idx), dtype=np.float32), (user_idx, item_idx)),
                           shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix

"""One interface for every recommender: fit on train interactions, recommend by full ranking, save, load.

A model only says how to fit and how to score a block of users x a block of items; ranking (chunked top-k,
exclusion of seen items, deterministic ties) is shared in :mod:`tunespace.evaluation.ranking`.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.devices import resolve_device
from tunespace.errors import ModelConfigError, NotFittedError, TunespaceError, UnknownIdError
from tunespace.evaluation.ranking import Scorer, TopK, top_k
from tunespace.io import atomic_path, write_text

logger = logging.getLogger(__name__)

RECOMMENDERS: dict[str, type[Recommender]] = {}

R = TypeVar("R", bound="type[Recommender]")


class UnknownRecommenderError(TunespaceError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str):  # noqa: ANN201 - decorator
    """Class decorator: make a recommender constructible by name (CLI, configs, `load`)."""

    def decorate(cls: R) -> R:
        cls.name = name
        RECOMMENDERS[name] = cls
        return cls

    return decorate


class Recommender(ABC):
    """Subclasses implement `_fit`, `_score`, `_state` and `_load_state`; hyperparameters live in `params`.

    A model that stops training early sets `uses_validation` and implements `_fit(train, validation)`; every
    other model implements `_fit(train)` and never sees validation pairs.
    """

    name: ClassVar[str] = "recommender"
    needs_embeddings: ClassVar[bool] = False
    uses_validation: ClassVar[bool] = False
    cold_items: ClassVar[str] = "never recommended (score -inf): nothing is learned about an item without train " \
        "interactions"
    """How the model scores items unseen in training (`extended`), for the notes of cold-start tables."""

    def __init__(self, device: str = "auto", user_chunk: int = 1024, item_chunk: int = 65536, **params: Any):
        self.params = params
        self.device = resolve_device(device)
        self.user_chunk = user_chunk
        self.item_chunk = item_chunk
        self.train_: InteractionMatrix | None = None
        self._seen: sp.csr_matrix | None = None

    # -- what a model implements -------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, train: InteractionMatrix) -> None:
        """Learn from the train interactions (models with `uses_validation` also take the validation pairs)."""

    @abstractmethod
    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (len(users), stop - start) of items [start, stop) for user indices `users`.

        `out`, when given, is a float32 buffer of that shape the model may fill and return.
        """

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that, with `params`, rebuild the fitted model."""

    def _new_item_scorer(self, ids: np.ndarray, embeddings: ItemEmbeddings | None) -> Scorer | None:
        """A scorer of items unseen in training (item index j is `ids[j]`), or None when the model cannot place
        them, so that they score -inf. Content models override this; `embeddings` defaults to their own."""
        return None

    @abstractmethod
    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of `_state`."""

    # -- the shared interface -------------------------------------------------------------------------------
    @property
    def users(self) -> IdMap:
        return self._fitted().users

    @property
    def items(self) -> IdMap:
        return self._fitted().items

    def _fitted(self) -> InteractionMatrix:
        if self.train_ is None:
            raise NotFittedError(f"{self.name}: call fit() or load() before scoring")
        return self.train_

    def fit(self, train: InteractionMatrix, validation: pd.DataFrame | None = None) -> Recommender:
        """Learn from `train`. `validation` holds held-out (user_id, track_id) pairs of validation users, which
        models with `uses_validation` rank after each epoch to stop early; the others ignore it. Never pass test
        pairs here: the model would be selected on them."""
        self.train_ = train
        self._seen = train.binary()
        if self.uses_validation:
            self._fit(train, validation)  # type: ignore[call-arg]
        else:
            self._fit(train)
        return self

    def score(self, users: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Raw scores of a block, for inspection and tests (ranking uses the chunked path)."""
        train = self._fitted()
        users = self._check_users(users)
        stop = train.n_items if stop is None else stop
        with torch.no_grad():
            return self._score(torch.from_numpy(users).to(self.device), start, stop).float().cpu().numpy()

    def _check_users(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        n_users = self._fitted().n_users
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise UnknownIdError(f"{self.name}: user index out of range [0, {n_users})")
        return users

    def recommend(self, users: np.ndarray, k: int, exclude_seen: bool = True,
                  demote: sp.csr_matrix | None = None) -> TopK:
        """Top-`k` item indices and scores for user indices `users`, over the whole catalogue.

        exclude_seen drops each user's train items. `demote` (CSR over users x items) makes those items lose
        ties; evaluation passes the relevant items so that ties never favour the ground truth.
        """
        train = self._fitted()
        users = self._check_users(users)
        with torch.no_grad():
            return top_k(self._score, users, train.n_items, k, exclude=self._seen if exclude_seen else None,
                         demote=demote, user_chunk=self.user_chunk, item_chunk=self.item_chunk,
                         device=self.device)

    def extended(self, items: IdMap, embeddings: ItemEmbeddings | None = None,
                 new_only: bool = False) -> ExtendedCatalogue:
        """This fitted model ranking over `items`: its train catalogue first, in the same order (a split's `items`
        is laid out so), then new items, which it scores as `cold_items` says. `embeddings` holds the new items'
        vectors for a content model that was loaded rather than fitted (a fitted one uses its own). With
        `new_only` the train items are never recommended: new items are ranked among themselves."""
        train = self._fitted()
        n_known = train.n_items
        if len(items) < n_known or not np.array_equal(items.ids[:n_known], train.items.ids):
            raise UnknownIdError(f"{self.name}: the extended catalogue must start with the model's {n_known} train "
                                 "items in the same order")
        new_ids = items.ids[n_known:]
        return ExtendedCatalogue(self, items, self._new_item_scorer(new_ids, embeddings) if len(new_ids) else None,
                                 new_only=new_only)

    def recommend_ids(self, user_ids: list[str], k: int, exclude_seen: bool = True) -> list[list[str]]:
        """Convenience for people: ids in, ids out (padding dropped)."""
        found = self.recommend(self.users.index_of(user_ids), k, exclude_seen).items
        return [list(self.items.id_of(row[row >= 0])) for row in found]

    def save(self, folder: str | Path) -> None:
        train = self._fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        seen = self._seen
        assert seen is not None
        state = {f"model.{key}": value for key, value in self._state().items()}
        state.update({"seen.indptr": seen.indptr, "seen.indices": seen.indices,
                      "seen.shape": np.asarray(seen.shape, dtype=np.int64)})
        with atomic_path(folder / "state.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **state)
        train.users.save(folder / "users.parquet")
        train.items.save(folder / "items.parquet")
        write_text(json.dumps({"name": self.name, "params": self.params}, indent=2), folder / "model.json")

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> Recommender:
        """Load any saved recommender; called on a subclass it checks the saved model is of that kind."""
        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        model_cls = get_recommender(meta["name"])
        if cls is not Recommender and not issubclass(model_cls, cls):
            raise UnknownRecommenderError(f"{folder} holds a {meta['name']} model, not a {cls.name}")
        with np.load(folder / "state.npz", allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        model = model_cls(device=device, **meta["params"])
        users, items = IdMap.load(folder / "users.parquet"), IdMap.load(folder / "items.parquet")
        shape = tuple(int(x) for x in arrays["seen.shape"])
        seen = sp.csr_matrix((np.ones(len(arrays["seen.indices"]), dtype=np.float32), arrays["seen.indices"],
                              arrays["seen.indptr"]), shape=shape)
        # a loaded model recommends; refitting needs the original interactions (weights and times)
        model.train_ = InteractionMatrix(users=users, items=items, matrix=seen, events=None)  # type: ignore[arg-type]
        model._seen = seen
        model._load_state({key[len("model."):]: value for key, value in arrays.items() if key.startswith("model.")})
        return model


class Standardiser:
    """Per-dimension z-scoring of content embeddings, fitted on the train catalogue's embedded items and applied
    unchanged to items added later. Backends whose dimensions differ in scale by orders of magnitude (MFCC
    statistics) otherwise let a few dimensions decide every cosine, or every input of a learned projection. Every
    content model takes it as its `standardize` option; rows without an embedding stay zero."""

    def __init__(self, shift: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.shift, self.scale = shift, scale

    def fit(self, vectors: np.ndarray) -> Standardiser:
        """Mean and standard deviation (float64) of `vectors`; a constant dimension keeps scale 1."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if len(vectors) == 0:
            raise ModelConfigError("standardize needs at least one item with an embedding")
        self.shift, std = vectors.mean(axis=0), vectors.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        return self

    def __call__(self, vectors: np.ndarray, placed: np.ndarray) -> np.ndarray:
        if self.shift is None or self.scale is None:
            return vectors
        out = ((vectors - self.shift) / self.scale).astype(np.float32)
        out[~placed] = 0.0
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for a model's saved state (none when not fitted)."""
        return {} if self.shift is None or self.scale is None else {"shift": self.shift, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Standardiser:
        return cls(state.get("shift"), state.get("scale"))


def train_item_vectors(model: str, items: IdMap, embeddings: ItemEmbeddings | None, purpose: str = "start from",
                       standardiser: Standardiser | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the train catalogue in its order (zeros where missing) and which items have one; a content
    model cannot place an item without one, so it is logged and never recommended. A `standardiser` is fitted on
    the embedded items and applied."""
    if embeddings is None:
        raise ModelConfigError(f"{model}: give the item embeddings to {purpose} (embeddings=ItemEmbeddings)")
    placed = pd.Index(items.ids).isin(embeddings.ids)  # hashed: np.isin on object arrays takes minutes at 1M
    if not placed.all():
        logger.warning("%s: %d of %d items have no embedding; they are never recommended", model, (~placed).sum(),
                       len(placed))
    vectors = embeddings.aligned(items, missing="zero")
    if standardiser is not None:
        if not placed.any():
            raise ModelConfigError(f"{model}: standardize needs at least one train item with an embedding")
        vectors = standardiser.fit(vectors[placed])(vectors, placed)
    return vectors, placed


def new_item_vectors(model: str, ids: np.ndarray, embeddings: ItemEmbeddings | None,
                     standardiser: Standardiser | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of items unseen in training, in the order of `ids` (zeros where missing), and which have one,
    through the train catalogue's `standardiser` when the model has one."""
    if embeddings is None:
        raise ModelConfigError(f"{model}: give the embeddings of the new items to place them by content")
    vectors = embeddings.aligned(IdMap(ids, name="track_id"), missing="zero")
    placed = pd.Index(ids).isin(embeddings.ids)
    return (vectors if standardiser is None else standardiser(vectors, placed)), placed


def dot_scorer(users: torch.Tensor, items: torch.Tensor, offset: torch.Tensor | None = None) -> Scorer:
    """Scores user vectors x item vectors (+ a per-item offset; -inf never recommends), as a `Scorer`."""

    def score(chosen: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        scores = torch.matmul(users[chosen], items[start:stop].T, out=out)
        if offset is not None:
            scores += offset[start:stop]
        return scores

    return score


class ExtendedCatalogue:
    """A fitted recommender ranking over its train catalogue followed by new (cold) items: what `evaluate` needs
    for cold-start evaluation (users, items, name and `recommend`). Item j < n_known is scored by the model as
    usual (or -inf with `new_only`, which ranks the new items among themselves); the others by the model's new-item
    scorer, or -inf when it has none (`placed` is then False)."""

    def __init__(self, model: Recommender, items: IdMap, new_items: Scorer | None, new_only: bool = False):
        self.model = model
        self.items = items
        self.n_known = model._fitted().n_items
        self._new_items = new_items
        self.new_only = new_only

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def users(self) -> IdMap:
        return self.model.users

    @property
    def placed(self) -> bool:
        """Whether the new items get real scores (False: they are never recommended)."""
        return self._new_items is not None or len(self.items) == self.n_known

    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        n_known = self.n_known
        if stop <= n_known:
            if self.new_only:
                return torch.full((len(users), stop - start), float("-inf"), device=self.model.device)
            return self.model._score(users, start, stop, out)
        if start >= n_known:
            if self._new_items is None:
                return torch.full((len(users), stop - start), float("-inf"), device=self.model.device)
            return self._new_items(users, start - n_known, stop - n_known, out)
        known = self._score(users, start, n_known)
        new = self._score(users, n_known, stop)
        return torch.cat([known, new], dim=1)

    def score(self, users: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Raw scores of a block over the extended catalogue, for inspection and tests."""
        users = self.model._check_users(users)
        stop = len(self.items) if stop is None else stop
        with torch.no_grad():
            return self._score(torch.from_numpy(users).to(self.model.device), start, stop).float().cpu().numpy()

    def recommend(self, users: np.ndarray, k: int, exclude_seen: bool = True,
                  demote: sp.csr_matrix | None = None) -> TopK:
        """Top-`k` over the extended catalogue (see `Recommender.recommend`); train items are excluded as there."""
        model = self.model
        users = model._check_users(users)
        with torch.no_grad():
            return top_k(self._score, users, len(self.items), k, exclude=model._seen if exclude_seen else None,
                         demote=demote, user_chunk=model.user_chunk, item_chunk=model.item_chunk,
                         device=model.device)


def get_recommender(name: str) -> type[Recommender]:
    if name not in RECOMMENDERS:
        raise UnknownRecommenderError(f"unknown recommender {name!r}; choose from {', '.join(sorted(RECOMMENDERS))}")
    return RECOMMENDERS[name]

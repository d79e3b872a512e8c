"""Shallow Net of Tamm and Aljanaki (RecSys 2024): content embeddings plus listening history in one layer.

User and item ids go through embedding tables and one fully connected layer with ReLU that keeps the dimension,
shared by users and items; the score is the cosine of the two outputs. The item table holds the backend's
embeddings and is frozen (a buffer, so no optimiser can move it: the study's released code inverted its freeze
flag); the user table starts at the mean of each user's training items and is learned. Training minimises a
max-margin hinge loss (Lee et al., 2018) in which, as in Magron and Févotte (2021), each (user, item) pair is
contrasted with 20 users who never interacted with the item.

`shallow-random` is the paper's reference row: the same network with a learned, randomly initialised item table.
Two hybrids sit between them: `shallow-hybrid` adds a free learned residual to each item's content vector (dropped
per item during training, so that content alone must still place an item, as it must for a new one) and
`shallow-finetune` trains the content vectors themselves from their pretrained values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import ModelConfigError
from tunespace.evaluation.ranking import Scorer
from tunespace.recommenders.base import Standardiser, dot_scorer, new_item_vectors, register, train_item_vectors
from tunespace.recommenders.neural import NeuralRecommender, residual_keep, residual_options

logger = logging.getLogger(__name__)


class MaxMarginHingeLoss(nn.Module):
    """mean over pairs and negatives of max(0, margin - s(user, item) + s(negative user, item))."""

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def forward(self, positive: torch.Tensor, negative: torch.Tensor) -> dict[str, torch.Tensor]:
        """positive (B,) scores of the pairs, negative (B, K) scores of their negatives."""
        violation = (self.margin - positive[:, None] + negative).clamp_min(0.0)
        return {"loss": violation.mean(), "active": (violation > 0).float().mean()}


class NegativeUserSampler:
    """Uniformly random users who never interacted with a given item, drawn for a whole batch at once.

    Candidates are drawn uniformly and those who interacted are rejected and redrawn, so each round only touches
    the rejected entries; with sparse data one or two rounds suffice. Membership is a binary search over the
    sorted codes item * n_users + user of the interactions.
    """

    def __init__(self, interactions: sp.csr_matrix, device: torch.device | str = "cpu"):
        coo = interactions.tocoo()
        self.n_users = int(interactions.shape[0])
        codes = coo.col.astype(np.int64) * self.n_users + coo.row.astype(np.int64)
        self._codes = torch.from_numpy(np.unique(codes)).to(device)
        users_per_item = np.bincount(coo.col, minlength=interactions.shape[1])
        self.has_negatives = users_per_item < self.n_users  # an item everybody heard has no negative user

    def _interacted(self, items: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        codes = items * self.n_users + users
        position = torch.searchsorted(self._codes, codes).clamp_max_(max(len(self._codes) - 1, 0))
        return self._codes[position] == codes if len(self._codes) else torch.zeros_like(codes, dtype=torch.bool)

    def sample(self, items: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """(len(items), k) user indices; row r holds users who never interacted with items[r]."""
        if not self.has_negatives[items.cpu().numpy()].all():
            raise ModelConfigError("every user interacted with one of the items: it has no negative user")
        items = items[:, None].expand(-1, k)
        users = torch.randint(self.n_users, items.shape, generator=generator, device=items.device)
        rejected = self._interacted(items, users)
        while rejected.any():
            rows, columns = rejected.nonzero(as_tuple=True)
            redrawn = torch.randint(self.n_users, rows.shape, generator=generator, device=items.device)
            users[rows, columns] = redrawn
            rejected[rows, columns] = self._interacted(items[rows, columns], redrawn)
        return users


class ShallowNetwork(nn.Module):
    """Two tables through one shared Linear(d, d) + ReLU; outputs are unit vectors, so dot products are cosines."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, freeze_items: bool, residual: bool = False):
        super().__init__()
        self.users = nn.Parameter(users)
        if freeze_items:
            self.register_buffer("items", items)  # a buffer has no gradient and is in no optimiser
        else:
            self.items = nn.Parameter(items)
        # a free per-item offset of the input vector, zero at the start; `residual_keep` masks it per training batch
        self.residual = nn.Parameter(torch.zeros_like(items)) if residual else None
        self.residual_keep: torch.Tensor | None = None
        self.layer = nn.Linear(items.shape[1], items.shape[1])

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.relu(self.layer(vectors)), dim=-1)

    # Rows are looked up with F.embedding, whose backward sums repeated rows in a fixed order; plain indexing
    # accumulates with atomic adds across CPU threads, so the same seed gave different weights from run to run.
    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.encode(F.embedding(users, self.users))

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        vectors = self.items if items is None else F.embedding(items, self.items)
        if self.residual is not None:
            residual = self.residual if items is None else F.embedding(items, self.residual)
            if self.training and self.residual_keep is not None:
                keep = self.residual_keep if items is None else self.residual_keep[items]
                residual = residual * keep[..., None]
            vectors = vectors + residual
        return self.encode(vectors)


@register("shallow")
class ShallowNet(NeuralRecommender):
    """Defaults are the paper's (margin 0.2, 20 negative users, Adam 1e-3, up to 100 epochs) or, where the paper
    is silent, its released code's (early-stopping patience 16, learning-rate plateau patience 5); the batch of
    1024 pairs is ours. An item without an embedding cannot be placed by content: as in `knn` it is left out of
    user means and training pairs and is never recommended. `standardize` (default on, chosen on validation users)
    z-scores the embedding dimensions over the train catalogue first (`Standardiser`)."""

    needs_embeddings = True
    learned_items: ClassVar[bool] = False
    cold_items = "ranked like a train item: its frozen embedding through the trained layer"

    def __init__(self, embeddings: ItemEmbeddings | None = None, margin: float = 0.2, negatives: int = 20,
                 batch_size: int = 1024, epochs: int = 100, patience: int = 16, lr: float = 1e-3,
                 plateau_patience: int = 5, plateau_factor: float = 0.1, validation_k: int = 50, seed: int = 0,
                 standardize: bool = True, **options):
        super().__init__(margin=margin, negatives=negatives, batch_size=batch_size, epochs=epochs,
                         patience=patience, lr=lr, plateau_patience=plateau_patience, plateau_factor=plateau_factor,
                         validation_k=validation_k, seed=seed, standardize=bool(standardize), **options)
        if negatives < 1:
            raise ModelConfigError(f"{self.name}: negatives must be at least 1, got {negatives}")
        self.embeddings = embeddings
        self._standardiser = Standardiser() if standardize and not self.learned_items else None
        self.loss = MaxMarginHingeLoss(margin)
        self._placed: np.ndarray | None = None
        self._pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sampler: NegativeUserSampler | None = None

    def _item_table(self, train: InteractionMatrix) -> tuple[np.ndarray, np.ndarray]:
        """Initial item vectors and which items have one."""
        return train_item_vectors(self.name, train.items, self.embeddings, standardiser=self._standardiser)

    def _network(self, users: torch.Tensor, items: torch.Tensor) -> ShallowNetwork:
        frozen = not (self.learned_items or self.params.get("finetune", False))
        return ShallowNetwork(users, items, freeze_items=frozen, residual=bool(self.params.get("residual", False)))

    def _build(self, train: InteractionMatrix) -> None:
        items, placed = self._item_table(train)
        seen = train.binary()
        profiles = (seen @ sp.diags(placed.astype(np.float32))).tocsr()
        profiles.eliminate_zeros()
        sizes = np.asarray(profiles.sum(axis=1)).ravel()
        means = np.asarray(sp.diags(1.0 / np.maximum(sizes, 1)) @ profiles @ items, dtype=np.float32)
        self.net = self._network(torch.from_numpy(means),
                                 torch.from_numpy(np.ascontiguousarray(items))).to(self.device)
        self._placed = placed
        self._sampler = NegativeUserSampler(seen, self.device)
        pairs = profiles.tocoo()
        usable = self._sampler.has_negatives[pairs.col]
        if not usable.all():
            logger.warning("%s: %d pairs name items every user heard (no negative user); left out of training",
                           self.name, (~usable).sum())
        if not usable.any():
            raise ModelConfigError(f"{self.name}: no (user, item) pair to train on")
        self._pairs = (torch.from_numpy(pairs.row[usable].astype(np.int64)).to(self.device),
                       torch.from_numpy(pairs.col[usable].astype(np.int64)).to(self.device))

    def _epoch_losses(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        assert self._pairs is not None and self._sampler is not None and isinstance(self.net, ShallowNetwork)
        users, items = self._pairs
        order = torch.randperm(len(users), generator=generator, device=users.device)
        drop = float(self.params.get("residual_dropout", 0.0))
        for batch in order.split(int(self.params["batch_size"])):
            if self.net.residual is not None and drop > 0:
                self.net.residual_keep = residual_keep(len(self.net.residual), drop, generator, self.device)
            pair_items = items[batch]
            negatives = self._sampler.sample(pair_items, int(self.params["negatives"]), generator)
            # each distinct user is encoded once: a batch names far fewer users than its B * (1 + K) slots
            distinct, slots = torch.unique(torch.cat([users[batch, None], negatives], dim=1), return_inverse=True)
            user_vectors = F.embedding(slots, self.net.user_vectors(distinct))  # (B, 1 + K, d), as ShallowNetwork says
            scores = torch.bmm(user_vectors, self.net.item_vectors(pair_items)[:, :, None]).squeeze(2)
            yield self.loss(scores[:, 0], scores[:, 1:])

    @torch.no_grad()
    def _refresh(self, users: np.ndarray | None = None) -> None:
        assert isinstance(self.net, ShallowNetwork) and self._placed is not None
        self.net.eval()
        self._item_vectors = self.net.item_vectors()
        if users is None or self._user_vectors is None:
            self._user_vectors = torch.zeros_like(self.net.users)
        chosen = torch.arange(len(self.net.users), device=self.device) if users is None else (
            torch.from_numpy(np.asarray(users, dtype=np.int64)).to(self.device))
        self._user_vectors[chosen] = self.net.user_vectors(chosen)
        offset = torch.from_numpy(np.where(self._placed, 0.0, -np.inf).astype(np.float32)).to(self.device)
        self._item_offset = None if self._placed.all() else offset

    @torch.no_grad()
    def _new_item_scorer(self, ids: np.ndarray, embeddings: ItemEmbeddings | None) -> Scorer | None:
        if self.learned_items:
            return None
        assert isinstance(self.net, ShallowNetwork) and self._user_vectors is not None
        vectors, placed = new_item_vectors(self.name, ids, embeddings or self.embeddings, self._standardiser)
        self.net.eval()
        items = self.net.encode(torch.from_numpy(vectors).to(self.device))
        offset = torch.from_numpy(np.where(placed, 0.0, -np.inf).astype(np.float32)).to(self.device)
        return dot_scorer(self._user_vectors, items, None if placed.all() else offset)

    def _extra_state(self) -> dict[str, np.ndarray]:
        assert self._placed is not None
        return {"placed": self._placed} | (self._standardiser.state() if self._standardiser is not None else {})

    def _rebuild(self, state: dict[str, np.ndarray]) -> nn.Module:
        self._placed = state["placed"]
        if self._standardiser is not None:
            self._standardiser = Standardiser.from_state(state)
        return self._network(torch.from_numpy(state["net.users"]), torch.from_numpy(state["net.items"]))


@register("shallow-random")
class RandomShallowNet(ShallowNet):
    """The reference row: item vectors of size `dim` drawn from N(0, 1) and learned with everything else (64, as in
    the released code); users still start at the mean of their items' vectors."""

    needs_embeddings = False
    learned_items = True
    cold_items = "never recommended (score -inf): its item vectors are learned from train interactions only"

    def __init__(self, dim: int = 64, **options):
        super().__init__(dim=dim, **options)
        if dim < 1:
            raise ModelConfigError(f"{self.name}: dim must be at least 1, got {dim}")

    def _item_table(self, train: InteractionMatrix) -> tuple[np.ndarray, np.ndarray]:
        if self.embeddings is not None:
            raise ModelConfigError(f"{self.name} learns its item table from scratch; use `shallow` for embeddings")
        vectors = torch.randn(train.n_items, int(self.params["dim"]))  # the seeded global generator
        return vectors.numpy(), np.ones(train.n_items, dtype=bool)


@register("shallow-hybrid")
class HybridShallowNet(ShallowNet):
    """Content plus a free item residual in the input space (zero at the start). Each training batch drops an item's
    residual with probability `residual_dropout` (0.5), so the shared layer keeps placing items from content alone:
    a new item, which has no residual, is encoded from its embedding as in `shallow`."""

    cold_items = "ranked like a train item without its residual: its frozen embedding through the trained layer"

    def __init__(self, residual_dropout: float = 0.5, **options):
        super().__init__(**residual_options("shallow-hybrid", residual_dropout, options))


@register("shallow-finetune")
class FinetunedShallowNet(ShallowNet):
    """The pretrained-unfrozen variant: the item table starts at the backend's embeddings and is trained with the
    network. A new item enters with its untrained embedding through the trained layer."""

    cold_items = "its untrained embedding through the trained layer"

    def __init__(self, **options):
        options.pop("finetune", None)  # a saved model's params name it
        super().__init__(finetune=True, **options)

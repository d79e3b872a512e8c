"""BERT4Rec (Sun et al., CIKM 2019) over frozen content embeddings, as Tamm and Aljanaki (RecSys 2024) use it.

A user is the sequence of their distinct train items in order of first interaction. Training is the Cloze task:
each item token is replaced by [MASK] with probability 0.2 and the transformer predicts it by cross-entropy over
the catalogue (or over the target plus sampled items, for catalogues too large for full logits). To recommend,
[MASK] is appended after the user's latest items and every item is scored at that last position.

Item vectors, at the input and the output alike, are the frozen backend embeddings through a learned projection to
the hidden size, so a 4800-d backend does not force a 4800-d transformer. `bert4rec-random` learns an item table
of the hidden size instead: the paper's reference row. Two hybrids sit between them: `bert4rec-hybrid` adds a free
learned residual to each item's projected content (dropped per item during training, so the projection alone must
still place an item, as it must for a new one) and `bert4rec-finetune` trains the content vectors themselves from
their pretrained values.

Windows hold at most `max_len` (300) tokens in training and at inference, right-aligned so that the position of a
token counts back from the end of the sequence: training sees a user's latest 300 items, inference the latest 299
and the [MASK]. (The study trained on 300 and predicted from 50.)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import ModelConfigError
from tunespace.evaluation.ranking import Scorer
from tunespace.recommenders.base import Standardiser, dot_scorer, new_item_vectors, register, train_item_vectors
from tunespace.recommenders.neural import NeuralRecommender, residual_keep, residual_options

PAD, MASK, SPECIAL = 0, 1, 2  # token ids; item i is token i + SPECIAL


def cloze_mask(tokens: torch.Tensor, probability: float, generator: torch.Generator,
               maskable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each item token by [MASK] with `probability`; padding (and tokens not `maskable`) never.

    Returns the masked input and the boolean positions to predict.
    """
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    masked = (draw < probability) & (tokens >= SPECIAL)
    if maskable is not None:
        masked &= maskable
    return tokens.masked_fill(masked, MASK), masked


def latest(indptr: np.ndarray, items: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `keep` entries of each CSR-style row (the most recent items of each sequence)."""
    lengths = np.diff(indptr)
    kept = np.minimum(lengths, keep)
    new_indptr = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    first = indptr[1:] - kept
    index = np.repeat(first - new_indptr[:-1], kept) + np.arange(new_indptr[-1])
    return new_indptr, items[index]


class Bert4RecNetwork(nn.Module):
    """Post-norm transformer encoder over item, [MASK] and position embeddings; a GELU head whose output is
    scored against the item vectors plus a per-item bias, as in Sun et al."""

    def __init__(self, n_items: int, hidden: int, layers: int, heads: int, ff_dim: int, dropout: float,
                 max_len: int, content: torch.Tensor | None, residual: bool = False, finetune: bool = False):
        super().__init__()
        self.max_len = max_len
        self.residual: nn.Parameter | None = None
        self.residual_keep: torch.Tensor | None = None  # per-item residual mask of the current training batch
        if content is None:
            self.item_table = nn.Parameter(torch.randn(n_items, hidden) * 0.02)
            self.projection = None
        else:
            if finetune:
                self.content = nn.Parameter(content.clone())
            else:
                self.register_buffer("content", content)  # a buffer has no gradient and is in no optimiser
            self.projection = nn.Linear(content.shape[1], hidden)
            if residual:  # starts at zero: training begins from the content model
                self.residual = nn.Parameter(torch.zeros(n_items, hidden))
        self.mask_vector = nn.Parameter(torch.randn(hidden) * 0.02)
        self.positions = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.positions.weight, std=0.02)  # BERT's scale: N(0, 1) would drown the item vectors
        self.input_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, heads, ff_dim, dropout, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden-size vectors of `items` (all when None): projected content (plus the residual, masked by
        `residual_keep` in training), or the learned table."""
        if self.projection is None:
            return self.item_table if items is None else self.item_table[items]
        vectors = self.projection(self.content if items is None else self.content[items])
        if self.residual is not None:
            residual = self.residual if items is None else self.residual[items]
            if self.training and self.residual_keep is not None:
                keep = self.residual_keep if items is None else self.residual_keep[items]
                residual = residual * keep[..., None]
            vectors = vectors + residual
        return vectors

    def forward(self, tokens: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Output states (B, T, hidden) of right-aligned token windows (B, T); `table`, when given, holds every
        item's vector (saves projecting the same rows twice when it is needed for the output anyway)."""
        items = (tokens - SPECIAL).clamp_min(0)
        vectors = self.item_vectors(items) if table is None else table[items]
        vectors = torch.where((tokens == MASK)[..., None], self.mask_vector, vectors)
        vectors = vectors * (tokens != PAD)[..., None]
        positions = torch.arange(self.max_len - tokens.shape[1], self.max_len, device=tokens.device)
        hidden = self.dropout(self.input_norm(vectors + self.positions(positions)))
        return self.head(self.encoder(hidden, src_key_padding_mask=tokens == PAD))

    def logits(self, states: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (M, n_items) of output states (M, hidden) against every item."""
        table = self.item_vectors() if table is None else table
        return states @ table.T + self.item_bias


class ClozeLoss(nn.Module):
    """Cross-entropy of the masked positions: over the whole catalogue, or, with `negatives` > 0, over the target
    and `negatives` uniformly sampled items shared by the batch (a sampled item equal to the target is dropped;
    uniform sampling needs no log-probability correction)."""

    def __init__(self, negatives: int = 0):
        super().__init__()
        self.negatives = negatives

    def forward(self, states: torch.Tensor, targets: torch.Tensor, net: Bert4RecNetwork,
                generator: torch.Generator, table: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.negatives == 0:
            return {"loss": F.cross_entropy(net.logits(states, table), targets)}
        n_items = len(net.item_bias)
        sampled = torch.randint(n_items, (self.negatives,), generator=generator, device=states.device)
        positive = (states * net.item_vectors(targets)).sum(dim=-1) + net.item_bias[targets]
        negative = states @ net.item_vectors(sampled).T + net.item_bias[sampled]
        negative = negative.masked_fill(sampled[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive[:, None], negative], dim=1)
        return {"loss": F.cross_entropy(logits, torch.zeros_like(targets))}


@register("bert4rec")
class Bert4Rec(NeuralRecommender):
    """Defaults: mask probability 0.2, max length 300, Adam 1e-3, up to 200 epochs (the paper); 2 layers, 2 heads,
    feed-forward 256, batch 128, patience 16, plateau patience 5 (the released code); hidden 64 and dropout 0.1
    (Sun et al.). An item without an embedding stays in sequences as context (its input is the projection's bias)
    but is never a training target and never recommended. `standardize` (default on, chosen on validation users)
    z-scores the embedding dimensions over the train catalogue before the projection (`Standardiser`)."""

    needs_embeddings = True
    cold_items = "its embedding through the trained projection, with the mean learned bias of the train items"

    def __init__(self, embeddings: ItemEmbeddings | None = None, hidden: int = 64, layers: int = 2, heads: int = 2,
                 ff_dim: int = 256, dropout: float = 0.1, max_len: int = 300, mask_prob: float = 0.2,
                 sampled_negatives: int = 0, batch_size: int = 128, epochs: int = 200, patience: int = 16,
                 lr: float = 1e-3, plateau_patience: int = 5, plateau_factor: float = 0.1, validation_k: int = 50,
                 seed: int = 0, standardize: bool = True, **options):
        super().__init__(hidden=hidden, layers=layers, heads=heads, ff_dim=ff_dim, dropout=dropout, max_len=max_len,
                         mask_prob=mask_prob, sampled_negatives=sampled_negatives, batch_size=batch_size,
                         epochs=epochs, patience=patience, lr=lr, plateau_patience=plateau_patience,
                         plateau_factor=plateau_factor, validation_k=validation_k, seed=seed,
                         standardize=bool(standardize), **options)
        if max_len < 2:
            raise ModelConfigError(f"{self.name}: max_len must be at least 2 (an item and the [MASK]), got {max_len}")
        if hidden % heads:
            raise ModelConfigError(f"{self.name}: hidden ({hidden}) must be a multiple of heads ({heads})")
        if not 0.0 < mask_prob < 1.0:
            raise ModelConfigError(f"{self.name}: mask_prob must lie in (0, 1), got {mask_prob}")
        if sampled_negatives < 0:
            raise ModelConfigError(f"{self.name}: sampled_negatives must be 0 (full softmax) or more, got "
                                   f"{sampled_negatives}")
        self.embeddings = embeddings
        self._standardiser = Standardiser() if standardize else None
        self.loss = ClozeLoss(sampled_negatives)
        self._placed: torch.Tensor | None = None
        self._indptr: torch.Tensor | None = None
        self._items: torch.Tensor | None = None

    def _content(self, train: InteractionMatrix) -> tuple[torch.Tensor | None, np.ndarray]:
        """Frozen content vectors (None for a learned table) and which items have one."""
        vectors, placed = train_item_vectors(self.name, train.items, self.embeddings,
                                             standardiser=self._standardiser)
        return torch.from_numpy(vectors), placed

    def _network(self, n_items: int, content: torch.Tensor | None) -> Bert4RecNetwork:
        p = self.params
        return Bert4RecNetwork(n_items, p["hidden"], p["layers"], p["heads"], p["ff_dim"], p["dropout"],
                               p["max_len"], content, residual=bool(p.get("residual", False)),
                               finetune=bool(p.get("finetune", False)))

    def _set_sequences(self, indptr: np.ndarray, items: np.ndarray, placed: np.ndarray) -> None:
        self._indptr = torch.from_numpy(indptr).to(self.device)
        self._items = torch.from_numpy(items).to(self.device)
        self._placed = torch.from_numpy(placed).to(self.device)

    def _build(self, train: InteractionMatrix) -> None:
        content, placed = self._content(train)
        self.net = self._network(train.n_items, content).to(self.device)
        self._set_sequences(*latest(*train.sequences(), keep=int(self.params["max_len"])), placed)

    def _windows(self, users: torch.Tensor, append_mask: bool) -> torch.Tensor:
        """Right-aligned token windows (B, T <= max_len) of the users' latest items, then [MASK] if asked."""
        assert self._indptr is not None and self._items is not None
        stop = self._indptr[users + 1]
        room = int(self.params["max_len"]) - int(append_mask)
        lengths = (stop - self._indptr[users]).clamp_max(room)
        width = int(lengths.max()) if len(users) else 0
        back = torch.arange(width, 0, -1, device=stop.device)  # distance of each column from the end
        valid = back[None, :] <= lengths[:, None]
        index = (stop[:, None] - back[None, :]).clamp_min(0)
        tokens = torch.where(valid, self._items[index] + SPECIAL, PAD)
        if append_mask:
            tokens = torch.cat([tokens, torch.full((len(users), 1), MASK, device=stop.device)], dim=1)
        return tokens

    def _length_batches(self, users: torch.Tensor) -> list[torch.Tensor]:
        """Batches of users with similar window lengths (stable sort of `users`), so that short histories are not
        padded to the longest one in a random batch: most of the compute would go to padding otherwise."""
        assert self._indptr is not None
        lengths = (self._indptr[users + 1] - self._indptr[users]).clamp_max(int(self.params["max_len"]))
        return list(users[torch.sort(lengths, stable=True).indices].split(int(self.params["batch_size"])))

    def _epoch_losses(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        assert self._indptr is not None and self._placed is not None and isinstance(self.net, Bert4RecNetwork)
        users = torch.nonzero(self._indptr[1:] > self._indptr[:-1]).squeeze(1)
        batches = self._length_batches(users[torch.randperm(len(users), generator=generator, device=users.device)])
        full = self.params["sampled_negatives"] == 0
        order = torch.randperm(len(batches), generator=generator, device=users.device).tolist()
        for batch in (batches[position] for position in order):
            tokens = self._windows(batch, append_mask=False)
            maskable = self._placed[(tokens - SPECIAL).clamp_min(0)]
            inputs, masked = cloze_mask(tokens, float(self.params["mask_prob"]), generator, maskable)
            if not masked.any():
                continue
            self._resample_residual(generator)
            table = self.net.item_vectors() if full else None
            states = self.net(inputs, table)[masked]
            yield self.loss(states, tokens[masked] - SPECIAL, self.net, generator, table)

    def _resample_residual(self, generator: torch.Generator) -> None:
        """Draw which items keep their residual in this batch (`residual_keep`)."""
        assert isinstance(self.net, Bert4RecNetwork)
        drop = float(self.params.get("residual_dropout", 0.0))
        if self.net.residual is not None and drop > 0.0:
            self.net.residual_keep = residual_keep(len(self.net.residual), drop, generator, self.device)

    @torch.no_grad()
    def _refresh(self, users: np.ndarray | None = None) -> None:
        assert self._indptr is not None and self._placed is not None and isinstance(self.net, Bert4RecNetwork)
        self.net.eval()
        table = self.net.item_vectors()
        self._item_vectors = table
        self._item_offset = self.net.item_bias.masked_fill(~self._placed, float("-inf"))
        n_users = len(self._indptr) - 1
        if users is None or self._user_vectors is None:
            self._user_vectors = torch.zeros(n_users, table.shape[1], device=self.device)
        chosen = torch.arange(n_users, device=self.device) if users is None else (
            torch.from_numpy(np.asarray(users, dtype=np.int64)).to(self.device))
        for batch in self._length_batches(chosen):
            self._user_vectors[batch] = self.net(self._windows(batch, append_mask=True), table)[:, -1]

    @torch.no_grad()
    def _new_item_scorer(self, ids: np.ndarray, embeddings: ItemEmbeddings | None) -> Scorer | None:
        """A new item has no learned bias (it was never a target): it gets the mean bias of the placed train
        items, a neutral value, rather than the initial 0 that the softmax pushes unseen targets away from."""
        assert isinstance(self.net, Bert4RecNetwork) and self._placed is not None
        if self.net.projection is None or self._user_vectors is None:
            return None
        vectors, placed = new_item_vectors(self.name, ids, embeddings or self.embeddings, self._standardiser)
        self.net.eval()
        items = self.net.projection(torch.from_numpy(vectors).to(self.device))
        bias = self.net.item_bias[self._placed].mean() if self._placed.any() else torch.zeros((), device=self.device)
        offset = torch.where(torch.from_numpy(placed).to(self.device), bias, float("-inf"))
        return dot_scorer(self._user_vectors, items, offset)

    def _extra_state(self) -> dict[str, np.ndarray]:
        assert self._indptr is not None and self._items is not None and self._placed is not None
        state = {"sequences.indptr": self._indptr.cpu().numpy(), "sequences.items": self._items.cpu().numpy(),
                 "placed": self._placed.cpu().numpy()}
        return state | (self._standardiser.state() if self._standardiser is not None else {})

    def _rebuild(self, state: dict[str, np.ndarray]) -> nn.Module:
        self._set_sequences(state["sequences.indptr"], state["sequences.items"], state["placed"])
        if self._standardiser is not None:
            self._standardiser = Standardiser.from_state(state)
        content = torch.from_numpy(state["net.content"]) if "net.content" in state else None
        return self._network(len(state["placed"]), content)


@register("bert4rec-random")
class RandomBert4Rec(Bert4Rec):
    """The reference row: a learned item table of the hidden size, initialised N(0, 0.02) as in BERT."""

    needs_embeddings = False
    cold_items = "never recommended (score -inf): its item table is learned from train interactions only"

    def _content(self, train: InteractionMatrix) -> tuple[torch.Tensor | None, np.ndarray]:
        if self.embeddings is not None:
            raise ModelConfigError(f"{self.name} learns its item table from scratch; use `bert4rec` for embeddings")
        return None, np.ones(train.n_items, dtype=bool)


@register("bert4rec-hybrid")
class HybridBert4Rec(Bert4Rec):
    """Projected content plus a free item residual (zero at the start). Each training batch drops an item's
    residual with probability `residual_dropout` (0.5), so the projection keeps carrying the item on its own: a new
    item, which has no residual, is scored from that projection as in `bert4rec`."""

    cold_items = "its embedding through the trained projection (no residual), with the mean learned bias"

    def __init__(self, residual_dropout: float = 0.5, **options):
        super().__init__(**residual_options("bert4rec-hybrid", residual_dropout, options))


@register("bert4rec-finetune")
class FinetunedBert4Rec(Bert4Rec):
    """The pretrained-unfrozen variant: the content vectors start at the backend's embeddings and are trained with
    the network. A new item enters with its untrained embedding through the trained projection."""

    def __init__(self, **options):
        options.pop("finetune", None)  # a saved model's params name it
        super().__init__(finetune=True, **options)

"""Contrastive losses as modules that return named terms.

Under DDP every rank holds a slice of the global batch; `gather_across_ranks` collects all slices so that the
negatives of each anchor span the global batch. Each rank then computes the loss of the WHOLE global batch with
its own slice carrying gradients (the other slices arrive as constants), so the gradient with respect to its own
features is exact. DDP averages gradients over ranks, so the gathered loss scales its gradient (not its value) by
the world size: N processes then take the same steps as one process with the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_across_ranks(features: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(global batch, ...) rows and the offset of this rank's rows; a no-op outside DDP.

    Every rank must pass the same number of rows (the training loop guarantees equal per-rank batches).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features, 0
    parts = [torch.empty_like(features) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, features.detach().contiguous())
    rank = dist.get_rank()
    parts[rank] = features
    return torch.cat(parts), rank * len(features)


@torch.no_grad()
def strict_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows i whose logit i (the positive) beats every other logit of the row; a tie is a miss."""
    rows = torch.arange(len(logits), device=logits.device)
    others = logits.clone()
    others[rows, rows] = float("-inf")
    return (logits[rows, rows] > others.max(dim=1).values).float().mean()


class TemperatureLoss(nn.Module):
    """A softmax loss over gathered features with a learnable temperature, clamped to [min_temperature,
    max_temperature], and the DDP scaling of the module docstring."""

    def __init__(self, temperature: float = 0.07, min_temperature: float = 0.01, max_temperature: float = 1.0,
                 learnable: bool = True) -> None:
        super().__init__()
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise ValueError("need 0 < min_temperature <= temperature <= max_temperature")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learnable)
        self.bounds = (math.log(min_temperature), math.log(max_temperature))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.clamp(*self.bounds).exp()

    def rank_temperature(self, ranks: int) -> torch.Tensor:
        """The temperature to divide by on this rank: every rank sees its full gradient, so it is kept unscaled by
        the `rank_loss` scaling."""
        temperature = self.temperature
        return temperature if ranks == 1 else temperature.detach() + (temperature - temperature.detach()) / ranks

    @staticmethod
    def rank_loss(loss: torch.Tensor, ranks: int) -> torch.Tensor:
        """Same value, gradient times the world size (undoes DDP's averaging, see the module docstring)."""
        return loss if ranks == 1 else ranks * loss - (ranks - 1) * loss.detach()


class InfoNCE(TemperatureLoss):
    """Symmetric InfoNCE (CLIP's loss) with a learnable temperature, clamped to [min_temperature, max_temperature].

    Row i of `anchors` and row i of `positives` are a pair; every other row of the (global) batch is a negative.
    `weights` (optional, per pair) scale each pair's terms, e.g. for pair sources of different reliability.
    """

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor,
                weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        anchors = F.normalize(anchors, dim=-1)
        positives = F.normalize(positives, dim=-1)
        if weights is None:
            weights = torch.ones(len(anchors), device=anchors.device)
        all_anchors, _ = gather_across_ranks(anchors)
        all_positives, _ = gather_across_ranks(positives)
        all_weights, _ = gather_across_ranks(weights.to(anchors.dtype))
        ranks = world_size()
        temperature = self.rank_temperature(ranks)
        logits = all_anchors @ all_positives.T / temperature
        targets = torch.arange(len(logits), device=logits.device)
        scale = all_weights.sum().clamp_min(1e-12)
        forward_term = (all_weights * F.cross_entropy(logits, targets, reduction="none")).sum() / scale
        backward_term = (all_weights * F.cross_entropy(logits.T, targets, reduction="none")).sum() / scale
        accuracy = strict_accuracy(logits)
        loss = self.rank_loss((forward_term + backward_term) / 2, ranks)
        return {"loss": loss, "anchor_to_positive": forward_term,
                "positive_to_anchor": backward_term, "temperature": temperature.detach(), "accuracy": accuracy}


class AnchorDistillation(nn.Module):
    """Keeps embeddings near reference ones (stage-1 values): mean of 1 - cosine, 0 when they coincide."""

    def forward(self, embeddings: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        cosine = F.cosine_similarity(embeddings, reference.detach(), dim=-1)
        return {"loss": (1 - cosine).mean(), "cosine": cosine.mean().detach()}


class CatalogueSoftmax(TemperatureLoss):
    """One-way softmax from each anchor over its positive, the batch's other positives, and tracks drawn uniformly
    from the catalogue: the task content KNN is scored on (rank a listener's next track among all tracks).

    In-batch negatives alone are other listeners' positives, drawn by popularity; with weak positives (a listener's
    taste only loosely predicts their next track) contrasting against them mostly teaches the batch apart: stage 2
    with them did not beat its control on the built-in corpus (README). Uniform catalogue draws make the softmax a
    sampled estimate of the full-catalogue one. A drawn track equal to a row's own positive is masked (it is not a
    negative). Under DDP everything is gathered as in `InfoNCE`, with the same gradient scaling.

    Against the full catalogue the softmax models p(track | listener), popularity included, and a content model
    can only learn popularity by memorising tracks, which does not carry to new ones. A bias of alpha * log
    popularity on every candidate's logit takes that share off the embeddings: alpha = 1 leaves them the pointwise
    mutual information (what popularity-drawn in-batch negatives teach), 0 leaves popularity in.
    """

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                positive_ids: torch.Tensor, negative_ids: torch.Tensor, weights: torch.Tensor | None = None,
                positive_bias: torch.Tensor | None = None, negative_bias: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """`*_bias`: a fixed term added to each candidate's logit (its column), e.g. alpha * log popularity."""
        anchors, positives, negatives = (F.normalize(x, dim=-1) for x in (anchors, positives, negatives))
        if weights is None:
            weights = torch.ones(len(anchors), device=anchors.device)
        if positive_bias is None:
            positive_bias = torch.zeros(len(positives), device=anchors.device)
        if negative_bias is None:
            negative_bias = torch.zeros(len(negatives), device=anchors.device)
        all_anchors, _ = gather_across_ranks(anchors)
        all_positives, _ = gather_across_ranks(positives)
        all_negatives, _ = gather_across_ranks(negatives)
        all_weights, _ = gather_across_ranks(weights.to(anchors.dtype))
        all_positive_ids, _ = gather_across_ranks(positive_ids.to(anchors.device))
        all_negative_ids, _ = gather_across_ranks(negative_ids.to(anchors.device))
        all_positive_bias, _ = gather_across_ranks(positive_bias.to(anchors.device, anchors.dtype))
        all_negative_bias, _ = gather_across_ranks(negative_bias.to(anchors.device, anchors.dtype))
        ranks = world_size()
        temperature = self.rank_temperature(ranks)
        drawn = all_anchors @ all_negatives.T / temperature + all_negative_bias[None, :]
        drawn = drawn.masked_fill(all_positive_ids[:, None] == all_negative_ids[None, :], float("-inf"))
        logits = torch.cat([all_anchors @ all_positives.T / temperature + all_positive_bias[None, :], drawn], dim=1)
        targets = torch.arange(len(logits), device=logits.device)
        per_row = F.cross_entropy(logits, targets, reduction="none")
        loss = self.rank_loss((all_weights * per_row).sum() / all_weights.sum().clamp_min(1e-12), ranks)
        accuracy = strict_accuracy(logits)
        return {"loss": loss, "temperature": temperature.detach(), "accuracy": accuracy}


class ListenerSoftmax(TemperatureLoss):
    """Each listener's held-out tracks ranked among the whole catalogue, the listener being the mean of their
    profile tracks' unit vectors: a softmax over every candidate of cosine / temperature + popularity weight x
    log(1 + train plays), the listener's profile tracks excluded (an evaluation excludes seen items). The loss is
    the mean over a listener's held-out tracks of their negative log-probability, averaged over listeners (each
    weighs the same, as in the evaluation).

    Why a learned popularity weight: ranking the whole catalogue rewards popular tracks, and a content embedding
    can only follow that by memorising which tracks are popular, which carries nothing to a new track and which a
    one-parameter popularity term gives every recommender anyway. With the weight learned beside the embeddings
    (initialised at `popularity_weight`, 1 being the log-prior of pointwise mutual information), popularity is
    explained by that term and the embeddings are left what it cannot explain. `learn_popularity=False` keeps it
    fixed.

    Under DDP every rank embeds the whole catalogue (the same draws) and scores its own listeners; DDP's averaging
    of gradients then gives the gradient of the mean over all listeners, so nothing is gathered.
    """

    def __init__(self, popularity_weight: float = 1.0, learn_popularity: bool = True, **options: float) -> None:
        super().__init__(**options)
        self.popularity_weight = nn.Parameter(torch.tensor(float(popularity_weight)),
                                              requires_grad=learn_popularity)

    def forward(self, catalogue: torch.Tensor, profile_rows: torch.Tensor, profile_owner: torch.Tensor,
                positive_rows: torch.Tensor, positive_owner: torch.Tensor, listeners: int,
                log_popularity: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`catalogue`: (candidates, dim) embeddings; `*_rows`: candidate rows of each listener's profile and
        held-out tracks, `*_owner` the listener (0..listeners-1) of each; `log_popularity`: (candidates,)."""
        items = F.normalize(catalogue, dim=-1)
        profiles = torch.zeros(listeners, items.shape[1], device=items.device, dtype=items.dtype)
        profiles = F.normalize(profiles.index_add(0, profile_owner, items[profile_rows]), dim=-1)
        temperature = self.temperature
        logits = profiles @ items.T / temperature + self.popularity_weight * log_popularity[None, :]
        seen = torch.zeros_like(logits, dtype=torch.bool)
        seen[profile_owner, profile_rows] = True
        log_probs = logits.masked_fill(seen, float("-inf")).log_softmax(dim=1)
        per_track = -log_probs[positive_owner, positive_rows]
        counts = torch.bincount(positive_owner, minlength=listeners).clamp_min(1).to(items.dtype)
        per_listener = torch.zeros(listeners, device=items.device, dtype=items.dtype)
        per_listener = per_listener.index_add(0, positive_owner, per_track) / counts
        if weights is None:
            weights = torch.ones(listeners, device=items.device, dtype=items.dtype)
        has_positive = torch.bincount(positive_owner, minlength=listeners) > 0
        weights = weights.to(items.dtype) * has_positive
        loss = (weights * per_listener).sum() / weights.sum().clamp_min(1e-12)
        with torch.no_grad():  # share of held-out tracks ranked in the listener's top 50 (excluding the profile)
            top = log_probs.topk(min(50, log_probs.shape[1]), dim=1).indices
            hit = (top[positive_owner] == positive_rows[:, None]).any(dim=1).float().mean()
        return {"loss": loss, "temperature": temperature.detach(),
                "popularity_weight": self.popularity_weight.detach(), "recall@50": hit}

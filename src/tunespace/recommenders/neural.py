"""What the trained recommenders (Shallow Net, BERT4Rec) share: a seeded loop with Adam, learning-rate decay on
plateaus, early stopping on validation NDCG@K by full ranking, per-epoch logs and callbacks, and saving the
network's weights.

Selection follows the metric the study reports (NDCG@50 over the whole catalogue, seen items removed) rather than
a loss: a sampled validation loss need not move with the ranking. The learning rate is cut on plateaus of that
same validation metric. Without validation pairs a model trains for its full `epochs` at a constant learning rate
and keeps the last weights (a plateau of the noisy training loss is no reason to slow down).

After `fit`, `epochs_run` is the number of epochs trained (early stopping may end before the `epochs` cap) and
`best_epoch` the epoch whose weights were kept: the best validation epoch, or the last one without validation.
Reports list both beside each trained row.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from tunespace.data.interactions import InteractionMatrix
from tunespace.errors import ModelConfigError
from tunespace.recommenders.base import Recommender

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; logged, and passed to the model's `on_epoch` callback (progress bars, curves)."""

    model: str
    epoch: int  # counted from 1
    epochs: int  # the most that will run
    losses: dict[str, float]  # each named loss term, averaged over the epoch's batches
    validation_ndcg: float | None  # None when training without validation pairs
    best_epoch: int | None
    learning_rate: float
    seconds: float


EpochCallback = Callable[[EpochReport], None]


def residual_options(model: str, residual_dropout: float, options: dict) -> dict:
    """The options of a content model with a free item residual (`shallow-hybrid`, `bert4rec-hybrid`); a saved
    model's params already name `residual`."""
    if not 0.0 <= residual_dropout < 1.0:
        raise ModelConfigError(f"{model}: residual_dropout must lie in [0, 1), got {residual_dropout}")
    return {**options, "residual": True, "residual_dropout": float(residual_dropout)}


def residual_keep(n_items: int, drop: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Which items keep their residual in one training batch, as inverted-dropout weights (0 or 1 / (1 - drop)):
    drawn per item, not per entry, so a dropped item is scored from its content alone, as a new item is."""
    keep = torch.rand(n_items, generator=generator, device=device) >= drop
    return keep.float() / (1.0 - drop)


class EarlyStopping:
    """Remembers the weights of the epoch with the highest validation score and says when `patience` epochs in
    a row have not beaten it. A tie keeps the earlier epoch."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = float("-inf")
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self._stale = 0

    def update(self, epoch: int, value: float, module: nn.Module) -> bool:
        """Record `value` for `epoch` (keeping a copy of `module`'s weights if best); True means stop."""
        if value > self.best:
            self.best, self.best_epoch, self._stale = value, epoch, 0
            self.best_state = {key: tensor.detach().clone() for key, tensor in module.state_dict().items()}
        else:
            self._stale += 1
        return self._stale >= self.patience


class NeuralRecommender(Recommender):
    """A recommender trained by gradient descent. Subclasses build `net` and their training data in `_build`,
    yield per-batch loss terms in `_epoch_losses`, and in `_refresh` turn the network into the user and item
    vectors that `_score` ranks by (user x item dot product plus a per-item offset)."""

    uses_validation = True

    def __init__(self, *, batch_size: int, epochs: int, patience: int, lr: float, plateau_patience: int,
                 plateau_factor: float, validation_k: int, seed: int, on_epoch: EpochCallback | None = None,
                 **options):
        super().__init__(batch_size=batch_size, epochs=epochs, patience=patience, lr=lr,
                         plateau_patience=plateau_patience, plateau_factor=plateau_factor,
                         validation_k=validation_k, seed=seed, **options)
        for option, value in (("batch_size", batch_size), ("patience", patience), ("validation_k", validation_k)):
            if value < 1:
                raise ModelConfigError(f"{self.name}: {option} must be at least 1, got {value}")
        if epochs < 0:
            raise ModelConfigError(f"{self.name}: epochs must be at least 0, got {epochs}")
        self.on_epoch = on_epoch
        self.net: nn.Module | None = None
        self._user_vectors: torch.Tensor | None = None
        self._item_vectors: torch.Tensor | None = None
        self._item_offset: torch.Tensor | None = None  # added to every user's scores; -inf never recommends
        self.epochs_run: int | None = None  # set by fit: epochs trained
        self.best_epoch: int | None = None  # set by fit: the epoch whose weights were kept

    # -- what a trained model implements ------------------------------------------------------------------------
    @abstractmethod
    def _build(self, train: InteractionMatrix) -> None:
        """Create `self.net` on the device (initialised from the seeded global generator) and the training data."""

    @abstractmethod
    def _epoch_losses(self, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Yield the named loss terms of each batch of one epoch; the loop backpropagates "loss" and steps."""

    @abstractmethod
    def _refresh(self, users: np.ndarray | None = None) -> None:
        """Recompute the scoring vectors of `users` (all when None) and of every item, in eval mode."""

    @abstractmethod
    def _extra_state(self) -> dict[str, np.ndarray]:
        """Arrays besides the network weights that scoring needs after `load`."""

    @abstractmethod
    def _rebuild(self, state: dict[str, np.ndarray]) -> nn.Module:
        """A network shaped like the saved one (weights are loaded afterwards); restores the extra arrays."""

    # -- training -----------------------------------------------------------------------------------------------
    def _fit(self, train: InteractionMatrix, validation: pd.DataFrame | None = None) -> None:  # type: ignore[override]
        seed = int(self.params["seed"])
        if validation is not None and validation.empty:
            logger.warning("%s: no validation pairs; training all %d epochs", self.name, self.params["epochs"])
            validation = None
        devices = []
        if self.device.type == "cuda":
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):  # seeded, without disturbing the caller's generators
            torch.manual_seed(seed)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            self._build(train)
            self._train(train, validation, generator)
        self._refresh()

    def _train(self, train: InteractionMatrix, validation: pd.DataFrame | None, generator: torch.Generator) -> None:
        net = self.net
        assert net is not None
        params = self.params
        optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=params["lr"])
        scheduler = None if validation is None else torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=params["plateau_factor"], patience=params["plateau_patience"])
        stopper = None if validation is None else EarlyStopping(params["patience"])
        validation_users = None if validation is None else np.unique(train.users.index_of(validation["user_id"]))
        self.epochs_run = 0
        for epoch in range(1, params["epochs"] + 1):
            self.epochs_run = epoch
            started = time.perf_counter()
            net.train()
            losses = self._run_epoch(optimizer, generator)
            ndcg, stop = None, False
            if stopper is not None and scheduler is not None:
                self._refresh(validation_users)
                ndcg = self._validation_ndcg(validation)
                scheduler.step(ndcg)
                stop = stopper.update(epoch, ndcg, net)
            report = EpochReport(self.name, epoch, params["epochs"], losses, ndcg,
                                 None if stopper is None else stopper.best_epoch,
                                 optimizer.param_groups[0]["lr"], time.perf_counter() - started)
            self._log(report)
            if self.on_epoch is not None:
                self.on_epoch(report)
            if stop:
                logger.info("%s: no better validation NDCG@%d for %d epochs; keeping epoch %s", self.name,
                            params["validation_k"], params["patience"], stopper.best_epoch)
                break
        if stopper is not None and stopper.best_state is not None:
            net.load_state_dict(stopper.best_state)
        self.best_epoch = stopper.best_epoch if stopper is not None and stopper.best_epoch is not None else (
            self.epochs_run or None)

    def _run_epoch(self, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict[str, float]:
        totals: dict[str, torch.Tensor] = {}
        batches = 0
        for terms in self._epoch_losses(generator):
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + value.detach()
            batches += 1
        return {key: float(value) / batches for key, value in totals.items()}  # empty when no batch ran

    def _validation_ndcg(self, validation: pd.DataFrame) -> float:
        """Mean NDCG@K of the validation users by the same full ranking as the final evaluation."""
        from tunespace.evaluation.evaluate import evaluate  # evaluation imports the recommenders package

        k = int(self.params["validation_k"])
        return float(evaluate(self, validation, ks=(k,)).per_user[f"ndcg@{k}"].mean())

    def _log(self, report: EpochReport) -> None:
        losses = ", ".join(f"{key} {value:.4f}" for key, value in report.losses.items())
        validation = "" if report.validation_ndcg is None else (
            f", validation NDCG@{self.params['validation_k']} {report.validation_ndcg:.4f} "
            f"(best epoch {report.best_epoch})")
        logger.info("%s epoch %d/%d: %s%s, lr %.2g, %.1fs", self.name, report.epoch, report.epochs, losses,
                    validation, report.learning_rate, report.seconds)

    # -- scoring and persistence ----------------------------------------------------------------------------------
    def _score(self, users: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        assert self._user_vectors is not None and self._item_vectors is not None
        scores = torch.matmul(self._user_vectors[users], self._item_vectors[start:stop].T, out=out)
        if self._item_offset is not None:
            scores += self._item_offset[start:stop]
        return scores

    def _state(self) -> dict[str, np.ndarray]:
        assert self.net is not None
        state = {f"net.{key}": value.detach().cpu().numpy() for key, value in self.net.state_dict().items()}
        state.update(self._extra_state())
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.net = self._rebuild(state).to(self.device)
        self.net.load_state_dict({key[len("net."):]: torch.from_numpy(value) for key, value in state.items()
                                  if key.startswith("net.")})
        self._refresh()

"""One flat training loop for every stage: step, log, checkpoint, resume, guard against NaN, run under DDP.

Determinism and resume: the objective draws each step's batch from a generator seeded by (seed, step), so the
data of step s never depends on what ran before; the checkpoint holds the model, optimizer, scheduler, step and
torch RNG state (dropout). A run killed after a checkpoint and resumed therefore ends with the same weights as an
uninterrupted run on CPU. Checkpoints are written atomically (temporary file, then rename).

Across processes and machines: `batch_size` is the GLOBAL batch. Every rank draws the whole batch of step s from
(seed, s) and keeps its equal slice (`per_rank_batch`), and the losses gather all slices, so the sample stream, the
step count and the update do not depend on the number of processes. Only rank 0 writes the checkpoint; every rank
reads it on resume, so the run folder must be one path that every node reads (a shared filesystem), and a resume on
another number of processes continues the same stream at the same step with the same global batch. What changes
with the world size is listed in docs/scaling.md (dropout masks, float summation order).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tunespace.devices import resolve_device
from tunespace.errors import TunespaceError
from tunespace.io import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT = "last.pt"


class TrainingDivergedError(TunespaceError):
    """Too many consecutive steps gave a non-finite loss or gradient."""


class DistributedRunError(TunespaceError, ValueError):
    """The processes of a run cannot train together as asked (uneven batch split, a checkpoint some cannot read)."""


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64  # global batch: under DDP each of the ranks takes an equal slice
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    log_every: int = 10
    checkpoint_every: int = 100
    seed: int = 0
    max_bad_steps: int = 10  # consecutive non-finite steps before giving up
    threads: int = 0  # torch intra-op threads per process (0: leave torch's default)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError("steps >= 1, batch_size >= 2 and lr > 0 are required")


@dataclass
class TrainReport:
    steps_run: int = 0
    resumed_from: int = 0
    skipped_steps: int = 0
    seconds: float = 0.0
    examples: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """Rows of each rank's slice of the global batch; refuses a batch that does not split evenly, which would
    silently drop the remainder rows (and make the run differ from one with another number of processes)."""
    if global_batch % world_size:
        lower, upper = global_batch - global_batch % world_size, global_batch + world_size - global_batch % world_size
        raise DistributedRunError(f"train.batch_size={global_batch} (the global batch) does not split evenly over "
                                  f"{world_size} processes; use a multiple of {world_size}, e.g. {lower or upper} or "
                                  f"{upper}")
    return global_batch // world_size


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA); a 1-process context else."""
    wanted = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistributedContext(device=wanted)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if wanted.type == "cuda":
        torch.cuda.set_device(local)
        wanted = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world, device=wanted)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without frozen pretrained parts the model names in `checkpoint_excludes` (prefixes): a
    frozen text backbone is reloaded from its own files rather than copied into every checkpoint."""
    excluded = tuple(getattr(model, "checkpoint_excludes", ()))
    return {k: v for k, v in model.state_dict().items() if not (excluded and k.startswith(excluded))}


def train_loop(model: nn.Module, make_batch: Callable[[int], Any], config: TrainConfig, run_dir: str | Path,
               context: DistributedContext | None = None, resume: bool = False,
               progress: Callable[[int, dict[str, float]], None] | None = None,
               stop_after: int | None = None) -> TrainReport:
    """Optimise `model`, whose forward takes `make_batch(step)` (this rank's slice of the step's batch) and returns
    a dict of named loss terms with the total under "loss". One forward per step, through the DDP wrapper.

    `stop_after` ends the run early after that many steps of this call (tests use it to simulate a kill).
    """
    context = context or DistributedContext()
    per_rank_batch(config.batch_size, context.world_size)
    run_dir = Path(run_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, config.warmup_steps, config.steps)
    wrapped: nn.Module = model
    if context.world_size > 1:
        if any(p.is_cuda for p in parameters):  # batch statistics over the global batch (SyncBatchNorm is GPU-only)
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        wrapped = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    report = TrainReport()
    start = 0
    saved_batch = config.batch_size
    checkpoint_path = run_dir / CHECKPOINT
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        saved_batch = int(state.get("train_config", {}).get("batch_size", config.batch_size))
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = report.resumed_from = int(state["step"])
        report.history = list(state.get("history", []))
        saved_world = int(state.get("world_size", 1))
        logger.info("resumed from step %d of %s (written by %d process(es), now %d)", start, checkpoint_path,
                    saved_world, context.world_size)
    if context.world_size > 1:  # before any check one rank alone could fail, so no rank waits for a failed one
        _check_same_start(start, context, checkpoint_path)
    if start and saved_batch != config.batch_size:
        raise DistributedRunError(f"{checkpoint_path}: written with a global batch of {saved_batch}, resumed with "
                                  f"{config.batch_size}; keep train.batch_size (the global batch) and change only the "
                                  "number of processes")
    bad_in_a_row = 0
    started = time.perf_counter()
    wrapped.train()
    step = start
    while step < config.steps:
        terms = wrapped(make_batch(step))
        loss = terms["loss"]
        optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss.detach()))
        if finite:
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            finite = bool(torch.isfinite(norm))
        if finite:
            optimizer.step()
            bad_in_a_row = 0
        else:
            report.skipped_steps += 1
            bad_in_a_row += 1
            logger.warning("step %d: non-finite loss or gradient, update skipped", step)
            if bad_in_a_row >= config.max_bad_steps:
                raise TrainingDivergedError(f"{bad_in_a_row} consecutive non-finite steps (last at step {step})")
        scheduler.step()
        step += 1
        report.steps_run += 1
        report.examples += config.batch_size
        values = {k: float(v.detach()) for k, v in terms.items() if v.numel() == 1}
        if step % config.log_every == 0 or step == config.steps:
            entry = {"step": step, "lr": scheduler.get_last_lr()[0], **values}
            report.history.append(entry)
            if context.is_main:
                logger.info("step %d %s", step, json.dumps({k: round(v, 5) for k, v in entry.items()}))
        if progress is not None and context.is_main:
            progress(step, values)
        if context.is_main and (step % config.checkpoint_every == 0 or step == config.steps):
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, step, report.history, config,
                            context.world_size)
        if stop_after is not None and report.steps_run >= stop_after:
            break
    report.seconds = time.perf_counter() - started
    if context.world_size > 1:
        dist.barrier()
    return report


def _check_same_start(start: int, context: DistributedContext, checkpoint_path: Path) -> None:
    """Refuse to train when the ranks start from different steps: a node that cannot see the checkpoint (a run folder
    on a local disk instead of a shared one) would start from scratch while the others resume."""
    steps = [torch.zeros(1, dtype=torch.long, device=context.device) for _ in range(context.world_size)]
    dist.all_gather(steps, torch.tensor([start], dtype=torch.long, device=context.device))
    found = [int(s) for s in steps]
    if len(set(found)) > 1:
        raise DistributedRunError(f"{checkpoint_path}: the ranks start from different steps ({found}, by rank); "
                                  "the run folder must be one shared path that every node reads")


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, step: int, history: list[dict[str, float]],
                    config: TrainConfig, world_size: int = 1) -> None:
    """Rank 0's state; `world_size` is recorded for the log of a resume (any number of processes may resume it)."""
    state: dict[str, Any] = {"model": trainable_state(model), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "step": step, "rng": torch.get_rng_state(),
                             "history": history, "train_config": asdict(config), "world_size": world_size}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)

"""The flat training loop: resume gives the same weights, NaN steps are skipped, DDP on 2 processes equals 1."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tunespace.contrastive.losses import InfoNCE
from tunespace.contrastive.train import (
    DistributedContext,
    TrainConfig,
    TrainingDivergedError,
    init_distributed,
    train_loop,
)

DATA = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)


class Toy(nn.Module):
    """Two linear towers and an InfoNCE between them; dropout makes the torch RNG state matter for resume."""

    def __init__(self, poison_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.left, self.right = nn.Linear(6, 4), nn.Linear(6, 4)
        self.drop = nn.Dropout(0.2)
        self.loss = InfoNCE(temperature=0.2)
        self.poison_at = poison_at

    def forward(self, batch: tuple[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        step, x = batch
        terms = self.loss(self.drop(self.left(x)), self.right(x + 0.1))
        if self.poison_at is not None and step >= self.poison_at:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def batches(context: DistributedContext, size: int = 8):
    def make(step: int) -> tuple[int, torch.Tensor]:
        rows = np.random.default_rng([0, step]).choice(len(DATA), size, replace=False)
        per_rank = size // context.world_size
        mine = rows[context.rank * per_rank:(context.rank + 1) * per_rank]
        return step, torch.from_numpy(DATA[mine])

    return make


def config(**changes) -> TrainConfig:
    values = dict(steps=12, batch_size=8, lr=0.05, warmup_steps=2, log_every=1, checkpoint_every=3)
    values.update(changes)
    return TrainConfig(**values)


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    context = DistributedContext()
    straight = Toy()
    train_loop(straight, batches(context), config(), tmp_path / "a")
    killed = Toy()
    report = train_loop(killed, batches(context), config(), tmp_path / "b", stop_after=7)
    assert report.steps_run == 7
    resumed = Toy()  # a fresh process: new model, state comes from the checkpoint of step 6
    report = train_loop(resumed, batches(context), config(), tmp_path / "b", resume=True)
    assert report.resumed_from == 6 and report.steps_run == 6
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert not list((tmp_path / "b").glob("*.tmp"))


def test_non_finite_steps_are_skipped_then_the_run_stops(tmp_path):
    model = Toy(poison_at=4)
    with pytest.raises(TrainingDivergedError, match="3 consecutive"):
        train_loop(model, batches(DistributedContext()), config(max_bad_steps=3), tmp_path)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _ddp_worker(rank: int, world: int, folder: str) -> None:
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    # a file rendezvous: a free port probed in the parent can be taken by another process before the workers bind it
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                         world_size=world)
    context = init_distributed("cpu")
    model = Toy()
    model.drop.p = 0.0  # dropout masks differ across ranks by design
    train_loop(model, batches(context), config(steps=5), folder, context)
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(folder, "ddp.pt"))
    torch.distributed.barrier()  # neither rank tears gloo down while the other may still use it
    torch.distributed.destroy_process_group()


def test_two_ddp_processes_take_the_same_steps_as_one(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single = Toy()
    single.drop.p = 0.0
    train_loop(single, batches(DistributedContext()), config(steps=5), tmp_path / "single")
    distributed = torch.load(tmp_path / "ddp.pt")
    for name, value in single.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-6, msg=name)

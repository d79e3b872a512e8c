"""The flat training loop: resume gives the same weights, NaN steps are skipped, DDP on 2 processes equals 1, and a
run resumes on another number of processes with the same global batch."""

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
    DistributedRunError,
    TrainConfig,
    TrainingDivergedError,
    init_distributed,
    per_rank_batch,
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


def _ddp_worker(rank: int, world: int, folder: str, steps: int = 5, stop_after: int | None = None,
                resume: bool = False, run: str = "") -> None:
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    # a file rendezvous: a free port probed in the parent can be taken by another process before the workers bind it
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                         world_size=world)
    context = init_distributed("cpu")
    model = Toy()
    model.drop.p = 0.0  # dropout masks differ across ranks by design
    run_dir = os.path.join(folder, run.format(rank=rank))
    try:
        train_loop(model, batches(context), config(steps=steps), run_dir, context, resume=resume,
                   stop_after=stop_after)
    except DistributedRunError as error:
        with open(os.path.join(folder, f"error-{rank}.txt"), "w") as handle:
            handle.write(str(error))
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


def test_a_run_resumes_on_another_number_of_processes_with_the_same_global_batch(tmp_path):
    """2 processes for 6 steps then 1 process to step 12, and 1 process then 2, both end where 12 steps of one
    process end: the same sample stream, step count and global batch, so (without dropout) the same weights."""
    straight = Toy()
    straight.drop.p = 0.0
    train_loop(straight, batches(DistributedContext()), config(), tmp_path / "straight")
    two_then_one = tmp_path / "two-then-one"
    two_then_one.mkdir()
    mp.spawn(_ddp_worker, args=(2, str(two_then_one), 12, 6, False, "run"), nprocs=2, join=True)
    state = torch.load(two_then_one / "run" / "last.pt", weights_only=False)
    assert (state["step"], state["world_size"], state["train_config"]["batch_size"]) == (6, 2, 8)
    resumed = Toy()
    resumed.drop.p = 0.0
    report = train_loop(resumed, batches(DistributedContext()), config(), two_then_one / "run", resume=True)
    assert (report.resumed_from, report.steps_run) == (6, 6)
    one_then_two = tmp_path / "one-then-two"
    first = Toy()
    first.drop.p = 0.0
    train_loop(first, batches(DistributedContext()), config(), one_then_two / "run", stop_after=6)
    mp.spawn(_ddp_worker, args=(2, str(one_then_two), 12, None, True, "run"), nprocs=2, join=True)
    for other in (resumed.state_dict(), torch.load(one_then_two / "ddp.pt")):
        for name, value in straight.state_dict().items():
            torch.testing.assert_close(other[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_a_rank_that_cannot_read_the_checkpoint_stops_every_rank(tmp_path):
    train_loop(Toy(), batches(DistributedContext()), config(), tmp_path / "node-0", stop_after=3)
    # rank 1's run folder is not rank 0's: a run folder on each node's local disk instead of a shared path
    mp.spawn(_ddp_worker, args=(2, str(tmp_path), 12, None, True, "node-{rank}"), nprocs=2, join=True)
    for rank in range(2):
        message = (tmp_path / f"error-{rank}.txt").read_text()
        assert "ranks start from different steps ([3, 0], by rank)" in message and "shared path" in message


def test_the_global_batch_must_split_evenly_and_stay_the_same_on_resume(tmp_path):
    assert per_rank_batch(12, 3) == 4
    with pytest.raises(DistributedRunError, match=r"batch_size=8 \(the global batch\) does not split evenly over 3 "
                                                  r"processes; use a multiple of 3, e.g. 6 or 9"):
        train_loop(Toy(), batches(DistributedContext()), config(), tmp_path, DistributedContext(world_size=3))
    train_loop(Toy(), batches(DistributedContext()), config(), tmp_path / "run", stop_after=3)
    with pytest.raises(DistributedRunError, match="global batch of 8, resumed with 4"):
        train_loop(Toy(), batches(DistributedContext(), size=4), config(batch_size=4), tmp_path / "run",
                   resume=True)

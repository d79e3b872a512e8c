"""InfoNCE, the catalogue softmax and the distillation anchor: hand-computed values, symmetry, weights, masking,
temperature clamp, DDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tunespace.contrastive.losses import AnchorDistillation, CatalogueSoftmax, InfoNCE


def reference_infonce(a: np.ndarray, b: np.ndarray, temperature: float) -> float:
    """Plain-Python symmetric InfoNCE on unit vectors."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    n = len(a)
    total = 0.0
    for i in range(n):
        row = [float(a[i] @ b[j]) / temperature for j in range(n)]
        col = [float(b[i] @ a[j]) / temperature for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


def test_two_pairs_by_hand():
    # orthogonal unit vectors, positives equal to anchors: logits diag 1/t, off-diagonal 0
    loss = InfoNCE(temperature=0.5)(torch.eye(2), torch.eye(2))
    expected = -2.0 + math.log(math.exp(2.0) + 1.0)
    assert loss["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert loss["accuracy"].item() == 1.0


def test_matches_a_plain_loop_and_is_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    module = InfoNCE(temperature=0.1)
    value = module(torch.tensor(a), torch.tensor(b))["loss"].item()
    assert value == pytest.approx(reference_infonce(a, b, 0.1), rel=1e-5)
    assert module(torch.tensor(b), torch.tensor(a))["loss"].item() == pytest.approx(value, rel=1e-6)


def test_weights_scale_pairs():
    rng = np.random.default_rng(1)
    a, b = torch.tensor(rng.normal(size=(4, 3))), torch.tensor(rng.normal(size=(4, 3)))
    module = InfoNCE(temperature=0.2)
    terms = module(a, b, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.2
    forward = F.cross_entropy(logits, torch.arange(4), reduction="none")[:2].mean()
    backward = F.cross_entropy(logits.T, torch.arange(4), reduction="none")[:2].mean()
    assert terms["loss"].item() == pytest.approx(((forward + backward) / 2).item(), rel=1e-6)


def test_temperature_is_learnable_and_clamped():
    module = InfoNCE(temperature=0.07, min_temperature=0.05)
    with torch.no_grad():
        module.log_temperature.fill_(math.log(1e-4))
    assert module.temperature.item() == pytest.approx(0.05)
    a = torch.randn(6, 4, requires_grad=True)
    module.log_temperature.data.fill_(math.log(0.07))
    module(a, torch.randn(6, 4))["loss"].backward()
    assert module.log_temperature.grad is not None and a.grad is not None


def test_distillation_is_zero_at_the_reference_and_grows_with_angle():
    anchor = AnchorDistillation()
    x = torch.randn(5, 8)
    assert anchor(x, x)["loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert anchor(x, -x)["loss"].item() == pytest.approx(2.0, abs=1e-6)


def test_catalogue_softmax_by_hand_masks_a_draw_that_is_the_rows_own_positive():
    # anchors e0, e1; positives e0 (track 7), e1 (track 8); drawn tracks 7 (= row 0's positive) and 9 (along e0)
    anchors, positives = torch.eye(3)[:2], torch.eye(3)[:2]
    negatives = torch.stack([torch.eye(3)[0], torch.eye(3)[0]])
    terms = CatalogueSoftmax(temperature=0.5)(anchors, positives, negatives, torch.tensor([7, 8]),
                                              torch.tensor([7, 9]))
    # row 0: logits [2, 0 | masked, 2]; row 1: [0, 2 | 0, 0]
    row0 = -2.0 + math.log(math.exp(2.0) + 1.0 + math.exp(2.0))
    row1 = -2.0 + math.log(1.0 + math.exp(2.0) + 1.0 + 1.0)
    assert terms["loss"].item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert terms["accuracy"].item() == pytest.approx(0.5)  # row 0 ties its positive with a true negative: a miss


def test_catalogue_softmax_matches_a_plain_loop_with_weights():
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.normal(size=(6, 4))
    positive_ids, negative_ids = np.array([0, 1, 2, 3, 4]), np.array([9, 2, 8, 8, 0, 7])
    weights = np.array([1.0, 0.5, 0.0, 2.0, 1.0])
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b, c)]
    total = 0.0
    for i in range(5):
        logits = [float(unit[0][i] @ unit[1][j]) / 0.2 for j in range(5)]
        logits += [float(unit[0][i] @ unit[2][j]) / 0.2 for j in range(6) if negative_ids[j] != positive_ids[i]]
        total += weights[i] * (-logits[i] + math.log(sum(math.exp(v) for v in logits)))
    terms = CatalogueSoftmax(temperature=0.2)(*(torch.tensor(x) for x in (a, b, c, positive_ids, negative_ids,
                                                                          weights)))
    assert terms["loss"].item() == pytest.approx(total / weights.sum(), rel=1e-6)


def _catalogue_worker(rank: int, world: int, rendezvous: str, inputs: dict, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    mine = {k: (v.chunk(world)[rank].clone().requires_grad_(v.is_floating_point())) for k, v in inputs.items()}
    terms = CatalogueSoftmax(temperature=0.1)(mine["anchors"], mine["positives"], mine["negatives"],
                                              mine["positive_ids"], mine["negative_ids"], mine["weights"])
    terms["loss"].backward()
    torch.save({"loss": terms["loss"].item(), **{k: mine[k].grad for k in ("anchors", "positives", "negatives")}},
               f"{out}.{rank}")
    dist.barrier()  # neither rank tears gloo down while the other may still use it
    dist.destroy_process_group()


def test_catalogue_softmax_under_ddp_has_the_whole_batch_loss_and_gradients(tmp_path):
    import torch.multiprocessing as mp

    generator = torch.Generator().manual_seed(5)
    inputs = {"anchors": torch.randn(6, 4, generator=generator), "positives": torch.randn(6, 4, generator=generator),
              "negatives": torch.randn(8, 4, generator=generator), "positive_ids": torch.arange(6),
              "negative_ids": torch.tensor([1, 9, 3, 9, 9, 5, 9, 0]), "weights": torch.rand(6, generator=generator)}
    mp.spawn(_catalogue_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", inputs, str(tmp_path / "rank")),
             nprocs=2, join=True)
    whole = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
    terms = CatalogueSoftmax(temperature=0.1)(whole["anchors"], whole["positives"], whole["negatives"],
                                              whole["positive_ids"], whole["negative_ids"], whole["weights"])
    terms["loss"].backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank.{rank}")
        assert got["loss"] == pytest.approx(terms["loss"].item(), rel=1e-6)
        for name in ("anchors", "positives", "negatives"):  # each rank: 2 x its rows' share (DDP then averages)
            torch.testing.assert_close(got[name], 2 * whole[name].grad.chunk(2)[rank], rtol=1e-5, atol=1e-7)


def test_catalogue_softmax_bias_shifts_each_candidates_logit():
    rng = np.random.default_rng(4)
    a, b, c = (torch.tensor(rng.normal(size=shape)) for shape in ((3, 4), (3, 4), (5, 4)))
    positive_ids, negative_ids = torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7, 1, 8])
    positive_bias, negative_bias = torch.tensor([0.3, -0.2, 1.0]), torch.tensor([0.0, 0.5, -1.0, 2.0, 0.1])
    terms = CatalogueSoftmax(temperature=0.2)(a, b, c, positive_ids, negative_ids, None, positive_bias.double(),
                                              negative_bias.double())
    unit = [F.normalize(x, dim=1) for x in (a, b, c)]
    logits = torch.cat([unit[0] @ unit[1].T / 0.2 + positive_bias, unit[0] @ unit[2].T / 0.2 + negative_bias], 1)
    logits[1, 3 + 3] = float("-inf")  # track 1 is row 1's positive
    expected = F.cross_entropy(logits, torch.arange(3))
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)

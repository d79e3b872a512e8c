"""M3's masked patch reconstruction: patch selection, corruption, the loss, and reloading its weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from tunespace.encoders.clamp import M3Config, infer_m3_config, save_clamp2
from tunespace.encoders.clamp_pretrain import (
    M3PretrainConfig,
    M3Pretraining,
    corrupt_patches,
    load_m3,
    select_patches,
    shuffle_inside,
)
from tunespace.symbolic.patches import BOS_ID, EOS_ID, MASK_ID, PAD_ID

TINY_M3 = M3Config(hidden=32, layers=1, heads=2, max_patches=12, patch_length=8, decoder_layers=1, dropout=0.0)


def pieces(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), TINY_M3.patch_length, dtype=torch.long)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        for patch in range(length):
            chars = 2 + patch % 4
            body = torch.randint(4, 40, (chars,), generator=generator)
            ids[row, patch, : chars + 2] = torch.cat([torch.tensor([BOS_ID]), body, torch.tensor([EOS_ID])])
        mask[row, :length] = 1
    return ids, mask


def test_selection_takes_the_ratio_of_real_patches_only():
    _, mask = pieces([10, 3, 1, 7])
    selected = select_patches(mask, 0.45, torch.Generator().manual_seed(0))
    assert selected.sum(dim=1).tolist() == [math.ceil(0.45 * n) for n in (10, 3, 1, 7)]
    assert not (selected & ~mask.bool()).any()


def test_shuffle_permutes_only_between_bos_and_eos():
    rows = torch.tensor([[BOS_ID, 10, 11, 12, 13, EOS_ID, PAD_ID, PAD_ID],
                         [BOS_ID, 20, 21, 22, 23, 24, 25, 26]])  # the second was cut before its eos
    shuffled = shuffle_inside(rows.repeat(20, 1), torch.Generator().manual_seed(0))
    assert (shuffled[0::2, [0, 5, 6, 7]] == rows[0, [0, 5, 6, 7]]).all()
    assert (shuffled[:, 0] == BOS_ID).all()
    assert (shuffled[0::2].sort(dim=1).values == rows[0].sort().values).all()
    assert (shuffled[1::2].sort(dim=1).values == rows[1].sort().values).all()
    assert not (shuffled[1::2] == rows[1]).all()


def test_corruption_masks_or_shuffles_selected_patches_and_keeps_the_rest():
    ids, mask = pieces([12, 9, 5])
    corrupted, selected = corrupt_patches(ids, mask, M3PretrainConfig(mask_prob=0.5, shuffle_prob=0.5),
                                          torch.Generator().manual_seed(1))
    assert (corrupted[~selected] == ids[~selected]).all()
    fully_masked = (corrupted == MASK_ID).all(dim=-1)
    assert fully_masked[selected].any() and not fully_masked[~selected].any()
    kept_characters = corrupted[selected & ~fully_masked].sort(dim=-1).values
    assert (kept_characters == ids[selected & ~fully_masked].sort(dim=-1).values).all()


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = M3Pretraining(TINY_M3)
    ids, mask = pieces([6, 4, 5])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        terms = model(ids, mask, torch.Generator().manual_seed(0))  # the same corruption every step
        assert set(terms) == {"loss", "char_accuracy", "selected_patches"}
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(float(terms["loss"].detach()))
    assert terms["selected_patches"] == sum(math.ceil(0.45 * n) for n in (6, 4, 5))
    assert losses[-1] < 0.8 * losses[0]


def test_m3_weights_reload(tmp_path: Path):
    torch.manual_seed(1)
    model = M3Pretraining(TINY_M3).eval()
    save_clamp2(model, tmp_path / "weights_m3_tiny.pth")
    inferred = infer_m3_config(model.state_dict(), prefix="encoder.")
    assert (inferred.hidden, inferred.layers, inferred.decoder_layers, inferred.patch_length) == (32, 1, 1, 8)
    loaded = load_m3(tmp_path, TINY_M3).eval()  # heads are not in the weights, and 32 wide is not CLaMP 2's rule
    ids, mask = pieces([4, 2])
    torch.testing.assert_close(loaded.encoder.pool(ids, mask), model.encoder.pool(ids, mask))

"""M3's self-supervised pretraining: masked patch reconstruction with a small character decoder.

A share of each piece's real patches is selected; most selected patches are replaced by mask characters, some
have their characters shuffled (between the patch's bos and eos), the rest stay as they are. The encoder reads
the corrupted piece, and a GPT-2 decoder rebuilds every selected patch's original characters one by one from
that patch's encoder output, which takes the place of its first (bos) character. The loss is the cross-entropy
of the characters, pads excluded.

M3 draws one corruption (mask / shuffle / keep) per piece; here each selected patch draws its own, BERT's way,
so every batch trains all three. Module names (`encoder`, `decoder.base`) are M3's, so its released checkpoint
loads with `load_m3`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tunespace.encoders.clamp import (
    ClampCheckpointError,
    M3Config,
    M3Encoder,
    checkpoint_file,
    infer_m3_config,
    load_matching_state,
    read_state_dict,
    require_transformers,
)
from tunespace.symbolic.patches import EOS_ID, MASK_ID, PAD_ID


@dataclass
class M3PretrainConfig:
    mask_ratio: float = 0.45  # share of a piece's real patches to reconstruct (M3's)
    mask_prob: float = 0.8  # of those, replaced by mask characters
    shuffle_prob: float = 0.1  # of those, characters shuffled; the rest are left as they are

    def __post_init__(self) -> None:
        if not 0 < self.mask_ratio <= 1:
            raise ValueError("mask_ratio must be in (0, 1]")
        if self.mask_prob < 0 or self.shuffle_prob < 0 or self.mask_prob + self.shuffle_prob > 1:
            raise ValueError("need mask_prob, shuffle_prob >= 0 with mask_prob + shuffle_prob <= 1")


def select_patches(mask: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, patches) bool: ceil(ratio x real patches) of each piece's real patches, drawn uniformly."""
    scores = torch.rand(mask.shape, generator=generator, device=mask.device)
    scores = scores.masked_fill(~mask.bool(), 2.0)  # padding ranks after every real patch
    ranks = scores.argsort(dim=1).argsort(dim=1)
    quota = torch.ceil(mask.sum(dim=1).float() * ratio).long()
    return (ranks < quota[:, None]) & mask.bool()


def shuffle_inside(ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rows of ids (n, patch_length) with the characters between position 0 (bos) and the first eos permuted at
    random; bos, eos and what follows stay in place (a row without eos is shuffled to its end)."""
    length = ids.shape[1]
    positions = torch.arange(length, device=ids.device).expand_as(ids)
    is_eos = ids == EOS_ID
    eos = torch.where(is_eos.any(dim=1), is_eos.float().argmax(dim=1), torch.full_like(ids[:, 0], length))
    inside = (positions >= 1) & (positions < eos[:, None])
    # inside positions get random keys in [1, eos), the others keep their index, so sorting by key permutes only
    # the inside and leaves position 0 first and eos onwards last, in order
    noise = torch.rand(ids.shape, generator=generator, device=ids.device)
    keys = torch.where(inside, 1 + noise * (eos[:, None] - 1).clamp_min(0), positions.float())
    return ids.gather(1, keys.argsort(dim=1))


def corrupt_patches(ids: torch.Tensor, mask: torch.Tensor, config: M3PretrainConfig,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted ids, selected) for ids (batch, patches, patch_length) and mask (batch, patches)."""
    selected = select_patches(mask, config.mask_ratio, generator)
    draw = torch.rand(mask.shape, generator=generator, device=mask.device)
    masked = selected & (draw < config.mask_prob)
    shuffled = selected & (draw >= config.mask_prob) & (draw < config.mask_prob + config.shuffle_prob)
    corrupted = ids.clone()
    corrupted[masked] = MASK_ID
    if shuffled.any():
        corrupted[shuffled] = shuffle_inside(ids[shuffled], generator)
    return corrupted, selected


class M3CharDecoder(nn.Module):
    """M3's token decoder: `base` is a GPT-2 language model over characters whose first input is a patch's
    feature instead of the embedding of its bos."""

    def __init__(self, config: M3Config) -> None:
        super().__init__()
        self.base = require_transformers().GPT2LMHeadModel(config.decoder_config())

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(n, patch_length, vocab) next-character logits for patch features (n, hidden) and the patches' ids
        (n, patch_length); position t predicts character t + 1. Causal attention keeps right padding out of the
        positions that are scored."""
        characters = self.base.transformer.wte(targets[:, 1:])
        inputs = torch.cat([features[:, None, :], characters], dim=1)
        return self.base(inputs_embeds=inputs).logits


class M3Pretraining(nn.Module):
    """The masked patch reconstruction loss around an M3 encoder, returning named terms; after pretraining,
    `encoder` is what CLaMP 2's `music_model` starts from."""

    def __init__(self, config: M3Config, pretrain: M3PretrainConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.pretrain = pretrain or M3PretrainConfig()
        self.encoder = M3Encoder(config)
        self.decoder = M3CharDecoder(config)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Terms for a batch of padded pieces: `loss` (character cross-entropy of the selected patches),
        `char_accuracy` and `selected_patches`. `generator` fixes the corruption."""
        corrupted, selected = corrupt_patches(ids, mask, self.pretrain, generator)
        total, scored, right = self.reconstruction(ids, corrupted, mask, selected)
        return {"loss": total / scored.clamp_min(1), "char_accuracy": right / scored.clamp_min(1),
                "selected_patches": selected.sum().to(total.dtype)}

    def reconstruction(self, ids: torch.Tensor, corrupted: torch.Tensor, mask: torch.Tensor,
                       selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(summed character cross-entropy, characters scored, characters right) of the `selected` patches rebuilt
        from the `corrupted` pieces: sums, so slices of one batch (DDP ranks) add up to the whole batch's mean."""
        features = self.encoder(corrupted, mask)[selected]
        targets = ids[selected]
        logits = self.decoder(features, targets)[:, :-1]
        labels = targets[:, 1:].masked_fill(targets[:, 1:] == PAD_ID, -100)
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                reduction="sum")
        with torch.no_grad():
            scored = labels != -100
            right = (logits.argmax(dim=-1) == labels)[scored].sum().to(total.dtype)
        return total, scored.sum().to(total.dtype), right


def load_m3(path: str | Path, config: M3Config | None = None,
            pretrain: M3PretrainConfig | None = None) -> M3Pretraining:
    """M3 weights (a file, or the one `*m3*.pth` in a folder) saved as M3's training script or `save_clamp2` saves
    them; sizes default to what the weights show."""
    file = checkpoint_file(path, "*m3*.pth")
    state = read_state_dict(file)
    if "encoder.patch_embedding.weight" not in state:
        raise ClampCheckpointError(f"{file}: no encoder.patch_embedding.weight; not an M3 checkpoint")
    model = M3Pretraining(config or infer_m3_config(state, prefix="encoder."), pretrain)
    load_matching_state(model, state, file)
    return model


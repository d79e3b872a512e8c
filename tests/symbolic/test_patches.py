"""Patch ids as CLaMP 2's patchilizer makes them: BOS, characters, EOS, padding; framing; cuts counted."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tunespace.symbolic import PAD_ID, VOCAB_SIZE, PatchConfig, PatchConfigError, encode_patches, pad_batch
from tunespace.symbolic.patches import BOS_ID, EOS_ID, UNKNOWN_ID, char_id, patch_ids

BOS_PATCH = [BOS_ID] * 8
EOS_PATCH = [BOS_ID] + [EOS_ID] * 7


def test_known_ids_of_a_short_patch():
    ids, cut = patch_ids("[V:1]a|\n", 12)
    assert ids == [1, 91, 86, 58, 49, 93, 97, 124, 10, 2, 0, 0]
    assert cut == 0


def test_a_piece_is_framed_by_clamp2s_first_and_last_patches():
    result = encode_patches(["K:G\n", "ab|"], PatchConfig(patch_length=8, max_patches=10))
    assert result.ids.dtype == np.int64 and result.ids.shape == (4, 8)
    assert result.ids.tolist() == [BOS_PATCH, [1, 75, 58, 71, 10, 2, 0, 0], [1, 97, 98, 124, 2, 0, 0, 0], EOS_PATCH]
    assert not result.truncated
    plain = encode_patches(["ab|"], PatchConfig(patch_length=8, max_patches=10, special_patches=False))
    assert plain.ids.tolist() == [[1, 97, 98, 124, 2, 0, 0, 0]]


def test_long_patches_lose_eos_first_then_characters_and_are_counted():
    config = PatchConfig(patch_length=6, max_patches=10, special_patches=False)
    exact = encode_patches(["abcd"], config)  # BOS + 4 + EOS fills the patch
    assert exact.ids.tolist() == [[1, 97, 98, 99, 100, 2]] and not exact.truncated
    no_eos = encode_patches(["abcde"], config)
    assert no_eos.ids.tolist() == [[1, 97, 98, 99, 100, 101]] and no_eos.chars_cut == 0
    cut = encode_patches(["abcdefgh", "ab", "abcdefg"], config)
    assert cut.ids[0].tolist() == [1, 97, 98, 99, 100, 101]
    assert (cut.chars_cut, cut.patches_clipped, cut.patches_cut) == (3 + 2, 2, 0)
    assert cut.truncated


def test_long_pieces_keep_their_head_and_count_the_patches_cut():
    patches = [f"{i}|" for i in range(10)]
    result = encode_patches(patches, PatchConfig(patch_length=8, max_patches=5))
    assert result.ids.shape == (5, 8)
    assert result.ids[1].tolist() == [1, ord("0"), ord("|"), 2, 0, 0, 0, 0]
    assert result.ids[3].tolist()[:3] == [1, ord("2"), ord("|")]
    assert result.ids[-1].tolist() == EOS_PATCH
    assert (result.patches_cut, result.chars_cut, result.truncated) == (7, 0, True)
    plain = encode_patches(patches, PatchConfig(patch_length=8, max_patches=5, special_patches=False))
    assert plain.patches_cut == 5 and plain.ids[-1].tolist()[:2] == [1, ord("4")]


def test_characters_outside_ascii_map_deterministically_inside_the_vocabulary():
    assert char_id("a") == 97 and char_id("\n") == 10 and char_id("\t") == 9
    assert char_id("é") == ord("e") and char_id("Ñ") == ord("N")
    assert char_id("中") == char_id("♯") == char_id("\x01") == char_id("\x00") == UNKNOWN_ID
    ids = encode_patches(["Café ♯ 中\x02"]).ids
    assert ids.min() >= 0 and ids.max() < VOCAB_SIZE


@pytest.mark.parametrize("kwargs", [{"patch_length": 2}, {"max_patches": 2}, {"patch_length": 64.0},
                                    {"max_patches": 0, "special_patches": False}])
def test_configs_that_cannot_encode_are_refused(kwargs):
    with pytest.raises(PatchConfigError):
        PatchConfig(**kwargs)


def test_pad_batch_pads_to_the_longest_piece_with_a_mask():
    first = encode_patches(["a|", "b|"], PatchConfig(patch_length=8)).ids
    second = encode_patches(["c|"], PatchConfig(patch_length=8)).ids
    ids, mask = pad_batch([first, second])
    assert ids.shape == (2, 4, 8) and mask.shape == (2, 4) and mask.dtype == np.int64
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert (ids[1, 3] == PAD_ID).all() and (ids[0] == first).all()
    wide, wide_mask = pad_batch([second], max_patches=6)
    assert wide.shape == (1, 6, 8) and wide_mask.sum() == 3


@pytest.mark.parametrize("pieces, kwargs", [
    ([], {}),
    ([np.zeros((2, 8), np.int64), np.zeros((2, 6), np.int64)], {}),
    ([np.zeros((5, 8), np.int64)], {"max_patches": 4}),
])
def test_pad_batch_refuses_what_it_cannot_stack(pieces, kwargs):
    with pytest.raises(PatchConfigError):
        pad_batch(pieces, **kwargs)


def test_the_package_imports_without_torch_or_mido():
    code = "import sys, tunespace.symbolic; assert not {'torch', 'mido'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True)

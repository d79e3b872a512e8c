"""Patches of characters as CLaMP 2's M3 encoder reads them: one row of character ids per patch (bar or message).

The ids follow CLaMP 2's ``M3Patchilizer``: a patch is ``[BOS_ID] + ids of its characters + [EOS_ID]``, cut to
``patch_length`` (a patch that is too long loses its end, EOS first) and right-padded with ``PAD_ID``. A
character's id is its code point (ASCII, 4 to 127); ``MASK_ID`` is reserved for masked-patch pretraining.
CLaMP 2 transliterates text to ASCII (unidecode) before this; here a character outside ASCII is decomposed
(NFKD: "é" -> "e" plus an accent, the accent dropped) and whatever still is not ASCII, and the control codes
0-3 that would collide with the special ids, become ``UNKNOWN_ID`` (127, DEL, which no text uses).

A piece is framed as CLaMP 2 frames it when ``special_patches`` is on: a first patch of ``BOS_ID`` only and a
last patch of ``BOS_ID`` then ``EOS_ID``. A piece with more than ``max_patches`` patches (specials included) keeps
its first ``max_patches``: the header and the first bars, which is CLaMP 2's choice at evaluation (its training
also cuts the tail or the middle at random, and its feature extraction averages over windows instead).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunespace.errors import TunespaceError

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
MASK_ID = 3
UNKNOWN_ID = 127
VOCAB_SIZE = 128
"""Character ids are 0..127: the tower's one-hot (or embedding) width, as in CLaMP 2."""


class PatchConfigError(TunespaceError, ValueError):
    """Patch settings that cannot encode anything (a patch too short for BOS and EOS, no patches)."""


@dataclass(frozen=True)
class PatchConfig:
    """How pieces become id arrays: characters per patch (BOS and EOS included) and patches per piece.

    CLaMP 2 uses 64 and 512; ``special_patches`` adds its first and last framing patches.
    """

    patch_length: int = 64
    max_patches: int = 512
    special_patches: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.patch_length, int) or self.patch_length < 3:
            raise PatchConfigError(f"patch_length must be an integer of at least 3 (BOS, a character, EOS), "
                                   f"not {self.patch_length!r}")
        smallest = 3 if self.special_patches else 1
        if not isinstance(self.max_patches, int) or self.max_patches < smallest:
            raise PatchConfigError(f"max_patches must be an integer of at least {smallest}"
                                   f"{' (BOS patch, a patch, EOS patch)' if self.special_patches else ''}, "
                                   f"not {self.max_patches!r}")


@dataclass(frozen=True)
class PatchResult:
    """One piece's ids, shape ``[n_patches, patch_length]`` int64, and what was cut to fit the config.

    ``patches_cut``: patches dropped past ``max_patches``; ``chars_cut``: characters dropped from the ends of kept
    patches longer than ``patch_length - 1``; ``patches_clipped``: how many kept patches lost characters.
    """

    ids: np.ndarray
    patches_cut: int
    chars_cut: int
    patches_clipped: int

    @property
    def truncated(self) -> bool:
        """Whether anything of the piece is missing from `ids`."""
        return self.patches_cut > 0 or self.chars_cut > 0


@functools.lru_cache(maxsize=4096)
def char_id(char: str) -> int:
    """The id of one character: its ASCII code, its base letter's for accented letters, else ``UNKNOWN_ID``."""
    code = ord(char)
    if MASK_ID < code < VOCAB_SIZE:
        return code
    if code >= VOCAB_SIZE:
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if len(base) == 1 and MASK_ID < ord(base) < VOCAB_SIZE:
            return ord(base)
    return UNKNOWN_ID


def patch_ids(patch: str, patch_length: int) -> tuple[list[int], int]:
    """(ids of one patch, BOS and EOS included, cut to `patch_length` and padded; characters cut)."""
    ids = [BOS_ID, *(char_id(c) for c in patch), EOS_ID]
    cut = max(0, len(ids) - 1 - patch_length)  # the EOS goes first, then characters
    ids = ids[:patch_length]
    return ids + [PAD_ID] * (patch_length - len(ids)), cut


def encode_patches(patches: Sequence[str], config: PatchConfig = PatchConfig()) -> PatchResult:
    """A piece's patch strings as CLaMP 2's id array, cut to `config` and with the counts of what was cut."""
    length = config.patch_length
    rows: list[list[int]] = []
    if config.special_patches:
        rows.append([BOS_ID] * length)
    room = config.max_patches - len(rows) - (1 if config.special_patches else 0)
    kept = patches[:room]
    chars_cut = clipped = 0
    for patch in kept:
        ids, cut = patch_ids(patch, length)
        rows.append(ids)
        chars_cut += cut
        clipped += cut > 0
    if config.special_patches:
        rows.append([BOS_ID] + [EOS_ID] * (length - 1))
    return PatchResult(ids=np.asarray(rows, dtype=np.int64), patches_cut=len(patches) - len(kept),
                       chars_cut=chars_cut, patches_clipped=clipped)


def pad_batch(pieces: Sequence[np.ndarray], max_patches: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack pieces of different lengths: ids ``[B, P, L]`` padded with ``PAD_ID`` and a mask ``[B, P]``.

    ``P`` is the longest piece (or `max_patches`, which must hold them all); the mask is 1 for real patches and 0
    for padding, int64 as Hugging Face attention masks are.
    """
    if not pieces:
        raise PatchConfigError("pad_batch needs at least one piece")
    lengths = {piece.shape[1] for piece in pieces if piece.ndim == 2}
    if len(lengths) != 1 or any(piece.ndim != 2 for piece in pieces):
        raise PatchConfigError(f"pieces must be [patches, patch_length] arrays of one patch length, "
                               f"got shapes {sorted({piece.shape for piece in pieces})}")
    longest = max(len(piece) for piece in pieces)
    width = longest if max_patches is None else max_patches
    if width < longest:
        raise PatchConfigError(f"a piece has {longest} patches, more than max_patches={max_patches}")
    ids = np.full((len(pieces), width, lengths.pop()), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(pieces), width), dtype=np.int64)
    for row, piece in enumerate(pieces):
        ids[row, :len(piece)] = piece
        mask[row, :len(piece)] = 1
    return ids, mask

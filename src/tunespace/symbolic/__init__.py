"""Score formats for CLaMP 2's music encoder: ABC and MIDI (as MTF text) cut into patches of character ids.

``abc_patches`` and ``midi_patches`` turn a tune into patch strings (one per bar, one per MIDI message);
``encode_patches`` turns those into an int64 array ``[patches, patch_length]`` and ``pad_batch`` stacks pieces for
the tower. numpy only: this package imports without torch (MIDI needs mido, from the ``corpus`` extra).
"""

from tunespace.symbolic.abc import AbcError, abc_patches, interleaved_abc
from tunespace.symbolic.mtf import MidiReadError, MtfError, midi_patches, midi_to_mtf, mtf_to_midi
from tunespace.symbolic.patches import (
    MASK_ID,
    PAD_ID,
    VOCAB_SIZE,
    PatchConfig,
    PatchConfigError,
    PatchResult,
    encode_patches,
    pad_batch,
)

__all__ = [
    "MASK_ID",
    "PAD_ID",
    "VOCAB_SIZE",
    "AbcError",
    "MidiReadError",
    "MtfError",
    "PatchConfig",
    "PatchConfigError",
    "PatchResult",
    "abc_patches",
    "encode_patches",
    "interleaved_abc",
    "midi_patches",
    "midi_to_mtf",
    "mtf_to_midi",
    "pad_batch",
]

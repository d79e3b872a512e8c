"""The ABC and MIDI patches of every track of a tunespace corpus folder, and how many a patch config cuts.

A corpus folder (``tunespace corpus build``) has ``tracks.parquet`` with ``abc_path`` and ``midi_path`` relative
to the folder. Several tracks may share one score file; each file is read once. A file that cannot be read or
patched is recorded in ``failures`` with the reason, and its track is absent from that format's patches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.errors import DatasetNotFoundError, DataValidationError
from tunespace.symbolic.abc import AbcError, abc_patches
from tunespace.symbolic.mtf import MidiReadError, midi_patches
from tunespace.symbolic.patches import PatchConfig, encode_patches

logger = logging.getLogger(__name__)

FAILURE_COLUMNS = ("track_id", "format", "path", "reason")


@dataclass(frozen=True)
class CorpusPatches:
    """Patch strings per track id for each format, and the files that failed (:data:`FAILURE_COLUMNS`)."""

    abc: dict[str, list[str]]
    midi: dict[str, list[str]]
    failures: pd.DataFrame


def _patches(folder: Path, tracks: pd.DataFrame, column: str, fmt: str, pack_midi_to: int | None,
             failures: list[dict[str, str]]) -> dict[str, list[str]]:
    by_file: dict[str, list[str] | str] = {}  # relative path -> patches, or the reason it failed
    result: dict[str, list[str]] = {}
    for track_id, relative in zip(tracks["track_id"], tracks[column]):
        if not isinstance(relative, str) or not relative:
            failures.append({"track_id": track_id, "format": fmt, "path": "", "reason": f"no {column}"})
            continue
        if relative not in by_file:
            path = folder / relative
            try:
                if fmt == "abc":
                    by_file[relative] = abc_patches(path.read_text(encoding="utf-8"))
                else:
                    by_file[relative] = midi_patches(path, pack_to=pack_midi_to)
            except (OSError, UnicodeDecodeError, AbcError, MidiReadError) as error:
                by_file[relative] = f"{type(error).__name__}: {error}"
        found = by_file[relative]
        if isinstance(found, str):
            failures.append({"track_id": track_id, "format": fmt, "path": relative, "reason": found})
        else:
            result[track_id] = found
    return result


def read_corpus_patches(folder: str | Path, *, pack_midi_to: int | None = None,
                        formats: tuple[str, ...] = ("abc", "midi")) -> CorpusPatches:
    """Every track's ABC and MIDI patches (see :func:`tunespace.symbolic.midi_patches` for `pack_midi_to`); a
    format left out of `formats` is not read and stays empty."""
    folder = Path(folder)
    table = folder / "tracks.parquet"
    if not table.is_file():
        raise DatasetNotFoundError(f"{folder}: no tracks.parquet; is it a tunespace corpus folder?")
    tracks = pd.read_parquet(table)
    missing = [column for column in ("track_id", "abc_path", "midi_path") if column not in tracks.columns]
    if missing:
        raise DataValidationError(str(table), f"needs column(s) {', '.join(missing)}", column=missing[0])
    failures: list[dict[str, str]] = []
    abc = _patches(folder, tracks, "abc_path", "abc", pack_midi_to, failures) if "abc" in formats else {}
    midi = _patches(folder, tracks, "midi_path", "midi", pack_midi_to, failures) if "midi" in formats else {}
    logger.info("%s: %d tracks, ABC patches for %d, MIDI patches for %d, %d failures", folder, len(tracks),
                len(abc), len(midi), len(failures))
    return CorpusPatches(abc=abc, midi=midi, failures=pd.DataFrame(failures, columns=list(FAILURE_COLUMNS)))


def patch_statistics(pieces: Mapping[str, list[str]], config: PatchConfig | None = None) -> dict[str, float]:
    """Patches per piece (median, 95th percentile, max; specials not counted) and what `config` (CLaMP 2's
    64 x 512 by default) cuts.

    ``cut_share``: pieces that lose patches at ``max_patches``; ``clipped_piece_share``: pieces with a patch that
    loses characters at ``patch_length``; ``clipped_patch_share``: such patches among all kept patches;
    ``chars_per_patch_p95``: the 95th percentile of characters per patch (the length a patch needs, +2).
    """
    if not pieces:
        raise DataValidationError("patch_statistics", "no pieces to measure")
    counts = np.array([len(patches) for patches in pieces.values()])
    chars = np.array([len(patch) for patches in pieces.values() for patch in patches])
    results = [encode_patches(patches, config or PatchConfig()) for patches in pieces.values()]
    kept = sum(len(result.ids) for result in results)
    return {
        "pieces": float(len(counts)),
        "patches_median": float(np.median(counts)),
        "patches_p95": float(np.percentile(counts, 95)),
        "patches_max": float(counts.max()),
        "cut_share": float(np.mean([result.patches_cut > 0 for result in results])),
        "clipped_piece_share": float(np.mean([result.patches_clipped > 0 for result in results])),
        "clipped_patch_share": float(sum(result.patches_clipped for result in results) / kept),
        "chars_per_patch_p95": float(np.percentile(chars, 95)) if len(chars) else 0.0,
    }

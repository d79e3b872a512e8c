"""Item embeddings: one float32 vector per track id, the file format every content model reads.

Stored as Parquet with a `track_id` string column and an `embedding` fixed-size list column, so that a user can
produce the file with any tool and tunespace can read it zero-copy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tunespace.data.catalog import IdMap
from tunespace.errors import DataValidationError, IncompleteExtractionError, UnknownIdError
from tunespace.io import atomic_path

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"  # what `tunespace embed` writes first (tunespace.encoders.extract.MANIFEST)


@dataclass
class ItemEmbeddings:
    ids: np.ndarray  # (n,) track ids as str
    vectors: np.ndarray  # (n, d) float32

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=object).astype(str).astype(object)
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.ids):
            raise DataValidationError("embeddings", f"expected ({len(self.ids)}, d) vectors, got "
                                      f"{self.vectors.shape}")
        bad = ~np.isfinite(self.vectors).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataValidationError("embeddings", f"non-finite value in the vector of track "
                                      f"{self.ids[row]!r}", row + 1, "embedding")
        if len(pd.unique(self.ids)) != len(self.ids):
            dup = pd.Series(self.ids)[pd.Series(self.ids).duplicated()].iloc[0]
            raise DataValidationError("embeddings", f"duplicate track_id {dup!r}", column="track_id")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def aligned(self, items: IdMap, missing: str = "raise") -> np.ndarray:
        """Vectors in the order of `items`; a track without a vector raises, or gets zeros with missing='zero'."""
        position = pd.Index(self.ids).get_indexer(pd.Index(items.ids))
        absent = position < 0
        if absent.any() and missing == "raise":
            first = items.ids[int(np.flatnonzero(absent)[0])]
            raise UnknownIdError(f"{int(absent.sum())} of {len(items)} tracks have no embedding "
                                 f"(first: {first!r})")
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        out[~absent] = self.vectors[position[~absent]]
        return out

    def save(self, path: str | Path) -> None:
        flat = pa.array(self.vectors.reshape(-1), type=pa.float32())
        table = pa.table({
            "track_id": pa.array(self.ids.astype(str), type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, self.dim),
        })
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def load(cls, path: str | Path, allow_partial: bool = False) -> ItemEmbeddings:
        """Read one Parquet file, or a folder of `shard-*.parquet` files as `tunespace embed` writes them.

        A folder whose manifest promises shards that are absent is an unfinished extraction: refused, so a
        model never trains on part of the catalogue unnoticed, unless `allow_partial` (then a warning)."""
        path = Path(path)
        try:
            if path.is_dir():
                shards = sorted(p for p in path.glob("shard-*.parquet") if not p.name.endswith(".skipped.parquet"))
                if not shards:
                    raise DataValidationError(str(path), "no embedding shards (shard-*.parquet) in this folder")
                _check_finished(path, shards, allow_partial)
                table = pa.concat_tables([pq.read_table(shard) for shard in shards])
            else:
                table = pq.read_table(path)
        except DataValidationError:
            raise
        except Exception as error:
            raise DataValidationError(str(path), f"not a readable Parquet file ({error})") from error
        for column in ("track_id", "embedding"):
            if column not in table.column_names:
                raise DataValidationError(str(path), "missing required column", column=column)
        column = table.column("embedding").combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
        else:
            lists = column.to_pylist()
            sizes = {len(v) for v in lists if v is not None}
            if None in lists or len(sizes) > 1:
                row = next(i for i, v in enumerate(lists) if v is None or len(v) != len(lists[0]))
                raise DataValidationError(str(path), "embeddings must all have one length", row + 1, "embedding")
            vectors = np.asarray(lists, dtype=np.float32)
        ids = table.column("track_id").to_numpy(zero_copy_only=False)
        try:
            return cls(ids=ids, vectors=vectors)
        except DataValidationError as error:
            raise DataValidationError(str(path), error.reason, error.row, error.column) from error


def expected_shards(manifest: dict) -> int:
    """Shards an extraction manifest promises: its `shards` count (a grown folder's shards are not all full), else
    ceil(tracks / shard_size) for folders written before growing existed."""
    if "shards" in manifest:
        return int(manifest["shards"])
    return -(-int(manifest["tracks"]) // int(manifest["shard_size"]))


def _check_finished(folder: Path, shards: list[Path], allow_partial: bool) -> None:
    """Compare the shards present with the ones `tunespace embed` promised in its manifest (a shard is written
    atomically once all its tracks are done, so a missing one means the run stopped before it)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return  # shards written by another tool: nothing promises more
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = expected_shards(manifest)
    except (ValueError, KeyError, TypeError) as error:
        raise DataValidationError(str(manifest_path), f"not a tunespace embed manifest ({error})") from error
    missing = expected - len(shards)
    if missing <= 0:
        return
    summary = f"unfinished extraction: {len(shards)} of {expected} shards written ({missing} missing)"
    if allow_partial:
        log.warning("%s: %s; loading the %d shards there", folder, summary, len(shards))
        return
    raise IncompleteExtractionError(str(folder), f"{summary}; resume it with {_resume_command(folder, manifest)} "
                                    "(finished shards are kept), or load it with allow_partial=True")


def _resume_command(folder: Path, manifest: dict[str, object]) -> str:
    """The `tunespace embed` command that resumes `folder`, from its provenance record when there is one."""
    data = "DATA"
    try:
        settings = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))["settings"]
        data = str(settings["data"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return (f"`tunespace embed --backend {manifest.get('backend', 'BACKEND')} --data {data} --out {folder} "
            f"--shard-size {manifest['shard_size']}` (the same options as the first run)")

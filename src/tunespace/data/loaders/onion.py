"""Music4All-Onion (Moscati et al., CIKM 2022) as Tamm and Aljanaki (RecSys 2024) used it.

Two kinds of file, both tab-separated with a header row and usually bz2-compressed on Zenodo:

* listening events, ``userid_trackid_timestamp.tsv(.bz2)``: columns ``user_id``, ``track_id`` (the
  16-character Music4All id) and ``timestamp`` (``2013-01-27 21:42:38``, taken as UTC); about 253M rows.
* item features, ``id_<name>.tsv(.bz2)`` such as ``id_mfcc_stats`` (13 MFCC means and the 91 entries of
  their covariance's upper triangle), ``id_mfcc_bow``, ``id_ivec256``, ``id_musicnn`` or ``id_essentia``:
  an ``id`` column and then one numeric column per dimension.

The layouts above come from public code that reads these files, not from the release's own README; the
loaders check them (column names, numbers) rather than trust them, and the id column name is a parameter.
Files with non-numeric payloads (``id_tags_dict``, ``id_genres``, ``id_information``) are not feature files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pv

from tunespace.data.dataset import Dataset
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.loaders.tabular import blank_rows, read_delimited, require_file, unix_times
from tunespace.data.schema import TIMESTAMP_DTYPE
from tunespace.errors import DataValidationError

logger = logging.getLogger(__name__)

EVENT_COLUMNS = ("user_id", "track_id", "timestamp")


def _utc_or_none(moment: pd.Timestamp | str | None) -> pd.Timestamp | None:
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _event_chunk(chunk: pd.DataFrame, source: str) -> pd.DataFrame:
    """Ids and UTC timestamps of one chunk; errors carry the row number in the whole file.

    The full schema check runs once on the kept rows; here only what needs a file row is checked.
    """
    out = {}
    for column in ("user_id", "track_id"):
        ids = chunk[column].str.strip()
        missing = ids.fillna("").eq("").to_numpy()
        if missing.any():
            raise DataValidationError(source, "missing id (empty field or too few fields in the row)",
                                      int(chunk.index[missing][0]) + 1, column)
        out[column] = ids
    stamps = chunk["timestamp"]
    if pd.api.types.is_numeric_dtype(stamps) and not pd.api.types.is_bool_dtype(stamps):
        parsed = unix_times(stamps, "s", source, "timestamp")
    else:
        parsed = pd.to_datetime(stamps, utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise DataValidationError(source, f"not a date: {stamps.iloc[position]!r}",
                                      int(chunk.index[position]) + 1, "timestamp")
    out["timestamp"] = parsed.astype(TIMESTAMP_DTYPE)
    frame = pd.DataFrame(out)
    frame["weight"] = np.float32(1.0)
    return frame


def _arrow_chunks(path: Path, chunksize: int) -> Iterator[pd.DataFrame]:
    """The events file through Arrow's multi-threaded CSV reader, index = data row - 1 as read_delimited does.

    Irregularities Arrow cannot place in a row (a short or long row, a missing column, a column whose type
    changes after the first block) raise an Arrow error, and the caller falls back to
    :func:`read_delimited`, which names the row. Cells that parse but are wrong are caught per chunk.
    """
    options = {
        "read_options": pv.ReadOptions(block_size=max(1 << 20, chunksize * 48)),
        "parse_options": pv.ParseOptions(delimiter="\t", quote_char=False, ignore_empty_lines=False),
        "convert_options": pv.ConvertOptions(column_types={"user_id": pa.string(), "track_id": pa.string()},
                                             include_columns=list(EVENT_COLUMNS), strings_can_be_null=False),
    }
    offset = 0
    with pv.open_csv(path, **options) as reader:
        for batch in reader:
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(offset, offset + len(frame))
            offset += len(frame)
            yield frame[~blank_rows(frame)]


def load_onion_events(
    path: str | Path,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    chunksize: int = 1_000_000,
) -> Dataset:
    """Listening events as interactions, read in chunks so that only the kept rows are held in memory.

    `start` and `end` select a half-open time window [start, end), the way to take a manageable slice of
    the 253M-event file. Events repeated with the same (user, track, second) are merged into one row whose
    weight counts them (the data model keys interactions on that triple); every other event weighs 1.0.
    """
    path = require_file(path)
    source = str(path)
    low, high = _utc_or_none(start), _utc_or_none(end)

    def window(chunks: Iterator[pd.DataFrame]) -> tuple[list[pd.DataFrame], int]:
        kept, total = [], 0
        for chunk in chunks:
            events = _event_chunk(chunk, source)
            total += len(events)
            inside = np.ones(len(events), dtype=bool)
            if low is not None:
                inside &= (events["timestamp"] >= low).to_numpy()
            if high is not None:
                inside &= (events["timestamp"] < high).to_numpy()
            kept.append(events[inside])
        return kept, total

    try:
        kept, total = window(_arrow_chunks(path, chunksize))
    except (pa.ArrowException, KeyError) as error:  # the slower reader names the row and column
        logger.info("%s: fast reader failed (%s); reading again to locate the problem", source, error)
        dtype = {"user_id": str, "track_id": str}
        kept, total = window(read_delimited(path, dtype=dtype, chunksize=chunksize, required=EVENT_COLUMNS))
    events = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=[*EVENT_COLUMNS, "weight"])
    keys = list(EVENT_COLUMNS)
    if events.duplicated(keys).any():
        before = len(events)
        events = events.groupby(keys, as_index=False, sort=False, observed=True)["weight"].sum()
        logger.info("%s: merged %d repeated (user, track, second) events", source, before - len(events))
    logger.info("%s: kept %d of %d events", source, len(events), total)
    return Dataset.from_frames(events, name=path.name.split(".")[0], sources={"interactions": source})


def load_onion_features(path: str | Path, id_column: str = "id", chunksize: int = 20_000) -> ItemEmbeddings:
    """An ``id_<feature>.tsv(.bz2)`` file as item embeddings: every column after the id is one dimension."""
    path = Path(path)
    source = str(path)
    ids: list[np.ndarray] = []
    blocks: list[np.ndarray] = []
    feature_columns: list[str] | None = None
    for chunk in read_delimited(path, dtype={id_column: str}, chunksize=chunksize, required=(id_column,)):
        if feature_columns is None:
            feature_columns = [str(c) for c in chunk.columns if c != id_column]
            if not feature_columns:
                raise DataValidationError(source, "no feature columns after the id column", column=id_column)
        missing_id = (chunk[id_column].isna() | chunk[id_column].str.strip().eq("")).to_numpy()
        if missing_id.any():
            raise DataValidationError(source, "missing id", int(chunk.index[missing_id][0]) + 1, id_column)
        features = chunk[feature_columns]
        for column in feature_columns:
            values = features[column]
            if not pd.api.types.is_numeric_dtype(values) or values.isna().any():
                numbers = pd.to_numeric(values, errors="coerce")
                bad = numbers.isna().to_numpy()
                if bad.any():
                    position = int(np.flatnonzero(bad)[0])
                    cell = values.iloc[position]
                    reason = ("missing value (empty field or too few fields in the row)" if pd.isna(cell)
                              else f"not a number: {cell!r}")
                    raise DataValidationError(source, reason, int(chunk.index[position]) + 1, column)
        ids.append(chunk[id_column].str.strip().to_numpy(dtype=object))
        blocks.append(features.to_numpy(dtype=np.float32))
    if not blocks:
        raise DataValidationError(source, "no rows", column=id_column)
    try:
        embeddings = ItemEmbeddings(ids=np.concatenate(ids), vectors=np.concatenate(blocks))
    except DataValidationError as error:
        raise DataValidationError(source, error.reason, error.row, error.column) from error
    logger.info("%s: %d items x %d features", source, len(embeddings.ids), embeddings.dim)
    return embeddings

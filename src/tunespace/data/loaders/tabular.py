"""Interactions from any plain CSV/TSV/Parquet file, plus the delimited-file reader the other loaders share.

The shared reader exists so that every loader reports a broken file the same way: a
:class:`DataValidationError` naming the file, the 1-based data row (header excluded, blank lines counted) and
the column, and a :class:`DatasetNotFoundError` naming a missing path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.data.dataset import Dataset
from tunespace.errors import DataValidationError, DatasetNotFoundError

logger = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("user_id", "track_id", "timestamp", "weight")
TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zip", ".zst"}
_MAX_UNIX_SECONDS = 9.2e9  # nanosecond datetimes end in 2262
_PARSER_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def require_file(path: str | Path) -> Path:
    """Return `path` as a Path, or raise DatasetNotFoundError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: file not found")
    return path


def read_delimited(
    path: str | Path,
    sep: str = "\t",
    *,
    encoding: str = "utf-8",
    dtype: type | Mapping[str, object] | None = str,
    chunksize: int | None = None,
    required: tuple[str, ...] = (),
) -> Iterator[pd.DataFrame]:
    """Yield the file as data frames whose index is the 0-based data row, so that row = index + 1.

    Quotes are taken literally (artist names contain them) and compression follows the file name. With
    ``dtype=str`` empty and missing trailing fields both read as "", so a short row surfaces as an empty
    value in the column where it falls short. Blank lines keep their row number and are dropped.
    """
    path = require_file(path)
    source = str(path)
    options = dict(sep=sep, encoding=encoding, dtype=dtype, quoting=3, skip_blank_lines=False,
                   keep_default_na=dtype is not str, compression="infer")
    header_checked = False
    try:
        frames = pd.read_csv(path, chunksize=chunksize, **options) if chunksize else [pd.read_csv(path, **options)]
        for frame in frames:
            if not isinstance(frame.index, pd.RangeIndex):  # pandas took the extra leading fields as an index
                raise DataValidationError(source, f"row has more fields than the header's {frame.shape[1]}",
                                          1, str(frame.columns[-1]))
            if not header_checked:
                missing = [c for c in required if c not in frame.columns]
                if missing:
                    present = ", ".join(map(str, frame.columns))
                    raise DataValidationError(source, f"missing column (header has: {present})",
                                              column=missing[0])
                header_checked = True
            yield frame[~blank_rows(frame)]
        if not header_checked and required:  # a chunked read of a header-only file yields no frame
            header = pd.read_csv(path, nrows=0, **options).columns
            missing = [c for c in required if c not in header]
            if missing:
                raise DataValidationError(source, "missing column", column=missing[0])
    except pd.errors.EmptyDataError as error:
        raise DataValidationError(source, "empty file (no header row)") from error
    except pd.errors.ParserError as error:
        match = _PARSER_LINE.search(str(error))
        if match is None:
            raise DataValidationError(source, f"unreadable file ({str(error).strip()})") from error
        expected, line, seen = (int(g) for g in match.groups())
        header = pd.read_csv(path, nrows=0, **options).columns
        raise DataValidationError(source, f"row has {seen} fields, the header has {expected}",
                                  line - 1, str(header[-1])) from error
    except UnicodeDecodeError as error:
        raise DataValidationError(source, f"not {encoding} text ({error.reason})") from error


def blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is empty: blank lines. Only rows with an empty first cell are examined."""
    if frame.shape[1] == 0:
        return np.zeros(len(frame), dtype=bool)
    first = frame.iloc[:, 0]
    blank = (first.isna() | first.astype("string").eq("")).fillna(True).to_numpy()
    if blank.any():
        rest = frame[blank]
        blank[blank] = (rest.isna() | rest.astype("string").eq("").fillna(True)).all(axis=1).to_numpy()
    return blank


def remap_row(error: DataValidationError, index: pd.Index, source: str,
              columns: Mapping[str, str] | None = None) -> DataValidationError:
    """The same error with the row counted in the file (blank lines included) and the file's column name."""
    row = int(index[error.row - 1]) + 1 if error.row is not None and error.row <= len(index) else error.row
    column = (columns or {}).get(error.column or "", error.column)
    return DataValidationError(source, error.reason, row, column)


def unix_times(values: pd.Series, unit: str, source: str, column: str) -> pd.Series:
    """Numbers in `unit` since 1970 as UTC datetimes; a non-finite or out-of-range value names its row.

    `values` keeps the file's row numbers in its index (row = index + 1).
    """
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    seconds = numbers / {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    bad = ~np.isfinite(seconds) | (np.abs(np.nan_to_num(seconds)) > _MAX_UNIX_SECONDS)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DataValidationError(source, f"not a unix time in {unit}: {numbers[position]!r}",
                                  int(values.index[position]) + 1, column)
    return pd.Series(pd.to_datetime(values.to_numpy(), unit=unit, utc=True), index=values.index)


def _separator(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    extension = suffixes[-1] if suffixes else ""
    if extension == ".csv":
        return ","
    if extension in (".tsv", ".tab", ".dat", ".inter"):
        return "\t"
    raise ValueError(f"{path}: cannot tell the delimiter from the extension {extension or '(none)'!r}; "
                     "pass sep=")


def load_interactions_table(
    path: str | Path,
    columns: Mapping[str, str] | None = None,
    timestamp_unit: str = "s",
    sep: str | None = None,
) -> Dataset:
    """Interactions from a CSV/TSV (optionally compressed) or Parquet file, renamed into the data model.

    `columns` maps data-model names (user_id, track_id, timestamp, weight) to the file's column names; names
    it leaves out are looked up as they are (weight only if the file has it). Other file columns are ignored. Numeric timestamps are read in
    `timestamp_unit`, text ones as ISO 8601. A file without a weight column gets weight 1.0. Duplicate
    (user, track, timestamp) rows are an error, not silently merged.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(INTERACTION_COLUMNS))
    if unknown:
        raise ValueError(f"unknown data-model column(s) {', '.join(map(repr, unknown))} in the column mapping; "
                         f"known: {', '.join(INTERACTION_COLUMNS)}")
    if timestamp_unit not in TIMESTAMP_UNITS:
        raise ValueError(f"timestamp_unit must be one of {', '.join(TIMESTAMP_UNITS)}, not {timestamp_unit!r}")
    path = require_file(path)
    source = str(path)
    names = {name: columns.get(name, name) for name in INTERACTION_COLUMNS}
    required = tuple(names[n] for n in INTERACTION_COLUMNS if n != "weight" or n in columns)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path).reset_index(drop=True)
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise DataValidationError(source, f"not a readable Parquet file ({error})") from error
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataValidationError(source, "missing column (columns present: "
                                      f"{', '.join(map(str, frame.columns))})", column=missing[0])
    else:
        ids = {names["user_id"]: str, names["track_id"]: str}
        frame = pd.concat(list(read_delimited(path, sep or _separator(path), dtype=ids, required=required)))
    present = {name: file_column for name, file_column in names.items() if file_column in frame.columns}
    table = pd.DataFrame({name: frame[file_column] for name, file_column in present.items()}, index=frame.index)
    stamps = table["timestamp"]
    if pd.api.types.is_numeric_dtype(stamps) and not pd.api.types.is_bool_dtype(stamps):
        table["timestamp"] = unix_times(stamps, timestamp_unit, source, names["timestamp"])
    try:
        dataset = Dataset.from_frames(table.reset_index(drop=True), name=path.name.split(".")[0],
                                      sources={"interactions": source})
    except DataValidationError as error:
        raise remap_row(error, table.index, source, present) from error
    logger.info("%s: %d interactions", source, len(dataset.interactions))
    return dataset

"""The data model: tracks, interactions and playlists, validated at the boundary.

Every table that enters tunespace passes through :func:`validate_table`, which either returns a normalised copy
(ids as strings, timestamps as UTC datetimes, weights as float32) or raises :class:`DataValidationError` naming
the file, the row and the column. Rows are counted from 1 over data rows, header excluded, in file order.
Nothing half-loads: a table is either entirely valid or rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
import pandas as pd

from tunespace.errors import DataValidationError


class Kind(Enum):
    ID = "id"
    TEXT = "text"
    PATH = "path"
    TIMESTAMP = "timestamp"
    NONNEGATIVE_FLOAT = "nonnegative float"
    NONNEGATIVE_INT = "nonnegative int"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = True  # the column must be present
    nullable: bool = False  # cells may be empty
    default: float | None = None  # value used when an optional column is absent


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # columns whose combination must be unique
    extra_text: bool = False  # extra columns are kept: numbers as numbers, anything else as text (tracks only)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


TRACKS = TableSchema(
    name="tracks",
    columns=(
        Column("track_id", Kind.ID),
        Column("artist_id", Kind.ID, required=False, nullable=True),
        Column("album_id", Kind.ID, required=False, nullable=True),
        Column("title", Kind.TEXT, required=False, nullable=True),
        Column("audio_path", Kind.PATH, required=False, nullable=True),
        Column("abc_path", Kind.PATH, required=False, nullable=True),
        Column("midi_path", Kind.PATH, required=False, nullable=True),
        Column("duration", Kind.NONNEGATIVE_FLOAT, required=False, nullable=True),
    ),
    key=("track_id",),
    extra_text=True,
)

INTERACTIONS = TableSchema(
    name="interactions",
    columns=(
        Column("user_id", Kind.ID),
        Column("track_id", Kind.ID),
        Column("timestamp", Kind.TIMESTAMP),
        Column("weight", Kind.NONNEGATIVE_FLOAT, required=False, default=1.0),
    ),
    key=("user_id", "track_id", "timestamp"),
)

PLAYLISTS = TableSchema(
    name="playlists",
    columns=(
        Column("playlist_id", Kind.ID),
        Column("position", Kind.NONNEGATIVE_INT),
        Column("track_id", Kind.ID),
    ),
    key=("playlist_id", "position"),
)

SCHEMAS = {s.name: s for s in (TRACKS, INTERACTIONS, PLAYLISTS)}

TIMESTAMP_DTYPE = "datetime64[us, UTC]"


def _first_bad_row(mask: np.ndarray) -> int:
    """1-based number of the first True row of `mask`."""
    return int(np.flatnonzero(mask)[0]) + 1


def _as_ids(values: pd.Series, source: str, column: Column) -> pd.Series:
    """Ids are strings everywhere, so that "0042" and 42 from two files never silently differ in type."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if not np.all(np.mod(finite.to_numpy(), 1) == 0):
            bad = values.notna().to_numpy() & (np.mod(values.fillna(0).to_numpy(), 1) != 0)
            raise DataValidationError(source, "an id must be an integer or a string, not a fraction",
                                      _first_bad_row(bad), column.name)
        out = values.astype("Int64").astype("string")
    else:
        out = values.astype("string")
    out = out.str.strip()
    return out.mask(out == "", pd.NA)


def _as_timestamps(values: pd.Series, source: str, column: Column) -> pd.Series:
    """Accept datetimes, unix seconds or ISO-8601 strings; store UTC microseconds."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
        bad = ~np.isfinite(numbers.fillna(0).to_numpy())
        if bad.any():
            raise DataValidationError(source, "not a finite unix time", _first_bad_row(bad), column.name)
        try:
            parsed = pd.to_datetime(numbers, unit="s", utc=True)
        except (OverflowError, pd.errors.OutOfBoundsDatetime) as error:
            array = numbers.to_numpy()
            bad = np.abs(np.nan_to_num(array)) > 9.2e9  # beyond datetime64's range (years 1677-2262)
            row = _first_bad_row(bad) if bad.any() else None
            raise DataValidationError(source, f"unix time out of range ({error})", row, column.name) from error
    else:
        text = values.astype("string")
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        bad = (parsed.isna() & text.notna()).to_numpy()
        if bad.any():
            row = _first_bad_row(bad)
            raise DataValidationError(source, f"not a date: {text.iloc[row - 1]!r}", row, column.name)
    return parsed.astype(TIMESTAMP_DTYPE)


def _as_nonnegative(values: pd.Series, source: str, column: Column, integer: bool) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    unparseable = (numbers.isna() & values.notna()).to_numpy()
    if unparseable.any():
        row = _first_bad_row(unparseable)
        raise DataValidationError(source, f"not a number: {values.iloc[row - 1]!r}", row, column.name)
    array = numbers.to_numpy(dtype="float64", na_value=np.nan)
    present = ~np.isnan(array)
    if np.isinf(array).any():
        raise DataValidationError(source, "not a finite number", _first_bad_row(np.isinf(array)), column.name)
    negative = present & (array < 0)
    if negative.any():
        row = _first_bad_row(negative)
        raise DataValidationError(source, f"negative value {array[row - 1]:g}", row, column.name)
    if integer:
        fraction = present & (np.mod(np.where(present, array, 0), 1) != 0)
        if fraction.any():
            raise DataValidationError(source, "not a whole number", _first_bad_row(fraction), column.name)
        return pd.Series(array, index=values.index).astype("Int64" if not present.all() else "int64")
    return pd.Series(array.astype("float32"), index=values.index)


def validate_table(frame: pd.DataFrame, schema: TableSchema, source: str | None = None) -> pd.DataFrame:
    """Check `frame` against `schema` and return a normalised copy, or raise DataValidationError.

    `source` names the file (or a description) in error messages.
    """
    source = source or schema.name
    frame = frame.reset_index(drop=True)
    # a listening log's `count` column is its weight; errors still name the column the file has
    in_file = {"weight": "count"} if (schema is INTERACTIONS and "weight" not in frame.columns
                                      and "count" in frame.columns) else {}
    for column in schema.columns:
        if column.required and in_file.get(column.name, column.name) not in frame.columns:
            present = ", ".join(map(str, frame.columns)) or "none"
            raise DataValidationError(source, f"missing required column (columns present: {present})",
                                      column=column.name)
    out: dict[str, pd.Series] = {}
    for target in schema.columns:
        column = replace(target, name=in_file.get(target.name, target.name))
        if column.name not in frame.columns:
            if column.default is not None:
                out[target.name] = pd.Series(np.full(len(frame), column.default, dtype="float32"))
            continue
        raw = frame[column.name]
        if column.kind is Kind.ID:
            values = _as_ids(raw, source, column)
        elif column.kind in (Kind.TEXT, Kind.PATH):
            values = raw.astype("string")
        elif column.kind is Kind.TIMESTAMP:
            values = _as_timestamps(raw, source, column)
        else:
            values = _as_nonnegative(raw, source, column, integer=column.kind is Kind.NONNEGATIVE_INT)
        if not column.nullable:
            missing = values.isna().to_numpy()
            if missing.any():
                raise DataValidationError(source, f"missing {column.kind.value}", _first_bad_row(missing),
                                          column.name)
        out[target.name] = values
    if schema.extra_text:
        known = {c.name for c in schema.columns} | set(in_file.values())
        for name in frame.columns:
            if name not in known:
                extra = frame[name]
                numeric = pd.api.types.is_numeric_dtype(extra) and not pd.api.types.is_bool_dtype(extra)
                out[str(name)] = extra if numeric else extra.astype("string")
    result = pd.DataFrame(out)
    duplicated = result.duplicated(list(schema.key), keep="first").to_numpy()
    if duplicated.any():
        row = _first_bad_row(duplicated)
        key = {k: result[k].iloc[row - 1] for k in schema.key}
        first = _first_bad_row(
            np.logical_and.reduce([(result[k] == v).to_numpy() for k, v in key.items()])
        )
        shown = ", ".join(f"{k}={v}" for k, v in key.items())
        raise DataValidationError(source, f"duplicate key ({shown}) already on row {first}", row,
                                  ",".join(schema.key))
    return result


def check_known_ids(frame: pd.DataFrame, column: str, known: pd.Series, source: str, what: str) -> None:
    """Raise if any id in `frame[column]` is not among `known` (e.g. an interaction with an unknown track)."""
    unknown = ~frame[column].isin(known).to_numpy()
    if unknown.any():
        row = _first_bad_row(unknown)
        count = int(unknown.sum())
        raise DataValidationError(
            source, f"unknown {what} {frame[column].iloc[row - 1]!r} ({count} row(s) refer to unknown ids)",
            row, column)

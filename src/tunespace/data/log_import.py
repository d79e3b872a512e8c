"""A user's own listening log (CSV or Parquet, any column names) turned into a data-model folder.

Exists so that someone with a log export can benchmark on it without writing Python: the columns are named on
the command line, the times parsed as unix seconds or ISO-8601, and every error names the log file, the row
(counted from 1 over data rows, header excluded) and the log's own column name, not the data model's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.data.dataset import FILES, Dataset
from tunespace.data.schema import INTERACTIONS, TIMESTAMP_DTYPE, TRACKS, validate_table
from tunespace.errors import DataValidationError, TunespaceError

TIME_FORMATS = ("auto", "unix", "iso")


class LogImportError(TunespaceError, ValueError):
    """A log cannot be imported as asked (unknown file type, bad option, an output folder already in use)."""


def read_table(path: Path) -> pd.DataFrame:
    """CSV cells are read as text, so ids such as "0042" keep their zeros; Parquet keeps its own types."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise LogImportError(f"{path}: not a .csv or .parquet file")
    if not path.exists():
        raise LogImportError(f"{path}: no such file")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        return pd.read_parquet(path)
    except Exception as error:  # pandas and pyarrow raise several types for a broken file
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise DataValidationError(str(path), f"not a readable {kind} file ({error})") from error


def parse_times(values: pd.Series, time_format: str, source: str, column: str) -> pd.Series:
    """Unix seconds or ISO-8601 text as UTC datetimes; the first unparseable cell is an error naming its row.
    `auto` reads the column as unix seconds when every cell is a number, else as ISO-8601."""
    if time_format not in TIME_FORMATS:
        raise LogImportError(f"--time-format must be one of {', '.join(TIME_FORMATS)}, not {time_format!r}")
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True).astype(TIMESTAMP_DTYPE)
    numbers = pd.to_numeric(values, errors="coerce")
    if time_format == "auto":
        time_format = "unix" if not (numbers.isna() & values.notna()).any() else "iso"
    if time_format == "unix":
        array = numbers.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(array) | (np.abs(np.nan_to_num(array)) > 9.2e9)  # datetime64 spans 1677-2262
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise DataValidationError(source, f"not a unix time in seconds: {values.iloc[row - 1]!r}", row, column)
        return pd.to_datetime(array, unit="s", utc=True).astype(TIMESTAMP_DTYPE).to_series(index=values.index)
    text = values.astype("string")
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataValidationError(source, f"not an ISO-8601 time: {text.iloc[row - 1]!r}", row, column)
    return parsed.astype(TIMESTAMP_DTYPE)


def import_log(log: str | Path, out: str | Path, user: str, track: str, time: str, weight: str | None = None,
               time_format: str = "auto", tracks: str | Path | None = None) -> Dataset:
    """Map the log's columns onto the interactions table, write OUT/interactions.parquet and OUT/tracks.parquet
    (the given track table, else one row per distinct track id) and return the folder as `Dataset.load` reads it."""
    log, out = Path(log), Path(out)
    if (out / FILES["interactions"]).exists():
        raise LogImportError(f"{out} already holds {FILES['interactions']}; choose a new --out folder")
    source = str(log)
    frame = read_table(log)
    mapping = {"user_id": user, "track_id": track, "timestamp": time}
    if weight is not None:
        mapping["weight"] = weight
    options = {"user_id": "--user", "track_id": "--track", "timestamp": "--time", "weight": "--weight"}
    for field, column in mapping.items():
        if column not in frame.columns:
            present = ", ".join(map(str, frame.columns)) or "none"
            raise DataValidationError(source, f"no such column (given as {options[field]}; columns present: "
                                              f"{present})", column=column)
    if frame.empty:
        raise DataValidationError(source, "no rows to import")
    interactions = pd.DataFrame({field: frame[column].reset_index(drop=True) for field, column in mapping.items()})
    interactions["timestamp"] = parse_times(interactions["timestamp"], time_format, source, time)
    try:
        interactions = validate_table(interactions, INTERACTIONS, source)
        track_table = (validate_table(read_table(Path(tracks)), TRACKS, str(tracks)) if tracks is not None
                       else pd.DataFrame({"track_id": sorted(interactions["track_id"].unique())}))
        Dataset.from_frames(interactions, track_table, name=out.name,
                            sources={"interactions": source, "tracks": str(tracks or out / FILES["tracks"])}
                            ).save(out)
    except DataValidationError as error:
        if error.source != source or error.column not in mapping:
            raise
        # name the log's own column, not the data model's
        raise DataValidationError(source, error.reason, error.row, mapping[error.column]) from error
    return Dataset.load(out)

"""MovieLens-100k as RecBole ships it: a small, well-known sanity check for the whole pipeline.

RecBole's atomic files are tab-separated with ``name:type`` headers (``user_id:token``, ``rating:float``,
``class:token_seq``). The wheel carries ``dataset_example/ml-100k/``, so the data can be had with
``pip install --no-deps recbole`` and found on disk without importing RecBole (and its heavy imports).

Decision: every rating becomes an implicit interaction of weight 1.0, as in the implicit-feedback
protocol the rest of tunespace follows; ``rating_as_weight=True`` keeps the 1-5 rating as the weight.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pandas as pd

from tunespace.data.dataset import Dataset
from tunespace.data.loaders.tabular import read_delimited, remap_row, require_file
from tunespace.errors import DataValidationError, DatasetNotFoundError

logger = logging.getLogger(__name__)

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_EXAMPLE = Path("dataset_example") / "ml-100k" / "ml-100k.inter"


def read_atomic(path: str | Path) -> pd.DataFrame:
    """A RecBole atomic file with plain column names; float columns are numbers, the rest text.

    Sequences (``token_seq``, ``float_seq``) stay space-separated text. The index is the data row - 1.
    """
    path = require_file(path)
    source = str(path)
    header = pd.read_csv(path, sep="\t", nrows=0, quoting=3).columns  # the types decide how to read on
    names, types = {}, {}
    for field in map(str, header):
        name, _, kind = field.rpartition(":")
        if not name or kind not in ATOMIC_TYPES:
            raise DataValidationError(source, f"header field {field!r} is not name:type with type one of "
                                      f"{', '.join(ATOMIC_TYPES)}", column=field)
        names[field], types[name] = name, kind
    frame = pd.concat(list(read_delimited(path))).rename(columns=names)
    for name, kind in types.items():
        if kind == "float":
            numbers = pd.to_numeric(frame[name], errors="coerce")
            bad = (numbers.isna() & frame[name].str.strip().ne("")).to_numpy()
            if bad.any():
                position = int(bad.nonzero()[0][0])
                raise DataValidationError(source, f"not a number: {frame[name].iloc[position]!r}",
                                          int(frame.index[position]) + 1, f"{name}:float")
            frame[name] = numbers.astype("float64")
    return frame


def recbole_example_path() -> Path | None:
    """Where an installed recbole keeps ml-100k.inter, found without importing recbole; None if absent."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _EXAMPLE
        if candidate.is_file():
            return candidate
    return None


def load_movielens_100k(path: str | Path | None = None, rating_as_weight: bool = False) -> Dataset:
    """ml-100k interactions (item id as track id) and, when ml-100k.item sits beside them, item titles."""
    if path is None:
        found = recbole_example_path()
        if found is None:
            raise DatasetNotFoundError(f"recbole's {_EXAMPLE.as_posix()} not found; install the data with "
                                       "`pip install --no-deps recbole` or pass the path of ml-100k.inter")
        path = found
    path = require_file(path)
    source = str(path)
    raw = read_atomic(path)
    columns = {"user_id": "user_id", "item_id": "track_id", "timestamp": "timestamp"}
    if rating_as_weight:
        columns["rating"] = "weight"
    for name in columns:
        if name not in raw.columns:
            raise DataValidationError(source, "missing column", column=name)
    interactions = raw[list(columns)].rename(columns=columns)
    if not rating_as_weight:
        interactions["weight"] = 1.0

    tracks = None
    item_path = path.with_suffix(".item")
    if item_path.is_file():
        items = read_atomic(item_path).rename(columns={"item_id": "track_id", "movie_title": "title"})
        if "track_id" in items.columns:
            tracks = items.astype("string")
    try:
        dataset = Dataset.from_frames(interactions.reset_index(drop=True), tracks, name="ml-100k",
                                      sources={"interactions": source, "tracks": str(item_path)})
    except DataValidationError as error:
        if error.source != source:
            raise
        raise remap_row(error, interactions.index, source, {v: k for k, v in columns.items()}) from error
    logger.info("%s: %d interactions", source, len(dataset.interactions))
    return dataset

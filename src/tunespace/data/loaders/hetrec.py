"""Last.fm hetrec2011-lastfm-2k: artists as items, first-tagging months as timestamped interactions.

The release has no listening timestamps; the only dated signal is when a user tagged an artist (month
level). An interaction is therefore the first month a user tagged an artist, which gives a temporal split
something real to cut. The tags themselves are item content, and :func:`tag_text` turns them into text
while refusing to look past a cutoff date, so content features cannot leak the test period.

Decisions:

* Artists that tag rows refer to but ``artists.dat`` lacks (about 1.5k rows in the real data) are kept as
  tracks with an empty title: the tagging event is real, only the name is missing.
* Rows dated before `min_year` (a handful carry years like 1956) are dropped and listed in
  :attr:`HetrecData.skipped`; every other broken row (non-integer field, too many or too few fields,
  impossible date, unknown tagID) stops the load with a :class:`DataValidationError`.
* ``user_taggedartists_2.dat`` is read when present, so the original single-file release loads too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tunespace.data.dataset import Dataset
from tunespace.data.loaders.tabular import read_delimited
from tunespace.data.schema import TIMESTAMP_DTYPE
from tunespace.errors import DataValidationError, DatasetNotFoundError

logger = logging.getLogger(__name__)

NAME = "hetrec2011-lastfm-2k"
ARTISTS_FILE = "artists.dat"
TAGS_FILE = "tags.dat"
TAGGED_FILES = ("user_taggedartists.dat", "user_taggedartists_2.dat")
TAGGED_COLUMNS = ("userID", "artistID", "tagID", "day", "month", "year")
_LAST_YEAR = 2262  # datetime64 cannot hold later dates


@dataclass
class HetrecData:
    """The dataset plus what the data model has no room for: dated tag events and the rows left out."""

    dataset: Dataset
    tag_events: pd.DataFrame  # user_id, track_id, tag, timestamp
    skipped: pd.DataFrame  # file, row, reason


def _integers(frame: pd.DataFrame, columns: tuple[str, ...], source: str) -> pd.DataFrame:
    """Parse text columns as non-negative integers, naming the first bad cell."""
    out: dict[str, np.ndarray] = {}
    for column in columns:
        try:  # fast path: an Arrow cast, strict about anything but plain digits
            exact = frame[column].astype("int64[pyarrow]").to_numpy("int64")
            if (exact >= 0).all():
                out[column] = exact
                continue
        except (ValueError, TypeError):
            pass
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy("float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values < 0) | (np.mod(values, 1) != 0)
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            text = frame[column].iloc[position]
            reason = ("empty field (or too few fields in the row)" if text.strip() == ""
                      else f"not a non-negative integer: {text!r}")
            raise DataValidationError(source, reason, int(frame.index[position]) + 1, column)
        out[column] = values.astype(np.int64)
    return pd.DataFrame(out, index=frame.index)


def _unique(values: pd.Series, source: str, column: str) -> None:
    duplicated = values.duplicated().to_numpy()
    if duplicated.any():
        position = int(np.flatnonzero(duplicated)[0])
        raise DataValidationError(source, f"duplicate {column} {values.iloc[position]}",
                                  int(values.index[position]) + 1, column)


def _dates(values: pd.DataFrame, source: str) -> pd.Series:
    """UTC midnight of (year, month, day), naming the first impossible date's row and column."""
    for column, low, high in (("month", 1, 12), ("day", 1, 31), ("year", 1, _LAST_YEAR)):
        bad = ~values[column].between(low, high).to_numpy()
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise DataValidationError(source, f"{column} {values[column].iloc[position]} out of range",
                                      int(values.index[position]) + 1, column)
    stamps = pd.to_datetime(values[["year", "month", "day"]], errors="coerce", utc=True)
    bad = stamps.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        row = values.iloc[position]
        raise DataValidationError(source, f"no such date {row['year']}-{row['month']:02d}-{row['day']:02d}",
                                  int(values.index[position]) + 1, "day")
    return stamps.astype(TIMESTAMP_DTYPE)


def _read_tag_rows(path: Path, min_year: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Integer columns of one user_taggedartists file, plus the rows dropped for their year."""
    source = str(path)
    raw = pd.concat(list(read_delimited(path, required=TAGGED_COLUMNS)))
    values = _integers(raw, TAGGED_COLUMNS, source)
    junk = (values["year"] < min_year).to_numpy()
    skipped = pd.DataFrame({
        "file": path.name,
        "row": values.index[junk].to_numpy(dtype=np.int64) + 1,
        "reason": [f"year {year} before {min_year}" for year in values["year"][junk]],
    })
    values = values[~junk]
    values["timestamp"] = _dates(values, source)
    values["row"] = values.index.to_numpy(dtype=np.int64) + 1
    values["file"] = source
    return values, skipped


def load_hetrec(folder: str | Path, min_year: int = 2005) -> HetrecData:
    """Load the hetrec2011-lastfm-2k folder as it was released (tab-separated .dat files with a header)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder}: no such folder (expected the {NAME} .dat files)")
    artists_path, tags_path = folder / ARTISTS_FILE, folder / TAGS_FILE

    artists_raw = pd.concat(list(read_delimited(artists_path, required=("id", "name"))))
    artist_ids = _integers(artists_raw, ("id",), str(artists_path))["id"]
    _unique(artist_ids, str(artists_path), "id")

    tags_raw = pd.concat(list(read_delimited(tags_path, encoding="latin-1", required=("tagID", "tagValue"))))
    tag_ids = _integers(tags_raw, ("tagID",), str(tags_path))["tagID"]
    _unique(tag_ids, str(tags_path), "tagID")
    tag_names = pd.Series(tags_raw["tagValue"].to_numpy(), index=tag_ids.to_numpy())

    parts, skipped_parts = [], []
    for position, filename in enumerate(TAGGED_FILES):
        path = folder / filename
        if position > 0 and not path.exists():
            logger.info("%s absent: reading %s alone, as in the original release", path, TAGGED_FILES[0])
            continue
        values, skipped = _read_tag_rows(path, min_year)
        parts.append(values)
        skipped_parts.append(skipped)
    rows = pd.concat(parts, ignore_index=True)
    skipped = pd.concat(skipped_parts, ignore_index=True).astype({"row": "int64"})

    known_tag = np.isin(rows["tagID"].to_numpy(), tag_names.index.to_numpy())
    if not known_tag.all():
        first = rows.iloc[int(np.flatnonzero(~known_tag)[0])]
        raise DataValidationError(first["file"], f"tagID {first['tagID']} is not in {TAGS_FILE}",
                                  int(first["row"]), "tagID")

    tag_events = pd.DataFrame({
        "user_id": rows["userID"].astype(str).astype("string"),
        "track_id": rows["artistID"].astype(str).astype("string"),
        "tag": tag_names.reindex(rows["tagID"].to_numpy()).astype("string").to_numpy(),
        "timestamp": rows["timestamp"],
    })
    interactions = (tag_events.groupby(["user_id", "track_id"], as_index=False, observed=True)["timestamp"].min()
                    .sort_values(["timestamp", "user_id", "track_id"], ignore_index=True))
    interactions["weight"] = 1.0

    names = artists_raw["name"].str.strip()
    tracks = pd.DataFrame({"id": artist_ids.to_numpy(), "title": names.mask(names == "").to_numpy()})
    unnamed = np.setdiff1d(rows["artistID"].unique(), artist_ids.to_numpy())
    tracks = pd.concat([tracks, pd.DataFrame({"id": unnamed, "title": pd.NA})], ignore_index=True)
    tracks = tracks.sort_values("id", ignore_index=True)
    tracks["track_id"] = tracks["id"].astype(str)
    tracks["artist_id"] = tracks["track_id"]
    tracks = tracks[["track_id", "artist_id", "title"]]

    dataset = Dataset.from_frames(interactions, tracks, name=NAME,
                                  sources={"tracks": str(artists_path),
                                           "interactions": str(folder / TAGGED_FILES[0])})
    if len(skipped):
        logger.warning("%s: skipped %d tag rows dated before %d", folder, len(skipped), min_year)
    if len(unnamed):
        logger.info("%s: %d tagged artists are missing from %s; kept without a name", folder, len(unnamed),
                    ARTISTS_FILE)
    return HetrecData(dataset=dataset, tag_events=tag_events, skipped=skipped)


def _utc(moment: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def tag_text(
    tag_events: pd.DataFrame,
    before: pd.Timestamp | str,
    tags: Literal["whole", "words"] = "whole",
    repeat: bool = False,
) -> pd.Series:
    """Per artist, the tags users gave it strictly before `before`, most frequent first, as one text.

    Only events dated before the cutoff count, so a model fitted at the cutoff never sees tags from the
    period it is tested on. Tags are lower-cased with whitespace collapsed; frequency is the number of tag
    events (one per user in hetrec) and ties go alphabetically. With ``tags="whole"`` the words of a
    multi-word tag are joined by "_" so that a whitespace tokenizer keeps the tag as one token ("hip_hop");
    with ``tags="words"`` they stay separate words. Each tag appears once, or as many times as it was given
    with `repeat`, so that term frequency carries the count. Artists without such tags are absent.
    """
    if tags not in ("whole", "words"):
        raise ValueError(f"tags must be 'whole' or 'words', not {tags!r}")
    cutoff = _utc(before)
    events = tag_events.loc[(tag_events["timestamp"] < cutoff).to_numpy(), ["track_id", "tag"]]
    codes, distinct = pd.factorize(events["tag"])  # normalise each distinct tag once, not every event
    joiner = "_" if tags == "whole" else " "
    normalised = np.array([joiner.join(str(tag).lower().split()) for tag in distinct] + [""], dtype=object)
    events = pd.DataFrame({"track_id": events["track_id"].astype(str).to_numpy(), "tag": normalised[codes]})
    events = events[events["tag"] != ""]
    counts = events.groupby(["track_id", "tag"], observed=True).size().rename("count").reset_index()
    counts = counts.sort_values(["track_id", "count", "tag"], ascending=[True, False, True])
    if repeat:
        counts = counts.loc[counts.index.repeat(counts["count"])]
    track = counts["track_id"].to_numpy(dtype=object)
    words = counts["tag"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, track[1:] != track[:-1]]) if len(track) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(track)]
    texts = [" ".join(words[start:end]) for start, end in zip(starts, ends)]
    index = pd.Index(track[starts], dtype="string", name="track_id")
    return pd.Series(texts, index=index, dtype="string", name="tag_text")

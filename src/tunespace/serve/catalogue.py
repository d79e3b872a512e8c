"""What the explorer shows about tracks and listeners, read once from a data-model folder.

Audio files are found only through the tracks table: `audio_file(track_id)` looks the id up and returns the path
that table gave, resolved against the data folder when the server starts. Nothing a request sends is ever joined
to a path, so `../` in any encoding can only be an unknown id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.data.dataset import Dataset
from tunespace.errors import UnknownIdError

log = logging.getLogger(__name__)

TAG_SEPARATOR = "|"
CATEGORY_MAX_VALUES = 24  # a text column with at most this many distinct values can colour the map
LISTENER_GROUP_ATTRIBUTES = ("style", "region", "mode", "tempo_class", "instrument_family")
METADATA_SKIP = {"track_id", "title", "audio_path", "abc_path", "midi_path", "tags", "metadata_text"}


@dataclass(frozen=True)
class ListenerGroup:
    """Listeners of a track who share a favourite (their first-ranked value of one attribute)."""

    attribute: str
    value: str
    listeners: int


def parse_tags(cell: object) -> dict[str, str]:
    """`mode:major|meter:2/2` -> {"mode": "major", "meter": "2/2"}; a tag without a colon keys itself."""
    if not isinstance(cell, str) or not cell.strip():
        return {}
    tags = {}
    for part in cell.split(TAG_SEPARATOR):
        key, colon, value = part.strip().partition(":")
        if key:
            tags[key] = value if colon else key
    return tags


class Catalogue:
    """Tracks (with their tags, metadata, ABC text and audio file), listening history and listeners' tastes."""

    def __init__(self, data: str | Path) -> None:
        self.root = Path(data).resolve()
        tracks = Dataset.load_tracks(self.root)
        self.tracks = tracks.set_index("track_id", drop=False)
        self.tags = {str(tid): parse_tags(cell) for tid, cell in
                     zip(tracks["track_id"], tracks["tags"] if "tags" in tracks else [None] * len(tracks))}
        self._titles = self._texts(["title"])
        self._collections = self._texts(["collection_name", "collection", "album", "artist_id"])
        self._durations = ({str(t): float(d) for t, d in zip(tracks["track_id"], tracks["duration"]) if pd.notna(d)}
                           if "duration" in tracks else {})
        self._audio = self._files("audio_path")
        self._abc = self._files("abc_path")
        self.interactions = self._optional_interactions()
        self.users = self._optional_users()
        self._plays_by_track = (self.interactions.groupby("track_id")["user_id"].agg(list)
                                if self.interactions is not None else pd.Series(dtype=object))
        self._history = (self.interactions.groupby("user_id") if self.interactions is not None else None)

    def _texts(self, columns: list[str]) -> dict[str, str]:
        """Track id -> the first non-blank of `columns` (looked up once: result lists show them for every hit)."""
        found: dict[str, str] = {}
        for column in reversed([c for c in columns if c in self.tracks]):
            for tid, value in self.tracks[column].items():
                if isinstance(value, str) and value.strip():
                    found[str(tid)] = value
        return found

    def _files(self, column: str) -> dict[str, Path]:
        """Track id -> absolute path of `column`'s file (relative paths are relative to the data folder)."""
        if column not in self.tracks:
            return {}
        files = {}
        for tid, cell in self.tracks[column].items():
            if isinstance(cell, str) and cell.strip():
                files[str(tid)] = (self.root / cell).resolve()
        return files

    def _optional_interactions(self) -> pd.DataFrame | None:
        if not (self.root / "interactions.parquet").exists():
            return None
        frame = Dataset.load(self.root).interactions
        return frame[frame["track_id"].isin(self.tracks.index)]

    def _optional_users(self) -> pd.DataFrame | None:
        """users.parquet of the built-in corpus (each listener's ranked favourites), when the folder has one."""
        path = self.root / "users.parquet"
        return pd.read_parquet(path).set_index("user_id") if path.exists() else None

    def __len__(self) -> int:
        return len(self.tracks)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self.tracks.index

    @property
    def ids(self) -> list[str]:
        return [str(t) for t in self.tracks.index]

    def require(self, track_id: str) -> None:
        """Raise UnknownIdError (a 404 for the service) for an id that is not in the tracks table."""
        if track_id not in self.tracks.index:
            raise UnknownIdError(f"unknown track id {track_id!r}: not in {self.root / 'tracks.parquet'}")

    def title(self, track_id: str) -> str:
        return self._titles.get(track_id, track_id)

    def collection(self, track_id: str) -> str | None:
        """The book or album the track comes from (`collection_name`, `collection`, `album`, else `artist_id`)."""
        return self._collections.get(track_id)

    def duration(self, track_id: str) -> float | None:
        return self._durations.get(track_id)

    def has_audio(self, track_id: str) -> bool:
        return track_id in self._audio

    def has_score(self, track_id: str) -> bool:
        return track_id in self._abc

    def metadata(self, track_id: str) -> dict[str, str | float]:
        """Every other non-empty column of the track's row (collection, key, tempo, note statistics...)."""
        row = self.tracks.loc[track_id]
        out: dict[str, str | float] = {}
        for column, value in row.items():
            if column in METADATA_SKIP or value is None or (not isinstance(value, str) and pd.isna(value)):
                continue
            if isinstance(value, str):
                if value.strip():
                    out[str(column)] = value
            elif isinstance(value, (int, float, np.integer, np.floating)):
                out[str(column)] = round(float(value), 4)
        return out

    def abc(self, track_id: str) -> str | None:
        """The track's ABC notation, when its row names a readable ABC file."""
        path = self._abc.get(track_id)
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            log.warning("track %s: cannot read its ABC file %s (%s)", track_id, path, error)
            return None

    def audio_file(self, track_id: str) -> Path:
        """The track's audio file as the tracks table names it; UnknownIdError when it has none on disk."""
        self.require(track_id)
        path = self._audio.get(track_id)
        if path is None:
            raise UnknownIdError(f"track {track_id!r} has no audio file in the catalogue")
        if not path.is_file():
            raise UnknownIdError(f"track {track_id!r}: its audio file is missing from the catalogue's folder")
        return path

    def colour_keys(self) -> list[str]:
        """What the map can be coloured by: tag keys (those most tracks have first), then text columns with few
        distinct values that do not repeat a tag (instrument_family beside the tag family)."""
        coverage: dict[str, int] = {}
        for tags in self.tags.values():
            for key in tags:
                coverage[key] = coverage.get(key, 0) + 1
        keys = sorted(coverage, key=lambda key: (-coverage[key], key))
        tag_values = [self._normalised(pd.Series([self.tags[t].get(key) for t in self.ids], dtype="string"))
                      for key in keys]
        for column in self.tracks.columns:
            if column in METADATA_SKIP or column in coverage or column in ("artist_id", "album_id"):
                continue
            values = self.tracks[column]
            if not pd.api.types.is_string_dtype(values):
                continue
            text = self._normalised(values.reset_index(drop=True).astype("string"))
            if 2 <= text.nunique() <= CATEGORY_MAX_VALUES and not any(text.equals(tag) for tag in tag_values):
                keys.append(str(column))
        return keys

    @staticmethod
    def _normalised(values: pd.Series) -> pd.Series:
        """Lower case, spaces as underscores, blanks missing: how tags spell a column's values."""
        text = values.str.strip().str.lower().str.replace(" ", "_", regex=False)
        return text.mask(text == "", pd.NA)

    def colour_value(self, track_id: str, key: str) -> str | None:
        """The track's value for a colour key: its tag, else its column's text."""
        tag = self.tags.get(track_id, {}).get(key)
        if tag is not None:
            return tag
        if key in self.tracks.columns:
            value = self.tracks.at[track_id, key]
            if isinstance(value, str) and value.strip():
                return value
        return None

    def has_user(self, user_id: str) -> bool:
        return self._history is not None and user_id in self._history.groups

    def require_user(self, user_id: str) -> None:
        if not self.has_user(user_id):
            raise UnknownIdError(f"unknown listener id {user_id!r}: no plays in {self.root / 'interactions.parquet'}")

    def history(self, user_id: str) -> pd.DataFrame:
        """A listener's tracks with their plays and last play, most played first (ties: most recent first)."""
        self.require_user(user_id)
        assert self._history is not None
        rows = self._history.get_group(user_id)
        summary = rows.groupby("track_id").agg(plays=("weight", "sum"), last_played=("timestamp", "max"))
        return summary.sort_values(["plays", "last_played"], ascending=[False, False]).reset_index()

    def listener_count(self, track_id: str) -> int:
        return len(set(self._plays_by_track.get(track_id, [])))

    def top_listeners(self, track_id: str, limit: int) -> list[tuple[str, int]]:
        """The track's most frequent listeners with their number of listening sessions."""
        counts = pd.Series(self._plays_by_track.get(track_id, []), dtype=object).value_counts()
        return [(str(user), int(n)) for user, n in counts.head(limit).items()]

    def listener_groups(self, track_id: str, limit: int) -> list[ListenerGroup]:
        """The largest groups of the track's listeners by shared favourite (style, region, mode, tempo, instrument
        family), from users.parquet; none when the folder has no such table."""
        if self.users is None:
            return []
        listeners = self.users.index.intersection(pd.Index(sorted(set(self._plays_by_track.get(track_id, [])))))
        groups: list[ListenerGroup] = []
        for attribute in LISTENER_GROUP_ATTRIBUTES:
            column = f"{attribute}_favourites"
            if column not in self.users:
                continue
            firsts = self.users.loc[listeners, column].map(lambda v: v[0] if v is not None and len(v) else None)
            for value, n in firsts.dropna().value_counts().items():
                groups.append(ListenerGroup(attribute, str(value), int(n)))
        groups.sort(key=lambda g: (-g.listeners, g.attribute, g.value))
        return groups[:limit]

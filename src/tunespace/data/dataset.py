"""A dataset is the three tables of the data model, validated together and stored as Parquet in one folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tunespace.data.schema import INTERACTIONS, PLAYLISTS, TRACKS, TableSchema, check_known_ids, validate_table
from tunespace.errors import DataValidationError, DatasetNotFoundError
from tunespace.io import write_parquet

FILES = {"tracks": "tracks.parquet", "interactions": "interactions.parquet", "playlists": "playlists.parquet"}


@dataclass
class Dataset:
    """Tracks (optional), interactions (required) and playlists (optional), each already validated.

    Construct with :meth:`from_frames` (validates) or :meth:`load` (reads Parquet, validates).
    """

    interactions: pd.DataFrame
    tracks: pd.DataFrame | None = None
    playlists: pd.DataFrame | None = None
    name: str = "dataset"

    @classmethod
    def from_frames(
        cls,
        interactions: pd.DataFrame,
        tracks: pd.DataFrame | None = None,
        playlists: pd.DataFrame | None = None,
        name: str = "dataset",
        sources: dict[str, str] | None = None,
    ) -> Dataset:
        """Validate each table and the references between them; `sources` names the files for errors."""
        sources = sources or {}

        def check(frame: pd.DataFrame | None, schema: TableSchema) -> pd.DataFrame | None:
            if frame is None:
                return None
            return validate_table(frame, schema, sources.get(schema.name, f"{name}/{schema.name}"))

        tracks_v = check(tracks, TRACKS)
        interactions_v = check(interactions, INTERACTIONS)
        playlists_v = check(playlists, PLAYLISTS)
        assert interactions_v is not None
        if tracks_v is not None:
            for table, frame in (("interactions", interactions_v), ("playlists", playlists_v)):
                if frame is not None:
                    check_known_ids(frame, "track_id", tracks_v["track_id"],
                                    sources.get(table, f"{name}/{table}"), "track")
        return cls(interactions=interactions_v, tracks=tracks_v, playlists=playlists_v, name=name)

    @classmethod
    def load(cls, folder: str | Path) -> Dataset:
        """Read `tracks.parquet`, `interactions.parquet` and `playlists.parquet` (the last two optional)."""
        folder = Path(folder)
        path = folder / FILES["interactions"]
        if not path.exists():
            raise DatasetNotFoundError(f"{path}: no interactions table (expected {FILES['interactions']})")
        frames: dict[str, pd.DataFrame | None] = {}
        sources: dict[str, str] = {}
        for table, filename in FILES.items():
            file = folder / filename
            sources[table] = str(file)
            try:
                frames[table] = pd.read_parquet(file) if file.exists() else None
            except Exception as error:  # pyarrow raises several types for a corrupt file
                raise DataValidationError(str(file), f"not a readable Parquet file ({error})") from error
        return cls.from_frames(frames["interactions"], frames["tracks"], frames["playlists"],
                               name=folder.name, sources=sources)

    @staticmethod
    def load_tracks(folder: str | Path) -> pd.DataFrame:
        """Only the validated track table: what audio extraction needs, with or without listening data."""
        file = Path(folder) / FILES["tracks"]
        if not file.exists():
            raise DatasetNotFoundError(f"{file}: no tracks table (expected {FILES['tracks']})")
        try:
            frame = pd.read_parquet(file)
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise DataValidationError(str(file), f"not a readable Parquet file ({error})") from error
        return validate_table(frame, TRACKS, str(file))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for table, filename in FILES.items():
            frame = getattr(self, table)
            if frame is not None:
                write_parquet(frame, folder / filename)

    def summary(self) -> dict[str, int]:
        return {
            "users": int(self.interactions["user_id"].nunique()),
            "tracks": int(len(self.tracks)) if self.tracks is not None
            else int(self.interactions["track_id"].nunique()),
            "interactions": int(len(self.interactions)),
            "playlists": int(self.playlists["playlist_id"].nunique()) if self.playlists is not None else 0,
        }

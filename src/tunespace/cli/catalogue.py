"""`tunespace catalogue FOLDER --out DATA`: a data folder (tracks.parquet) from a plain folder of audio files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def catalogue(
    folder: Annotated[Path, typer.Argument(help="Folder of audio files (searched recursively).")],
    out: Annotated[Path, typer.Option(help="Data folder to write tracks.parquet and skipped.parquet into.")],
    decoder: Annotated[str, typer.Option(help="auto (PyAV for compressed files when the decode extra is installed: "
                                              "reads AAC/M4A and ID3/MP4 tags), soundfile or av.")] = "auto",
) -> None:
    """Make DATA/tracks.parquet from a folder of audio files (track_id = path in FOLDER, audio_path relative to
    DATA, duration and tags from the files); unreadable files go to DATA/skipped.parquet with the reason."""
    from tunespace.cli.main import console
    from tunespace.data.audio_catalogue import build_audio_catalogue

    report = build_audio_catalogue(folder, out, decoder)
    console.print(f"{report.tracks} tracks ({report.seconds / 60:.1f} audio minutes) -> {report.tracks_path}; "
                  f"{report.skipped} files skipped (reasons in {report.skipped_path}); embed them with: "
                  f"tunespace embed --data {out} --out EMBEDDINGS", soft_wrap=True, highlight=False)

"""Track embeddings from audio files with a frozen feature extractor (here MFCC statistics)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.audio.decode import AudioDecodeError, load_audio
from tunespace.audio.features import mfcc_stats
from tunespace.data.embeddings import ItemEmbeddings

logger = logging.getLogger(__name__)


def mfcc_embeddings(tracks: pd.DataFrame, root: str | Path, sample_rate: int = 16000,
                    progress: Callable[[int], None] | None = None) -> tuple[ItemEmbeddings, pd.DataFrame]:
    """104-d MFCC statistics per track (columns track_id, audio_path relative to `root`).

    A file that cannot be decoded, or is too short, is skipped and listed with the reason, never fatal.
    """
    root = Path(root)
    ids, vectors, skipped = [], [], []
    for row in tracks[["track_id", "audio_path"]].itertuples(index=False):
        try:
            audio = load_audio(root / row.audio_path, sample_rate)
            vectors.append(mfcc_stats(audio, sample_rate))
            ids.append(row.track_id)
        except (AudioDecodeError, ValueError) as error:
            skipped.append({"track_id": row.track_id, "reason": str(error)})
        if progress is not None:
            progress(1)
    if skipped:
        logger.warning("%d of %d tracks skipped while embedding", len(skipped), len(tracks))
    embeddings = ItemEmbeddings(ids=np.asarray(ids, dtype=object), vectors=np.asarray(vectors).reshape(-1, 104))
    return embeddings, pd.DataFrame(skipped, columns=["track_id", "reason"])

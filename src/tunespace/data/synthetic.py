"""A small generated dataset so the protocol runs with no download, until the built-in corpus of real tunes exists.

The generative model (seeded, documented so results can be interpreted):
- tracks belong to artists; a track's taste vector is its artist's vector plus noise (dimension `factors`);
- the track's content embedding is a fixed random projection of its taste vector to `embedding_dim` plus noise
  (`content_noise`), so content carries part, not all, of what drives taste;
- item popularity follows a Zipf-like law; each track is released at a random time in the 13 months, so some
  tracks appear only after the cutoff (cold items);
- users have a taste vector and a log-normal activity; each event picks a released track with probability
  proportional to popularity * exp(taste . track / temperature), at a uniform random time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tunespace.data.dataset import Dataset
from tunespace.data.embeddings import ItemEmbeddings

START = pd.Timestamp("2023-01-01", tz="UTC")
MONTHS = 13


@dataclass(frozen=True)
class SyntheticConfig:
    users: int = 400
    artists: int = 60
    tracks: int = 800
    factors: int = 8
    embedding_dim: int = 32
    content_noise: float = 0.5
    mean_events: float = 40.0
    temperature: float = 0.25
    zipf_exponent: float = 0.6
    seed: int = 0


def synthetic_dataset(config: SyntheticConfig = SyntheticConfig()) -> tuple[Dataset, ItemEmbeddings]:
    rng = np.random.default_rng(config.seed)
    artist_taste = rng.standard_normal((config.artists, config.factors))
    track_artist = rng.integers(0, config.artists, config.tracks)
    track_taste = artist_taste[track_artist] + 0.5 * rng.standard_normal((config.tracks, config.factors))
    track_taste /= np.linalg.norm(track_taste, axis=1, keepdims=True)
    projection = rng.standard_normal((config.factors, config.embedding_dim)) / np.sqrt(config.factors)
    content = track_taste @ projection + config.content_noise * rng.standard_normal(
        (config.tracks, config.embedding_dim)) / np.sqrt(config.embedding_dim)
    popularity = 1.0 / np.arange(1, config.tracks + 1) ** config.zipf_exponent
    popularity = popularity[rng.permutation(config.tracks)]
    span = (START + pd.DateOffset(months=MONTHS) - START).total_seconds()
    release = rng.uniform(0, 0.9 * span, config.tracks)
    release[rng.random(config.tracks) < 0.5] = 0.0  # half the catalogue exists from the start

    user_taste = rng.standard_normal((config.users, config.factors))
    user_taste /= np.linalg.norm(user_taste, axis=1, keepdims=True)
    activity = np.maximum(1, rng.lognormal(np.log(config.mean_events), 0.8, config.users).astype(int))
    rows = []
    for user in range(config.users):
        times = np.sort(rng.uniform(0, span, activity[user]))
        logits = track_taste @ user_taste[user] / config.temperature + np.log(popularity)
        weights = np.exp(logits - logits.max())
        for time in times:
            available = weights * (release <= time)
            track = rng.choice(config.tracks, p=available / available.sum())
            rows.append((f"u{user:04d}", f"t{track:04d}", time))
    events = pd.DataFrame(rows, columns=["user_id", "track_id", "seconds"])
    events["timestamp"] = START + pd.to_timedelta(events.pop("seconds"), unit="s")
    events = events.groupby(["user_id", "track_id", "timestamp"], as_index=False).size()
    events = events.rename(columns={"size": "weight"})
    tracks = pd.DataFrame({
        "track_id": [f"t{i:04d}" for i in range(config.tracks)],
        "artist_id": [f"a{a:03d}" for a in track_artist],
        "title": [f"Synthetic track {i}" for i in range(config.tracks)],
    })
    dataset = Dataset.from_frames(events, tracks, name="synthetic")
    embeddings = ItemEmbeddings(ids=tracks["track_id"].to_numpy(), vectors=content.astype(np.float32))
    return dataset, embeddings


SYNTHETIC_CUTOFF = "2023-12-01"  # 11 months of train, then a month of test, as in the paper's protocol

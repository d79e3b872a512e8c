"""The partitioned log: the generator (deterministic, resumable, valid under the data model) and the streaming
temporal split, which must give exactly what `temporal_split` gives in memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow.parquet as pq
import pytest

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.scale import (
    EMBEDDINGS_FILE,
    INTERACTIONS_DIR,
    ScaleLogConfig,
    ScaleLogError,
    ScaleSplit,
    generate_log,
    interaction_dataset,
    scale_split,
)
from tunespace.data.schema import INTERACTIONS, validate_table
from tunespace.data.splits import SplitConfig, temporal_split
from tunespace.errors import DataValidationError, SplitError

SMALL = ScaleLogConfig(tracks=2000, users=300, interactions=40_000, item_clusters=40, genres=5,
                       rows_per_part=12_000, embedding_dim=8, seed=3)
KEY = ["user_id", "track_id", "timestamp"]


def read_log(folder) -> pd.DataFrame:
    parts = sorted((folder / INTERACTIONS_DIR).glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("log")
    generate_log(SMALL, folder)
    return folder


def test_the_log_is_valid_under_the_data_model_and_shaped_as_configured(small_log):
    frame = read_log(small_log)
    assert len(list((small_log / INTERACTIONS_DIR).iterdir())) == SMALL.parts == 4
    assert abs(frame["weight"].sum() - SMALL.interactions) < 0.01 * SMALL.interactions  # events before merging
    valid = validate_table(frame, INTERACTIONS)  # raises on a duplicate key or a bad cell
    assert valid["user_id"].iloc[0] == str(frame["user_id"].iloc[0])
    assert frame["user_id"].is_monotonic_increasing and frame["track_id"].between(0, SMALL.tracks - 1).all()
    counts = frame["track_id"].value_counts()
    assert counts.iloc[:20].sum() > 20 * counts.mean()  # a popularity head
    embeddings = ItemEmbeddings.load(small_log / EMBEDDINGS_FILE)
    assert embeddings.vectors.shape == (SMALL.tracks, SMALL.embedding_dim) and embeddings.ids[5] == "5"


def test_generation_is_seeded_and_resumes_at_the_missing_part(small_log, tmp_path):
    generate_log(SMALL, tmp_path)
    (tmp_path / INTERACTIONS_DIR / "part-00002.parquet").unlink()
    written = []
    generate_log(SMALL, tmp_path, progress=lambda part, rows: written.append(part))
    assert written == [2]
    for part in sorted((small_log / INTERACTIONS_DIR).iterdir()):
        assert pq.read_table(part).equals(pq.read_table(tmp_path / INTERACTIONS_DIR / part.name))


def test_a_folder_of_another_config_is_refused(small_log):
    with pytest.raises(ScaleLogError, match="another config"):
        generate_log(ScaleLogConfig(**{**SMALL.__dict__, "seed": 4}), small_log)
    with pytest.raises(ScaleLogError, match="popularity_share"):
        ScaleLogConfig(popularity_share=1.5)


def assert_same_split(frame: pd.DataFrame, folder, config: SplitConfig, out) -> None:
    expected = temporal_split(validate_table(frame, INTERACTIONS), config)
    stats = scale_split(folder, config, out)
    assert stats == expected.stats
    loaded = ScaleSplit.load(out)
    assert loaded.stats == stats and loaded.n_warm_items == expected.n_warm_items
    assert sorted(loaded.items.astype(str)) == sorted(expected.items.ids)
    for name in ("validation", "test", "cold_validation", "cold_test"):
        got = loaded.part(name).astype({"user_id": str, "track_id": str}).sort_values(KEY).reset_index(drop=True)
        want = expected.part(name)[KEY].astype({"user_id": str, "track_id": str}).sort_values(KEY)
        pdt.assert_frame_equal(got, want.reset_index(drop=True))
    train = pd.read_parquet(out / "train").astype({"user_id": str, "track_id": str}).sort_values(KEY)
    want = expected.train.astype({"user_id": str, "track_id": str}).sort_values(KEY)
    pdt.assert_frame_equal(train.reset_index(drop=True)[KEY], want.reset_index(drop=True)[KEY])


@pytest.mark.parametrize("config", [
    SplitConfig(cutoff="2024-12-01", test_end="2025-01-01"),
    SplitConfig(cutoff="2024-11-01", train_start="2024-04-01", test_start="2024-11-15", validation_ratio=0.3,
                seed=7),
])
def test_the_streaming_split_equals_the_in_memory_split(small_log, tmp_path, config):
    assert_same_split(read_log(small_log), small_log, config, tmp_path / "split")


def test_a_log_in_no_order_splits_as_in_memory(tmp_path):
    """Parts that mix users and times (another tool's files), with pairs met before the train window, in the gap
    and in the window: the second scan must find every earlier meeting wherever it lies."""
    rng = np.random.default_rng(0)
    n = 3000
    start = pd.Timestamp("2020-01-01", tz="UTC").value // 1000
    frame = pd.DataFrame({"user_id": rng.integers(0, 40, n), "track_id": rng.integers(0, 60, n),
                          "timestamp": pd.to_datetime(start + rng.integers(0, 120 * 86400, n) * 1_000_000,
                                                      unit="us", utc=True),
                          "weight": rng.integers(1, 4, n).astype(np.float32)}).drop_duplicates(KEY)
    folder = tmp_path / "log"
    folder.mkdir()
    for number, rows in enumerate(np.array_split(rng.permutation(len(frame)), 3)):
        frame.iloc[rows].to_parquet(folder / f"chunk-{number}.parquet", index=False)
    assert_same_split(frame, folder, SplitConfig(cutoff="2020-03-01", train_start="2020-01-20",
                                                 test_start="2020-03-10", test_end="2020-04-10"), tmp_path / "s")


def test_string_ids_and_empty_windows_are_refused_with_the_reason(tmp_path):
    frame = pd.DataFrame({"user_id": ["u1"], "track_id": [3],
                          "timestamp": pd.to_datetime(["2020-01-01"], utc=True)})
    frame.to_parquet(tmp_path / "strings.parquet", index=False)
    with pytest.raises(DataValidationError, match='column "user_id": must be an integer id'):
        interaction_dataset(tmp_path / "strings.parquet")
    frame.assign(user_id=1).to_parquet(tmp_path / "ints.parquet", index=False)
    with pytest.raises(SplitError, match="no interaction falls in the train window"):
        scale_split(tmp_path / "ints.parquet", SplitConfig(cutoff="2019-01-01"), tmp_path / "a")
    with pytest.raises(SplitError, match="no test users"):
        scale_split(tmp_path / "ints.parquet", SplitConfig(cutoff="2020-06-01"), tmp_path / "b")

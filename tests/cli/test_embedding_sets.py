"""How the CLI labels embedding sets given with --embeddings: NAME=PATH as named, else the file stem (a folder: its
manifest's backend), a repeated label primed."""

from __future__ import annotations

import numpy as np

from tunespace.cli.common import embedding_sets
from tunespace.data.embeddings import ItemEmbeddings


def test_labels_come_from_the_name_given_or_the_stem(tmp_path):
    ItemEmbeddings(np.array(["a", "b"]), np.eye(2, dtype=np.float32)).save(tmp_path / "tower.parquet")
    ItemEmbeddings(np.array(["a", "b"]), 2 * np.eye(2, dtype=np.float32)).save(tmp_path / "other.parquet")
    sets = embedding_sets([tmp_path / "tower.parquet", f"artist={tmp_path}/other.parquet",
                           f"album={tmp_path}/tower.parquet", tmp_path / "tower.parquet"])
    assert list(sets) == ["tower", "artist", "album", "tower'"]
    np.testing.assert_array_equal(sets["artist"].vectors, 2 * np.eye(2))

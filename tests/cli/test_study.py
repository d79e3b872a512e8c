"""`tunespace benchmark recsys --backends ... --seeds N`: the study's Table 3 as one command, on a tiny folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunespace.cli.main import main
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A data-model folder with its embeddings where `tunespace embed --out DATA/emb/content` would put them."""
    folder = tmp_path_factory.mktemp("corpus")
    dataset, content = synthetic_dataset(SyntheticConfig(users=70, tracks=120, artists=10, seed=4))
    dataset.save(folder)
    (folder / "emb" / "content").mkdir(parents=True)
    content.save(folder / "emb" / "content" / "shard-00000.parquet")
    return folder


def bench(corpus, out, *extra: str) -> int:
    return main(["benchmark", "recsys", "--dataset", "folder", "--data", str(corpus), "--cutoff", SYNTHETIC_CUTOFF,
                 "--test-start", SYNTHETIC_CUTOFF, *extra, "--out", str(out)])


def test_table_three_in_one_command(corpus, tmp_path, single_thread):
    out = tmp_path / "table3"
    assert bench(corpus, out, "--backends", "content", "--models", "knn,shallow", "--seeds", "2", "--seed", "5",
                 "--epochs", "1", "--param", "shallow.batch_size=256") == 0
    rows = ["popularity", "ease", "knn[content]", "shallow-random", "shallow[content]"]
    table = pd.read_csv(out / "results.csv")
    assert list(table["model"]) == rows
    assert list(table["variant"]) == ["reference", "reference", "content", "random init", "content"]
    for metric in ("hit_rate@50", "recall@50", "ndcg@50"):
        assert ((table[f"{metric}_low"] <= table[metric]) & (table[metric] <= table[f"{metric}_high"])).all()

    # per-seed rows, and the table's mean and sd are those of the per-seed values
    per_seed = pd.read_csv(out / "results_per_seed.csv")
    assert sorted(set(per_seed["seed"])) == [5, 6]
    shallow = per_seed[per_seed["model"] == "shallow[content]"]["ndcg@50"]
    row = table.set_index("model").loc["shallow[content]"]
    assert row["ndcg@50"] == pytest.approx(shallow.mean()) and row["seeds"] == 2
    assert row["ndcg@50_std"] == pytest.approx(shallow.std(ddof=1))
    assert np.isnan(table.set_index("model").loc["ease", "ndcg@50_std"])

    # paired tests: shallow against shallow-random, knn (no random-init row) against popularity
    tests = pd.read_csv(out / "significance.csv")
    ndcg = tests[tests["metric"] == "ndcg@50"].set_index("model")["baseline"].to_dict()
    assert ndcg == {"knn[content]": "popularity", "shallow[content]": "shallow-random"}
    assert (tests["t_p_holm"] >= tests["t_p"]).all()
    markdown = (out / "results.md").read_text()
    assert "knn has no random-init counterpart" in markdown and "Holm" in markdown and "(sd " in markdown

    assert (out / "ndcg50.png").read_bytes()[:8] == PNG

    # the cold table: knn places cold items, popularity and the random-init row cannot
    cold = pd.read_csv(out / "cold.csv").set_index("model")
    assert list(cold.index) == rows
    assert cold.loc["knn[content]", "hit_rate@50"] > 0
    for blind in ("popularity", "ease", "shallow-random"):
        assert cold.loc[blind, ["hit_rate@50", "recall@50", "ndcg@50"]].eq(0).all()
    cold_md = (out / "cold.md").read_text()
    assert "cosine of its embedding" in cold_md and "0 by construction" in cold_md


def test_a_missing_backend_says_how_to_make_it(corpus, tmp_path, capsys):
    assert bench(corpus, tmp_path / "x", "--backends", "content,musicnn-msd", "--models", "knn") == 1
    said = capsys.readouterr().out
    command = f"tunespace embed --backend musicnn-msd --data {corpus} --out {corpus / 'emb' / 'musicnn-msd'}"
    assert "no embeddings for backend 'musicnn-msd'" in said and command in said


def test_unfinished_embeddings_are_refused_with_the_command_to_resume(corpus, tmp_path, capsys):
    import json
    import shutil

    partial = corpus / "emb" / "partial"
    partial.mkdir(exist_ok=True)
    shutil.copy(corpus / "emb" / "content" / "shard-00000.parquet", partial / "shard-00000.parquet")
    (partial / "manifest.json").write_text(json.dumps({"backend": "partial", "tracks": 120, "shard_size": 50}))
    assert bench(corpus, tmp_path / "x", "--backends", "partial", "--models", "knn") == 1
    said = capsys.readouterr().out
    assert "unfinished (1 of 3 shards)" in said and f"tunespace embed --backend partial --data {corpus}" in said

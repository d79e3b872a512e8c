"""`tunespace benchmark recsys --backends ... --seeds N`: the study's Table 3 as one command, on a tiny folder, with
every content row also popularity-aware (+pop) unless switched off."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tunespace.cli.main import main
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset
from tunespace.evaluation.significance import holm

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
    rows = ["popularity", "ease", "knn[content]", "knn+pop[content]", "shallow-random", "shallow[content]",
            "shallow+pop[content]"]
    table = pd.read_csv(out / "results.csv")
    assert list(table["model"]) == rows
    assert list(table["variant"]) == ["reference", "reference", "content", "content +pop", "random init", "content",
                                      "content +pop"]
    for metric in ("hit_rate@10", "recall@10", "ndcg@10", "hit_rate@50", "recall@50", "ndcg@50"):  # every --k
        assert ((table[f"{metric}_low"] <= table[metric]) & (table[metric] <= table[f"{metric}_high"])).all()
    assert (table["split_seeds"] == 1).all() and table["ndcg@50_split_sd"].isna().all()

    # per-seed rows, and the table's mean and sd are those of the per-seed values
    per_seed = pd.read_csv(out / "results_per_seed.csv")
    assert sorted(set(per_seed["seed"])) == [5, 6] and set(per_seed["split_seed"]) == {42}
    shallow = per_seed[per_seed["model"] == "shallow[content]"]["ndcg@50"]
    row = table.set_index("model").loc["shallow[content]"]
    assert row["ndcg@50"] == pytest.approx(shallow.mean()) and row["seeds"] == 2
    assert row["ndcg@50_std"] == pytest.approx(shallow.std(ddof=1))
    assert np.isnan(table.set_index("model").loc["ease", "ndcg@50_std"])
    # trained rows say how many epochs they ran and which they kept; the others leave it empty
    trained = per_seed[per_seed["model"].str.startswith("shallow")]
    assert (trained["epochs_run"] == 1).all() and (trained["best_epoch"] == 1).all()
    assert per_seed.loc[per_seed["model"] == "ease", "epochs_run"].isna().all()

    # paired tests: shallow (raw and +pop) against shallow-random, knn (no random-init row) against popularity; a
    # second family, every row against EASE; then each +pop row against popularity and against its raw row
    tests = pd.read_csv(out / "significance.csv")
    ndcg = tests[tests["metric"] == "ndcg@50"]
    twins = ndcg[ndcg["baseline_kind"] == "random-init"].set_index("model")["baseline"].to_dict()
    assert twins == {"knn[content]": "popularity", "shallow[content]": "shallow-random",
                     "shallow+pop[content]": "shallow-random"}
    references = ndcg[ndcg["baseline_kind"] == "reference"]
    assert list(references["model"]) == rows[:1] + rows[2:]
    assert set(references["baseline"]) == {"ease"}
    for kind, baselines in (("popularity", ["popularity", "popularity"]), ("raw", ["knn[content]", "shallow[content]"])):
        family = ndcg[ndcg["baseline_kind"] == kind]
        assert list(family["model"]) == ["knn+pop[content]", "shallow+pop[content]"]
        assert list(family["baseline"]) == baselines
    for _, family in tests.groupby(["baseline_kind", "metric"]):  # Holm within each family and metric
        np.testing.assert_allclose(family["t_p_holm"], holm(family["t_p"].to_numpy()))
    assert set(tests["metric"]) == {f"{m}@{k}" for m in ("hit_rate", "recall", "ndcg") for k in (10, 50)}
    assert (tests["t_p_holm"] >= tests["t_p"]).all() and (tests["sign_agreement"] <= tests["split_seeds"]).all()
    markdown = (out / "results.md").read_text()
    assert "knn has no random-init counterpart" in markdown and "Holm" in markdown and "(sd " in markdown
    assert "against ease, the strongest reference" in markdown and "ndcg@10" in markdown
    assert "raw: each +pop row against its raw row" in markdown and "| knn+pop[content] |" in markdown

    # every beta's validation figure; one chosen per row, the best (ties to the smaller beta), in every table
    weights = pd.read_csv(out / "popularity_weights.csv")
    assert list(weights.columns) == ["row", "set", "model", "beta", "validation_ndcg@50", "split_seeds", "chosen"]
    assert list(weights.groupby("row", sort=False).size().items()) == [("knn+pop[content]", 18),
                                                                       ("shallow+pop[content]", 18)]
    betas = {}
    for row, grid in weights.groupby("row"):
        best = grid["validation_ndcg@50"].max()
        betas[row] = grid.loc[grid["validation_ndcg@50"] >= best - 1e-12, "beta"].min()
        assert grid.loc[grid["chosen"], "beta"].tolist() == [betas[row]]
    assert table.set_index("model")["beta"].dropna().to_dict() == pytest.approx(betas)
    section = markdown.split("## Popularity-aware rows")[1].split("## ")[0]
    assert "validation users alone" in section and "popularity_weights.csv" in section
    assert all(f"| {row} | {row.replace('+pop', '')} | {beta:.4g} |" in section for row, beta in betas.items())

    # every setting, defaults included, in results.md and settings.json
    settings = json.loads((out / "settings.json").read_text())
    assert settings["ks"] == [10, 50] and settings["training_seeds"] == [5, 6] and settings["split_seeds"] == [42]
    assert settings["split"]["validation_ratio"] == 0.5 and settings["split"]["cutoff"] == SYNTHETIC_CUTOFF
    models = settings["models"]
    assert models["ease"]["params"] == {"l2": 500.0} and models["knn[content]"]["params"] == {"standardize": True}
    assert models["shallow[content]"]["params"]["epochs"] == 1 and models["shallow[content]"]["params"]["lr"] == 1e-3
    assert models["shallow-random"]["params"]["batch_size"] == 256 and models["shallow-random"]["params"]["dim"] == 64
    assert models["shallow[content]"]["fitted"] == "once per training seed" and models["ease"]["fitted"] == "once"
    assert settings["popularity_aware"]["betas"] == pytest.approx(betas) and settings["popularity_aware"]["enabled"]
    assert len(settings["popularity_aware"]["weights"]) == 18
    assert settings["popularity_aware"]["chosen_on"] == "validation ndcg@50"
    aware = models["shallow+pop[content]"]
    assert aware["fitted"].startswith("with shallow[content]") and aware["seeded"] and aware["early_stopping"]
    assert aware["params"]["base"] == "shallow" and aware["params"]["weight"] == betas["shallow+pop[content]"]
    assert aware["popularity_beta"] == betas["shallow+pop[content]"] and models["ease"]["popularity_beta"] is None
    assert "## Settings" in markdown and "l2=500.0" in markdown and "patience=16" in markdown
    assert "## Epochs" in markdown

    # provenance: the command, the settings and the headline figures
    record = json.loads((out / "provenance.json").read_text())
    assert record["status"] == "ok" and record["settings"]["ks"] == [10, 50]
    assert record["figures"]["ease"]["ndcg@50"] == pytest.approx(table.set_index("model").loc["ease", "ndcg@50"])
    assert record["figures"]["popularity_betas"] == pytest.approx(betas)
    assert set(pd.read_parquet(out / "per_user.parquet")["model"]) == set(rows)

    assert (out / "ndcg50.png").read_bytes()[:8] == PNG

    # the cold table: knn places cold items, popularity and the random-init row cannot; +pop rows as they come
    cold = pd.read_csv(out / "cold.csv").set_index("model")
    assert list(cold.index) == rows
    assert cold.loc["knn[content]", "hit_rate@50"] > 0 and "ndcg@10" in cold
    assert cold["beta"].dropna().to_dict() == pytest.approx(betas)
    assert cold.loc["knn+pop[content]", "cold_items_placed"] == cold.loc["knn[content]", "cold_items_placed"]
    assert set(pd.read_csv(out / "cold_per_seed.csv")["model"]) == set(rows)
    for blind in ("popularity", "ease", "shallow-random"):
        assert cold.loc[blind, ["hit_rate@50", "recall@50", "ndcg@50"]].eq(0).all()
        assert cold.loc[blind, "cold_items_placed"] == 0
    n_cold = settings["split_stats"]["cold_items"]
    assert cold.loc["knn[content]", "cold_items_placed"] == n_cold
    cold_md = (out / "cold.md").read_text()
    assert "cosine of its embedding" in cold_md and "0 by construction" in cold_md
    assert f"| {n_cold} of {n_cold} |" in cold_md and f"content {n_cold} of {n_cold}" in cold_md
    assert "| shallow+pop[content] |" in cold_md and "A +pop row adds beta" in cold_md


def test_no_popularity_aware_rows_when_switched_off(corpus, tmp_path):
    out = tmp_path / "raw"
    assert bench(corpus, out, "--backends", "content", "--models", "knn", "--k", "20", "--no-popularity-aware") == 0
    assert list(pd.read_csv(out / "results.csv")["model"]) == ["popularity", "ease", "knn[content]"]
    assert "beta" not in pd.read_csv(out / "results.csv") and "beta" not in pd.read_csv(out / "cold.csv")
    assert not (out / "popularity_weights.csv").exists()
    assert set(pd.read_csv(out / "significance.csv")["baseline_kind"]) == {"random-init", "reference"}
    assert "+pop" not in (out / "results.md").read_text()
    assert json.loads((out / "settings.json").read_text())["popularity_aware"] == {"enabled": False}


@pytest.mark.parametrize("ks", ["10", "5,20,30"])
def test_every_k_is_a_column_and_the_largest_is_the_headline(corpus, tmp_path, ks):
    out = tmp_path / "k"
    assert bench(corpus, out, "--backends", "content", "--models", "knn", "--k", ks) == 0
    cutoffs = [int(k) for k in ks.split(",")]
    expected = [f"{m}@{k}" for k in cutoffs for m in ("hit_rate", "recall", "ndcg")]
    for name in ("results.csv", "cold.csv"):
        table = pd.read_csv(out / name)
        assert [c for c in table.columns if "@" in c and "_" not in c.split("@")[1] and not c.endswith(
            ("_low", "_high", "_std", "_sd"))] == expected
    markdown = (out / "results.md").read_text()
    assert all(f" {metric} |" in markdown for metric in expected)
    tests = pd.read_csv(out / "significance.csv")
    assert set(tests["metric"]) == set(expected)
    assert (out / f"ndcg{max(cutoffs)}.png").exists()
    assert json.loads((out / "settings.json").read_text())["headline_metric"] == f"ndcg@{max(cutoffs)}"


def test_repeated_split_seeds(corpus, tmp_path, single_thread):
    out = tmp_path / "splits"
    assert bench(corpus, out, "--backends", "content", "--models", "knn,shallow", "--epochs", "1", "--k", "20",
                 "--split-seeds", "3", "--split-seed", "7") == 0
    table = pd.read_csv(out / "results.csv").set_index("model")
    per_split = pd.read_csv(out / "results_per_split_seed.csv")
    assert sorted(set(per_split["split_seed"])) == [7, 8, 9]
    for model, rows in per_split.groupby("model"):
        assert table.loc[model, "ndcg@20"] == pytest.approx(rows["ndcg@20"].mean())
        assert table.loc[model, "ndcg@20_split_sd"] == pytest.approx(rows["ndcg@20"].std(ddof=1))
        assert table.loc[model, "split_seeds"] == 3
    # another partition, other test users: the split seeds differ
    assert per_split[per_split["model"] == "ease"]["ndcg@20"].nunique() == 3
    per_seed = pd.read_csv(out / "results_per_seed.csv")
    assert len(per_seed[per_seed["model"] == "shallow[content]"]) == 3  # refitted per split seed
    assert len(per_seed[per_seed["model"] == "shallow+pop[content]"]) == 3
    # one beta per row over the three split seeds, the same in every split seed's row
    weights = pd.read_csv(out / "popularity_weights.csv")
    assert (weights["split_seeds"] == 3).all() and weights.groupby("row")["chosen"].sum().eq(1).all()
    assert set(per_split.loc[per_split["model"].str.contains("+pop", regex=False), "beta"]) <= set(
        weights.loc[weights["chosen"], "beta"])
    tests = pd.read_csv(out / "significance.csv")
    assert set(tests["split_seeds"]) == {3} and tests["sign_agreement"].between(0, 3).all()
    assert {"popularity", "raw"} <= set(tests["baseline_kind"])
    each = pd.read_csv(out / "significance_per_split_seed.csv")
    assert sorted(set(each["split_seed"])) == [7, 8, 9] and len(each) == 3 * len(tests)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["split_seeds"] == [7, 8, 9]
    assert settings["models"]["shallow[content]"]["fitted"] == "once per split seed and training seed"
    assert settings["models"]["ease"]["fitted"] == "once"
    markdown = (out / "results.md").read_text()
    assert "split sd" in markdown and "same sign" in markdown and "split seeds 7..9" in markdown


def test_cold_items_without_vectors_are_reported_as_unplaced(corpus, tmp_path):
    from tunespace.data.dataset import Dataset
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.data.splits import SplitConfig, temporal_split

    split = temporal_split(Dataset.load(corpus).interactions, SplitConfig(cutoff=SYNTHETIC_CUTOFF, seed=42))
    cold_ids = split.items.ids[split.n_warm_items:]
    content = ItemEmbeddings.load(corpus / "emb" / "content" / "shard-00000.parquet")
    keep = ~np.isin(content.ids, cold_ids)
    warm_only = tmp_path / "warm.parquet"
    ItemEmbeddings(ids=content.ids[keep], vectors=content.vectors[keep]).save(warm_only)
    out = tmp_path / "cold"
    assert bench(corpus, out, "--embeddings", str(warm_only), "--backends", "warm", "--models", "knn") == 0
    cold = pd.read_csv(out / "cold.csv").set_index("model")
    assert cold.loc["knn[warm]", "cold_items_placed"] == 0
    cold_md = (out / "cold.md").read_text()
    assert f"0 of {len(cold_ids)} (no embedding)" in cold_md and f"warm 0 of {len(cold_ids)}" in cold_md
    assert "No row placed a single cold item" in cold_md


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


def test_evaluate_writes_every_k_the_settings_and_a_provenance_record(corpus, tmp_path):
    split_dir, out = tmp_path / "split", tmp_path / "results"
    assert main(["split", str(corpus), "--cutoff", SYNTHETIC_CUTOFF, "--out", str(split_dir)]) == 0
    assert main(["evaluate", str(split_dir), "--models", "popularity,ease,itemknn", "--k", "5,20",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "results.csv")
    assert {"hit_rate@5", "ndcg@5", "recall@20", "ndcg@20"} <= set(table.columns)
    assert set(pd.read_csv(out / "significance.csv")["metric"]) == {"ndcg@20"}
    settings = json.loads((out / "settings.json").read_text())
    assert settings["ks"] == [5, 20] and settings["models"]["itemknn"]["params"] == {"neighbours": 100, "shrink": 0.0}
    assert settings["split"]["seed"] == 42
    markdown = (out / "results.md").read_text()
    assert " ndcg@5 |" in markdown and "neighbours=100" in markdown
    record = json.loads((out / "provenance.json").read_text())
    assert record["command"] and record["settings"]["ks"] == [5, 20] and "ndcg@20" in record["figures"]["ease"]
    assert main(["evaluate", str(split_dir), "--models", "popularity", "--k", "ten"]) != 0


def test_cold_items_ranked_alone_and_their_per_user_values(corpus, tmp_path):
    """--cold-ranking new ranks the cold pairs among the cold items only: popularity, which cannot place them, still
    scores 0, and a content row can only do better than among every item; per-user cold values are written."""
    mixed, alone = tmp_path / "mixed", tmp_path / "alone"
    assert bench(corpus, mixed, "--backends", "content", "--models", "knn", "--no-popularity-aware") == 0
    assert bench(corpus, alone, "--backends", "content", "--models", "knn", "--no-popularity-aware",
                 "--cold-ranking", "new") == 0
    among_all = pd.read_csv(mixed / "cold.csv").set_index("model")
    among_new = pd.read_csv(alone / "cold.csv").set_index("model")
    assert among_new.loc["popularity", "ndcg@50"] == 0
    assert among_new.loc["knn[content]", "hit_rate@50"] >= among_all.loc["knn[content]", "hit_rate@50"]
    assert json.loads((alone / "settings.json").read_text())["cold_ranking"] == "new"
    assert "cold items alone" in (alone / "cold.md").read_text()
    assert "--cold-ranking new" in (mixed / "cold.md").read_text()
    per_user = pd.read_parquet(alone / "cold_per_user.parquet")
    knn = per_user[per_user["model"] == "knn[content]"]
    assert knn["ndcg@50"].mean() == pytest.approx(among_new.loc["knn[content]", "ndcg@50"])
    assert bench(corpus, tmp_path / "bad", "--models", "knn", "--cold-ranking", "warm") == 2

"""Gather a listener-model sweep (bench/htcl_listener_sweep.sh) into one table and one plot per corpus.

    python bench/htcl_sweep_report.py RESULTS [RESULTS ...]

Each RESULTS folder holds latent-<w>/ folders with `htcl evaluate`'s CSVs. With `--work WORK` (the sweep's work
folder, one per RESULTS) it also writes popularity_diagnostics.csv: how much each set's raw KNN follows popularity.
Written into each: sweep.csv (one row
per latent weight and set: warm and cold test NDCG@50 raw and popularity-aware, the chosen beta, text-to-audio
R@10 on the semantic-test tracks, the +pop difference to the popularity-aware control and to stage 1 + pop with
Holm-corrected p across split seeds), sweep.md (the same as Markdown, with what was chosen on validation users)
and sweep.png (each variant's +pop gain over the +pop control against the latent weight). The figures are only
read from the evaluation files; nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from tunespace.reports.tables import to_markdown

STAGE1_NAMES = ("s1",)


def _label_set(label: str) -> tuple[str, str]:
    """("knn+pop", "run") from "knn+pop[run]"; ("popularity", "") for the reference row."""
    match = re.fullmatch(r"(.+)\[(.+)\]", label)
    return (match.group(1), match.group(2)) if match else (label, "")


def _test(tests: pd.DataFrame, part: str, model: str, baseline: str) -> tuple[float, float]:
    rows = tests[(tests["part"] == part) & (tests["split_seed"].astype(str) == "across")
                 & (tests["model"] == model) & (tests["baseline"] == baseline)]
    if rows.empty:
        return float("nan"), float("nan")
    return float(rows["mean_difference"].iloc[0]), float(rows["t_p_holm"].iloc[0])


def latent_table(folder: Path) -> pd.DataFrame:
    """One row per evaluated set of one latent weight's evaluation folder."""
    build = json.loads((folder / "build.json").read_text())
    weight = float(build["listener_config"]["latent_weight"])
    warm = pd.read_csv(folder / "preference.csv")
    cold = pd.read_csv(folder / "cold.csv") if (folder / "cold.csv").exists() else pd.DataFrame(columns=warm.columns)
    semantic = pd.read_csv(folder / "semantic.csv")
    semantic = semantic[semantic["part"] == "test"].set_index("run")
    tests = pd.read_csv(folder / "significance.csv")
    selection = pd.read_csv(folder / "selection.csv").set_index("run")
    stage1 = selection.index[selection["role"] == "stage-1 reference"][0]
    provenance = json.loads((folder / "provenance.json").read_text())
    control_name = provenance["settings"]["control"]
    rows = []
    for label in warm["model"]:
        model, name = _label_set(label)
        if model.endswith("+pop") or not name:
            continue
        aware = f"{model}+pop[{name}]"

        def figure(frame: pd.DataFrame, row: str, column: str = "ndcg@50") -> float:
            found = frame[frame["model"] == row]
            return float(found[column].iloc[0]) if len(found) and column in found else float("nan")

        gain, p = _test(tests, "test", aware, f"{model}+pop[{control_name}]")
        over_stage1, p_stage1 = _test(tests, "test", aware, f"{model}+pop[{stage1}]")
        cold_gain, cold_p = _test(tests, "cold_test", f"{model}[{name}]", f"{model}[{control_name}]")
        rows.append({
            "latent_weight": weight, "set": name, "model": model,
            "role": selection.loc[name, "role"] if name in selection.index else "fixed arm",
            "selected": bool(selection.loc[name, "selected"]) if name in selection.index else False,
            "validation_ndcg@50_pop": float(selection.loc[name, "validation_ndcg@50"])
            if name in selection.index else float("nan"),
            "ndcg@50": figure(warm, label), "ndcg@50_pop": figure(warm, aware), "beta": figure(warm, aware, "beta"),
            "pop_gain_vs_control": gain, "pop_gain_vs_control_p_holm": p,
            "pop_gain_vs_stage1": over_stage1, "pop_gain_vs_stage1_p_holm": p_stage1,
            "cold_ndcg@50": figure(cold, label), "cold_ndcg@50_pop": figure(cold, aware),
            "cold_gain_vs_control": cold_gain, "cold_gain_vs_control_p_holm": cold_p,
            "t2a_R@10_test": float(semantic.loc[name, "t2a_R@10"]) if name in semantic.index else float("nan"),
        })
    popularity = warm[warm["model"] == "popularity"]
    if len(popularity):
        rows.append({"latent_weight": weight, "set": "popularity", "model": "popularity", "role": "reference",
                     "selected": False, "ndcg@50": float(popularity["ndcg@50"].iloc[0])})
    return pd.DataFrame(rows)


def popularity_diagnostics(work: Path, cutoff: str = "2025-01-01", split_seed: int = 42) -> pd.DataFrame:
    """How much each embedding set's raw KNN follows popularity, per latent weight (the issue's two measures): the
    mean over test users of the Spearman correlation between the user's cosines and the items' log(1 + train
    plays), and the mean popularity percentile (0 least, 1 most played) of the user's raw top-50 (seen excluded)."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.stats import rankdata

    from tunespace.data.dataset import Dataset
    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.data.splits import SplitConfig, temporal_split

    rows = []
    for data in sorted(work.glob("latent-*")):
        if not (data / "eval").exists():
            continue
        weight = float(json.loads((data / "build.json").read_text())["listener_config"]["latent_weight"])
        split = temporal_split(Dataset.load(data).interactions, SplitConfig(cutoff=cutoff, seed=split_seed))
        train = split.train_matrix()
        plays = np.log1p(np.asarray(train.matrix.sum(axis=0)).ravel())
        percentile = (rankdata(plays) - 1) / max(len(plays) - 1, 1)
        users = train.users.index_of(pd.Series(split.part("test")["user_id"].astype(str).unique()))
        seen = train.binary()[users]
        for path in sorted((data / "eval").glob("*.parquet")):
            if path.stem == "semantic":
                continue
            vectors = ItemEmbeddings.load(path).aligned(train.items).astype(np.float64)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            profiles = np.asarray(sp.csr_matrix(seen) @ vectors)
            profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
            cosines = profiles @ vectors.T
            ranks = np.apply_along_axis(rankdata, 1, cosines)
            centred = ranks - ranks.mean(axis=1, keepdims=True)
            target = rankdata(plays) - rankdata(plays).mean()
            spearman = (centred @ target) / (np.linalg.norm(centred, axis=1) * np.linalg.norm(target))
            cosines[seen.toarray() > 0] = -np.inf
            top = np.argpartition(-cosines, 50, axis=1)[:, :50]
            rows.append({"latent_weight": weight, "set": path.stem,
                         "cosine_plays_spearman": float(np.nanmean(spearman)),
                         "top50_popularity_percentile": float(percentile[top].mean()), "users": len(users)})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    variants = table[(table["role"].isin(["candidate"])) | (table["set"].isin(STAGE1_NAMES))]
    for name, rows in variants.groupby("set"):
        rows = rows.sort_values("latent_weight")
        line, = axis.plot(rows["latent_weight"], rows["pop_gain_vs_control"], marker="o", label=name)
        significant = rows[rows["pop_gain_vs_control_p_holm"] < 0.05]
        axis.scatter(significant["latent_weight"], significant["pop_gain_vs_control"], s=90,
                     facecolors="none", edgecolors=line.get_color())
    axis.axhline(0, color="grey", lw=0.8)
    axis.set_xlabel("latent weight of the simulated listeners (audio-carried taste)")
    axis.set_ylabel("warm test NDCG@50, +pop minus control+pop")
    axis.set_title(title + " (circled: Holm p < 0.05)", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--work", type=Path, action="append", default=[],
                        help="The sweep's WORK folder for each RESULTS (same order): adds popularity_diagnostics.csv "
                             "from the evaluations' embeddings")
    args = parser.parse_args()
    for index, results in enumerate(args.results):
        if index < len(args.work):
            diagnostics = popularity_diagnostics(args.work[index])
            diagnostics.to_csv(results / "popularity_diagnostics.csv", index=False)
            print(diagnostics.round(3).to_string(index=False))
        folders = sorted(p for p in results.glob("latent-*") if (p / "preference.csv").exists())
        if not folders:
            raise SystemExit(f"{results}: no latent-*/preference.csv")
        table = pd.concat([latent_table(folder) for folder in folders], ignore_index=True)
        table.to_csv(results / "sweep.csv", index=False)
        shown = table.drop(columns=["model"]).round(4).astype(object)
        for column in [c for c in table if c.endswith("_p_holm")]:
            shown[column] = table[column].map(lambda p: "" if pd.isna(p) else f"{p:.1e}")
        chosen = table[table["selected"]][["latent_weight", "set"]].itertuples(index=False)
        lines = [f"# Listener-model sweep: {results.name}", "",
                 "Chosen on validation users (knn+pop NDCG@50, semantic floor): "
                 + ", ".join(f"latent {w:g}: {s}" for w, s in chosen), "",
                 "Warm and cold test NDCG@50 raw and popularity-aware (+pop, beta on validation users); gains are "
                 "paired over users across split seeds, Holm-corrected within each evaluation's family.", "",
                 to_markdown(shown), ""]
        (results / "sweep.md").write_text("\n".join(lines), encoding="utf-8")
        plot(table, results / "sweep.png", results.name)
        print(f"wrote {results / 'sweep.csv'}, sweep.md, sweep.png")


if __name__ == "__main__":
    main()

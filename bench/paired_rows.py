"""Paired tests between rows of one `benchmark recsys` folder that its own families do not hold (content rows against
each other), computed as the benchmark computes its own: each test user's value averaged over seeds and over the
split seeds in which the user was a test user, then `paired_test` (t and Wilcoxon), Holm within each model family.

    python bench/paired_rows.py RESULTS --rows clamp-abc,clamp-midi --against htcl,musicnn-msd [--metric ndcg@50]

For every model family present (knn, shallow, bert4rec) and each of raw and +pop, every `--rows` backend is tested
against every `--against` backend. Writes RESULTS/paired_rows.csv and prints it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tunespace.evaluation.significance import holm, paired_test


def user_means(per_user: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(user x model) of the metric, averaged over training seeds and split seeds per user."""
    return per_user.groupby(["model", "user_id"])[metric].mean().unstack("model")


def paired_rows(folder: Path, rows: list[str], against: list[str], metric: str) -> pd.DataFrame:
    values = user_means(pd.read_parquet(folder / "per_user.parquet"), metric)
    out = []
    for family in ("knn", "shallow", "bert4rec"):
        for variant in (family, f"{family}+pop"):
            for row in rows:
                for baseline in against:
                    model, reference = f"{variant}[{row}]", f"{variant}[{baseline}]"
                    if model not in values or reference not in values:
                        continue
                    both = values[[model, reference]].dropna()
                    record = {"family": family, "model": model, "baseline": reference, "users": len(both),
                              "metric": metric}
                    for method in ("t", "wilcoxon"):
                        test = paired_test(both[model].to_numpy(), both[reference].to_numpy(), method)
                        record["mean_difference"] = test.mean_difference
                        record[f"{method}_p"] = test.p_value
                    out.append(record)
    table = pd.DataFrame(out)
    for method in ("t", "wilcoxon"):
        table[f"{method}_p_holm"] = table.groupby("family")[f"{method}_p"].transform(lambda p: holm(p.to_numpy()))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", required=True)
    parser.add_argument("--against", required=True)
    parser.add_argument("--metric", default="ndcg@50")
    args = parser.parse_args()
    table = paired_rows(args.folder, args.rows.split(","), args.against.split(","), args.metric)
    table.to_csv(args.folder / "paired_rows.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()

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
from paired_models import paired_models


def paired_rows(folder: Path, rows: list[str], against: list[str], metric: str) -> pd.DataFrame:
    per_user = pd.read_parquet(folder / "per_user.parquet")
    present = set(per_user["model"].astype(str))
    tables = []
    for family in ("knn", "shallow", "bert4rec"):
        pairs = [(f"{variant}[{row}]", f"{variant}[{baseline}]") for variant in (family, f"{family}+pop")
                 for row in rows for baseline in against]
        pairs = [pair for pair in pairs if set(pair) <= present]
        if pairs:  # Holm within each family
            tables.append(paired_models(per_user, pairs, metric).assign(family=family))
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "family", table.pop("family"))
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

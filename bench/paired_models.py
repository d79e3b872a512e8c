"""Paired tests between named rows of one `benchmark recsys` folder, on its warm table (per_user.parquet) or its
cold-item table (cold_per_user.parquet): for rows the benchmark's own families do not pair, such as a hybrid
against content KNN over the same embeddings on cold items. Values are averaged per user over training seeds and
split seeds, as the benchmark does; t and Wilcoxon (`paired_test`), Holm over all pairs given.

    python bench/paired_models.py RESULTS --pair "ease-content[htcl]=knn[htcl]" --pair ... [--cold] [--metric ndcg@50]

Writes RESULTS/paired_models[_cold].csv and prints it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tunespace.evaluation.significance import holm, paired_test


def paired_models(per_user: pd.DataFrame, pairs: list[tuple[str, str]], metric: str) -> pd.DataFrame:
    values = per_user.groupby(["model", "user_id"])[metric].mean().unstack("model")
    missing = sorted({name for pair in pairs for name in pair} - set(values.columns))
    if missing:
        raise SystemExit(f"rows not in the results: {', '.join(missing)}; present: {', '.join(values.columns)}")
    records = []
    for model, baseline in pairs:
        both = values[[model, baseline]].dropna()
        record = {"model": model, "baseline": baseline, "users": len(both), "metric": metric,
                  "model_mean": both[model].mean(), "baseline_mean": both[baseline].mean()}
        for method in ("t", "wilcoxon"):
            test = paired_test(both[model].to_numpy(), both[baseline].to_numpy(), method)
            record["mean_difference"] = test.mean_difference
            record[f"{method}_p"] = test.p_value
        records.append(record)
    table = pd.DataFrame(records)
    for method in ("t", "wilcoxon"):
        table[f"{method}_p_holm"] = holm(table[f"{method}_p"].to_numpy())
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--pair", action="append", required=True, help="MODEL=BASELINE, repeatable")
    parser.add_argument("--cold", action="store_true", help="test the cold-item table instead of the warm one")
    parser.add_argument("--metric", default="ndcg@50")
    args = parser.parse_args()
    pairs = [tuple(pair.split("=", 1)) for pair in args.pair]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit("each --pair is MODEL=BASELINE")
    name = "cold_per_user.parquet" if args.cold else "per_user.parquet"
    table = paired_models(pd.read_parquet(args.folder / name), pairs, args.metric)  # type: ignore[arg-type]
    table.to_csv(args.folder / f"paired_models{'_cold' if args.cold else ''}.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()

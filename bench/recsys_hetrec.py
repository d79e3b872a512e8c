"""Benchmark of the foundation: hetrec results, evaluation throughput against a naive loop, and peak memory.

    python bench/recsys_hetrec.py                       # all three parts
    python bench/recsys_hetrec.py --skip-memory         # the quick parts only
    python bench/recsys_hetrec.py --part memory --memory-users 100000 --memory-items 1000000

1. hetrec2011-lastfm-2k (read from ../shared/data; skipped cleanly when absent): train before 2010-01-01, test
   pairs first seen from 2010-07-01, test users split 50/50 with seed 42; Popularity, ItemKNN, EASE and content
   KNN on tag-text embeddings; HR/Recall/NDCG@50 with 95% intervals.
2. Evaluation throughput in users/s: tunespace's chunked full ranking + metrics against a straightforward numpy
   loop over users (matrix-vector scores, mask seen items, full argsort, NDCG) and its tuned variant
   (argpartition, then sort the top k), on the same inputs, in one run; the ratios are printed.
3. Peak resident memory of evaluating content KNN on a synthetic 100k users x 1M items x 64-d problem, measured
   in a child process (ru_maxrss).

Each run writes a provenance record (command, commit, packages, machine, load, settings and the figures printed)
to `--results` (default bench/results), beside the hetrec tables (hetrec.csv, hetrec.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.data.catalog import IdMap
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.data.interactions import InteractionMatrix
from tunespace.data.splits import SplitConfig, temporal_split
from tunespace.evaluation.benchmark import model_specs, run_benchmark
from tunespace.evaluation.evaluate import evaluate
from tunespace.provenance import bench_record_path, recorded_run
from tunespace.recommenders import ContentKNN
from tunespace.reports.tables import formatted, results_frame, to_markdown, write_results

ROOT = Path(__file__).resolve().parents[1]
HETREC = ROOT.parent / "shared" / "data" / "hetrec2011-lastfm-2k"
RESULTS = ROOT / "bench" / "results"


def hetrec_benchmark(folder: Path, results: Path) -> dict:
    from tunespace.sources import load_source

    config = SplitConfig(cutoff="2010-01-01", test_start="2010-07-01", validation_ratio=0.5, seed=42)
    started = time.perf_counter()
    source = load_source("hetrec", folder, cutoff=config.cutoff, seed=config.seed)
    split = temporal_split(source.dataset.interactions, config)
    print(f"hetrec loaded and split in {time.perf_counter() - started:.1f}s: {split.stats}")
    run = run_benchmark(split, model_specs(["popularity", "itemknn", "ease", "knn"], source.embeddings),
                        ks=(10, 50))
    frame = results_frame(run.results)
    print(to_markdown(formatted(frame)))
    for label in run.results:
        print(f"{label}: fit {run.fit_seconds[label]:.2f}s, evaluate {run.evaluate_seconds[label]:.2f}s")
    tables = write_results(frame, results, stem="hetrec", preamble=f"# hetrec2011-lastfm-2k\n\n{source.note}\n\n")
    return {"split": split.stats, "results": frame.to_dict("records"), "fit_seconds": run.fit_seconds,
            "evaluate_seconds": run.evaluate_seconds, "tables": [str(path) for path in tables]}


def naive_loop(items: np.ndarray, users: np.ndarray, seen: list[np.ndarray], relevant: list[set[int]],
               k: int, partial: bool) -> np.ndarray:
    """The per-user evaluation a researcher writes first: full argsort (partial=False), or argpartition then a
    sort of the top k (partial=True, the tuned variant)."""
    unit_items = items / np.linalg.norm(items, axis=1, keepdims=True)
    ndcg = np.zeros(len(users))
    for row, user in enumerate(users):
        scores = unit_items @ (user / np.linalg.norm(user))
        scores[seen[row]] = -np.inf
        if partial:
            top = np.argpartition(-scores, k)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
        else:
            top = np.argsort(-scores, kind="stable")[:k]
        gains = np.array([1.0 if item in relevant[row] else 0.0 for item in top])
        ideal = (1.0 / np.log2(np.arange(2, min(k, len(relevant[row])) + 2))).sum()
        ndcg[row] = (gains / np.log2(np.arange(2, k + 2))).sum() / ideal
    return ndcg


def synthetic_problem(n_users: int, n_items: int, dim: int, seen_per_user: int, relevant_per_user: int,
                      seed: int = 0) -> tuple[ContentKNN, pd.DataFrame]:
    """A fitted content KNN over random embeddings and random train/test pairs (ids are strings, as in real data)."""
    rng = np.random.default_rng(seed)
    users = IdMap([f"u{i}" for i in range(n_users)], name="user_id")
    items = IdMap([f"i{i}" for i in range(n_items)], name="track_id")
    picks = rng.integers(0, n_items, (n_users, seen_per_user + relevant_per_user))
    train = pd.DataFrame({"user_id": np.repeat(users.ids, seen_per_user),
                          "track_id": items.ids[picks[:, :seen_per_user].ravel()],
                          "timestamp": pd.Timestamp("2024-01-01", tz="UTC"), "weight": 1.0})
    truth = pd.DataFrame({"user_id": np.repeat(users.ids, relevant_per_user),
                          "track_id": items.ids[picks[:, seen_per_user:].ravel()]})
    matrix = InteractionMatrix.from_frame(train, users, items)
    vectors = rng.standard_normal((n_items, dim)).astype(np.float32)
    model = ContentKNN(embeddings=ItemEmbeddings(ids=items.ids, vectors=vectors), device="cpu",
                       standardize=False).fit(matrix)  # the raw cosine, as the peer loops compute it
    return model, truth


def throughput(n_users: int, n_items: int, naive_users: int, dim: int = 64, k: int = 50) -> dict:
    model, truth = synthetic_problem(n_users, n_items, dim, seen_per_user=20, relevant_per_user=5)
    started = time.perf_counter()
    result = evaluate(model, truth, ks=(k,))
    ours = time.perf_counter() - started
    ours_rate = len(result.per_user) / ours

    # the naive loop on the first `naive_users` users, with the same inputs
    subset = np.arange(naive_users)
    seen = [model._seen.indices[model._seen.indptr[u]:model._seen.indptr[u + 1]] for u in subset]
    truth_idx = model.items.index_of(truth["track_id"])
    user_idx = model.users.index_of(truth["user_id"])
    relevant = [set(truth_idx[user_idx == u].tolist()) for u in subset]
    profiles = model.train_.binary()[subset]
    raw_items = model.embeddings.aligned(model.items)
    means = np.asarray((profiles @ raw_items) / np.maximum(profiles.sum(axis=1), 1))
    print(f"throughput on {n_users} users x {n_items} items x {dim}-d, NDCG@{k}:")
    print(f"  tunespace chunked full ranking:   {ours_rate:,.0f} users/s ({len(result.per_user)} users, {ours:.1f}s)")
    figures = {"problem": {"users": n_users, "items": n_items, "dim": dim, "k": k, "naive_users": naive_users},
               "tunespace_users_per_s": ours_rate, "tunespace_seconds": ours}
    for label, partial in (("numpy loop, argsort", False), ("numpy loop, argpartition", True)):
        started = time.perf_counter()
        naive = naive_loop(raw_items, means, seen, relevant, k, partial)
        naive_rate = naive_users / (time.perf_counter() - started)
        agree = np.abs(naive - result.per_user[f"ndcg@{k}"].to_numpy()[:naive_users]).max()
        print(f"  {label + ':':<32} {naive_rate:,.0f} users/s ({naive_users} users); ratio "
              f"{ours_rate / naive_rate:.1f}x; max |NDCG difference| {agree:.1e}")
        figures[label] = {"users_per_s": naive_rate, "ratio": ours_rate / naive_rate, "max_ndcg_difference": agree}
    return figures


def memory_child(n_users: int, n_items: int, dim: int) -> None:
    started = time.perf_counter()
    model, truth = synthetic_problem(n_users, n_items, dim, seen_per_user=10, relevant_per_user=5)
    built = time.perf_counter() - started
    started = time.perf_counter()
    result = evaluate(model, truth, ks=(10, 50))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"users": len(result.per_user), "items": n_items, "dim": dim, "build_s": built,
                      "evaluate_s": seconds, "peak_bytes": peak,
                      "ndcg@50": float(result.per_user["ndcg@50"].mean())}))


def memory(n_users: int, n_items: int, dim: int) -> dict:
    child = subprocess.run([sys.executable, __file__, "--part", "memory-child", "--memory-users", str(n_users),
                            "--memory-items", str(n_items), "--dim", str(dim)],
                           capture_output=True, text=True, check=True)
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"peak memory, content KNN evaluation of {report['users']:,} users x {report['items']:,} items x "
          f"{report['dim']}-d: {report['peak_bytes'] / 2**30:.2f} GiB (goal < 4 GiB); evaluate "
          f"{report['evaluate_s']:.0f}s = {report['users'] / report['evaluate_s']:,.0f} users/s, build "
          f"{report['build_s']:.0f}s")
    return {**report, "peak_gib": report["peak_bytes"] / 2**30, "users_per_s": report["users"] / report["evaluate_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "hetrec", "throughput", "memory", "memory-child"], default="all")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--hetrec", type=Path, default=HETREC)
    parser.add_argument("--throughput-users", type=int, default=20000)
    parser.add_argument("--throughput-items", type=int, default=100000)
    parser.add_argument("--naive-users", type=int, default=500)
    parser.add_argument("--memory-users", type=int, default=100000)
    parser.add_argument("--memory-items", type=int, default=1000000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for the hetrec tables and this run's provenance record")
    args = parser.parse_args()
    if args.part == "memory-child":
        memory_child(args.memory_users, args.memory_items, args.dim)
        return
    record_path = bench_record_path(__file__, args.results, tag=None if args.part == "all" else args.part)
    with recorded_run(record_path) as record:
        record["settings"] = vars(args)
        figures = record["figures"] = {}
        if args.part in ("all", "hetrec"):
            if args.hetrec.exists():
                figures["hetrec"] = hetrec_benchmark(args.hetrec, args.results)
            else:
                print(f"skipping hetrec: {args.hetrec} not found")
                record["skipped"] = f"hetrec: {args.hetrec} not found"
        if args.part in ("all", "throughput"):
            figures["throughput"] = throughput(args.throughput_users, args.throughput_items, args.naive_users,
                                               args.dim)
        if args.part == "memory" or (args.part == "all" and not args.skip_memory):
            figures["memory"] = memory(args.memory_users, args.memory_items, args.dim)
    print(f"provenance record: {record_path}")


if __name__ == "__main__":
    main()

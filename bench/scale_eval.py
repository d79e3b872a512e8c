"""Full-ranking evaluation at catalogue scale: content KNN over a partitioned split (`tunespace.evaluation.scale`),
exact in one process, exact across Ray tasks, and on ANN (HNSW) candidates re-ranked exactly, each run in its own
process so its peak memory is its own (ru_maxrss; for Ray, the sampled RSS sum of the driver and every process it
started, workers and object store included).

The baseline, at a log pandas holds (`--baseline-split`, e.g. 5M events), is the in-memory path: read the log into
one frame, `temporal_split`, `ContentKNN.fit`, `evaluate`; the partitioned evaluation of the same users must give
identical per-user metrics, and the ratios of time and peak memory are printed. At scale (`--split`, e.g. the 100M
log of bench/scale_data.py, 64-d, about 1M train items) the users are the first `--users` test users by id:
users/s is measured on them and extrapolated to `--target-users` (stated as an extrapolation).

    python bench/scale_eval.py --data /work/runs/scale-eval-data [--users 5000] [--candidates 100,400]

Writes bench/results/scale_eval-<UTC time>.json (command, commit, machine, load, figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.provenance import bench_record_path, load_average, recorded_run

CUTOFF, TEST_END = "2024-12-01", "2025-01-01"
METRICS = ("ndcg@50", "recall@50", "hit_rate@50", "ndcg@10", "recall@10")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tree_rss(root: int) -> int:
    """Summed RSS (bytes) of process `root` and its descendants, read from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += parents.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class TreeSampler:
    """Peak of the summed RSS of this process and all its descendants, sampled every `every` seconds."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.peak = every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(self.every)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _users(split_dir: Path, count: int) -> np.ndarray:
    from tunespace.data.scale import ScaleSplit

    return np.unique(ScaleSplit.load(split_dir).part("test")["user_id"].to_numpy(np.int64))[:count]


def _stage(args: argparse.Namespace) -> dict[str, object]:
    """One measured run in this process; per-user metrics go to `--per-user`."""
    import torch

    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.data.scale import EMBEDDINGS_FILE, ScaleSplit
    from tunespace.evaluation.scale import ItemSpace, ScaleEvalConfig, evaluate_partitioned, evaluate_partitioned_ray

    torch.set_num_threads(args.threads)
    users = _users(args.split, args.users)
    embeddings = ItemEmbeddings.load(args.log / EMBEDDINGS_FILE)
    config = ScaleEvalConfig(ks=(10, 50), candidates=args.candidates[0] or 1)
    out: dict[str, object] = {"users": len(users)}
    started = time.perf_counter()
    if args.stage == "memory":  # the in-memory baseline: one frame, temporal_split, fit, evaluate
        from tunespace.data.schema import INTERACTIONS, validate_table
        from tunespace.data.splits import SplitConfig, temporal_split
        from tunespace.evaluation.evaluate import evaluate
        from tunespace.recommenders.knn import ContentKNN

        frame = pd.concat([pd.read_parquet(p) for p in sorted((args.log / "interactions").glob("*.parquet"))],
                          ignore_index=True)
        split = temporal_split(validate_table(frame, INTERACTIONS), SplitConfig(cutoff=CUTOFF, test_end=TEST_END))
        del frame
        model = ContentKNN(embeddings=embeddings, device="cpu").fit(split.train_matrix())
        truth = split.test[split.test["user_id"].isin(set(users.astype(str)))]
        out["prepare_seconds"] = time.perf_counter() - started
        ranked = time.perf_counter()
        per_user = evaluate(model, truth, ks=config.ks).per_user
        out["rank_seconds"] = time.perf_counter() - ranked
        out["items"] = model.items.__len__()
        per_user = per_user.assign(user_id=per_user["user_id"].astype(np.int64)).sort_values("user_id")
    else:
        split = ScaleSplit.load(args.split)
        items = ItemSpace.of(split.items[:split.n_warm_items], embeddings)
        out["items"] = len(items.ids)
        retriever = None
        if args.stage == "ann":
            from tunespace.data.embeddings import ItemEmbeddings as Vectors
            from tunespace.index import EmbeddingIndex
            from tunespace.index.ann import import_faiss

            import_faiss().omp_set_num_threads(args.threads)
            index = EmbeddingIndex.build(Vectors(ids=items.ids.astype(str), vectors=items.vectors), "hnsw",
                                         hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                                         ef_search=args.ef_search)
            retriever = index.candidates
        sampler = TreeSampler().__enter__()  # from before Ray starts, so every process it starts is summed
        if args.stage == "ray":
            import ray

            ray.init(num_cpus=args.tasks, include_dashboard=False, log_to_driver=False)  # not timed as ranking
        out["prepare_seconds"] = time.perf_counter() - started
        ranked = time.perf_counter()
        if args.stage == "ray":
            result = evaluate_partitioned_ray(split, embeddings, "test", config, users, tasks=args.tasks)
        else:
            result = evaluate_partitioned(split, None, "test", config, users, retriever, items=items)
        out["rank_seconds"] = time.perf_counter() - ranked
        if args.stage == "ray":
            ray.shutdown()
        sampler.__exit__()
        out["tree_peak_rss_mib"] = sampler.peak / 2**20
        per_user = result.per_user
    per_user.reset_index(drop=True).to_parquet(args.per_user, index=False)
    out["users_per_s"] = len(users) / out["rank_seconds"]
    out["means"] = {m: float(per_user[m].mean()) for m in METRICS}
    out["peak_rss_mib"] = _peak_mib()
    return out


def _run(stage: str, log: Path, users: int, args: argparse.Namespace, tmp: Path, candidates: int = 0) -> dict:
    per_user = tmp / f"{stage}-{log.name}-{candidates}.parquet"
    command = [sys.executable, __file__, "--stage", stage, "--log", str(log), "--split", str(log / "split"),
               "--per-user", str(per_user), "--users", str(users),
               "--threads", str(args.threads), "--tasks", str(args.tasks), "--candidates", str(candidates),
               "--hnsw-m", str(args.hnsw_m), "--ef-construction", str(args.ef_construction),
               "--ef-search", str(args.ef_search)]
    load = load_average()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_before"] = load
    result["per_user_frame"] = pd.read_parquet(per_user)
    peak = result["tree_peak_rss_mib"] if stage == "ray" else result["peak_rss_mib"]
    print(f"{stage:7s} C={candidates:<5d} {result['users']:6d} users x {result['items']:8,d} items  prepare "
          f"{result['prepare_seconds']:7.1f} s  rank {result['rank_seconds']:7.1f} s  {result['users_per_s']:8.1f} "
          f"users/s  peak {peak:7.0f} MiB  ndcg@50 {result['means']['ndcg@50']:.4f}  load {load}", flush=True)
    return result


def _difference(approximate: pd.DataFrame, exact: pd.DataFrame) -> dict[str, float]:
    return {m: float(approximate[m].mean() - exact[m].mean()) for m in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/runs/scale-eval-data"))
    parser.add_argument("--baseline-log", default="log-5000000")
    parser.add_argument("--log", default="log-100000000")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--baseline-users", type=int, default=2000)
    parser.add_argument("--target-users", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--candidates", type=lambda t: [int(v) for v in t.split(",")], default=[100, 400])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--stage", choices=("memory", "exact", "ray", "ann"), help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--per-user", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args, _ = parser.parse_known_args()
    if args.stage:
        args.log = Path(args.log)
        print(json.dumps(_stage(args)))
        return
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    with recorded_run(bench_record_path("scale_eval", args.results), extra={"settings": settings}) as record, \
            tempfile.TemporaryDirectory(prefix="scale-eval-") as tmp:
        figures: dict[str, object] = {}
        small = args.data / args.baseline_log
        memory = _run("memory", small, args.baseline_users, args, Path(tmp))
        exact_small = _run("exact", small, args.baseline_users, args, Path(tmp))
        identical = memory.pop("per_user_frame").reset_index(drop=True).equals(exact_small.pop("per_user_frame"))
        ratios = {"rank_time": memory["rank_seconds"] / exact_small["rank_seconds"],
                  "peak_rss": memory["peak_rss_mib"] / exact_small["peak_rss_mib"]}
        print(f"baseline ({args.baseline_log}): in-memory / partitioned = {ratios['rank_time']:.2f}x ranking time, "
              f"{ratios['peak_rss']:.2f}x peak memory (the in-memory peak includes reading, splitting and fitting "
              f"the log, {memory['prepare_seconds']:.0f} s; the partitioned split is bench/scale_data.py's); "
              f"per-user metrics identical: {identical}")
        figures["baseline"] = {"memory": memory, "partitioned": exact_small, "ratio_memory_over_partitioned": ratios,
                               "per_user_identical": identical}
        big = args.data / args.log
        exact = _run("exact", big, args.users, args, Path(tmp))
        exact_frame = exact.pop("per_user_frame")
        exact["extrapolated_seconds_for_target_users"] = args.target_users / exact["users_per_s"]
        print(f"exact: {args.target_users:,d} users would take about {exact['extrapolated_seconds_for_target_users']:.0f}"
              f" s at {exact['users_per_s']:.1f} users/s (extrapolated from {exact['users']} users)")
        ray_run = _run("ray", big, args.users, args, Path(tmp))
        ray_identical = ray_run.pop("per_user_frame").equals(exact_frame)
        print(f"ray ({args.tasks} tasks): per-user metrics identical to one process: {ray_identical}; "
              f"{ray_run['users_per_s'] / exact['users_per_s']:.2f}x the one-process users/s")
        figures["scale"] = {"exact": exact, "ray": {**ray_run, "per_user_identical": ray_identical,
                                                    "speedup_vs_exact": ray_run["users_per_s"] / exact["users_per_s"]}}
        anns = []
        for candidates in args.candidates:
            ann = _run("ann", big, args.users, args, Path(tmp), candidates)
            frame = ann.pop("per_user_frame")
            ann.update(candidates=candidates, difference_vs_exact=_difference(frame, exact_frame),
                       speedup_vs_exact_ranking=ann["users_per_s"] / exact["users_per_s"])
            print(f"ann C={candidates}: ndcg@50 {ann['difference_vs_exact']['ndcg@50']:+.5f}, recall@50 "
                  f"{ann['difference_vs_exact']['recall@50']:+.5f} vs exact; {ann['speedup_vs_exact_ranking']:.1f}x "
                  f"the exact users/s (index build {ann['prepare_seconds']:.0f} s not included)")
            anns.append(ann)
        figures["scale"]["ann"] = anns
        figures["cpu_count"] = os.cpu_count()
        record["figures"] = figures


if __name__ == "__main__":
    main()

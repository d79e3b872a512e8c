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
from dataclasses import replace
from pathlib import Path
from typing import Self

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

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _users(split_dir: Path, count: int) -> np.ndarray:
    from tunespace.data.scale import ScaleSplit

    return np.unique(ScaleSplit.load(split_dir).part("test")["user_id"].to_numpy(np.int64))[:count]


def _measured(per_user: pd.DataFrame, path: Path, users: int, seconds: float, **extra: object) -> dict[str, object]:
    per_user.reset_index(drop=True).to_parquet(path, index=False)
    return {"users": users, "rank_seconds": seconds, "users_per_s": users / seconds, "per_user_file": str(path),
            "means": {m: float(per_user[m].mean()) for m in METRICS}, **extra}


def _stage(args: argparse.Namespace) -> dict[str, object]:
    """One measured process: `runs` (one, or one per candidate count for `ann`), per-user metrics in files."""
    import torch

    from tunespace.data.embeddings import ItemEmbeddings
    from tunespace.data.scale import EMBEDDINGS_FILE, ScaleSplit
    from tunespace.evaluation.scale import ItemSpace, ScaleEvalConfig, evaluate_partitioned, evaluate_partitioned_ray

    torch.set_num_threads(args.threads)
    users = _users(args.split, args.users)
    embeddings = ItemEmbeddings.load(args.log / EMBEDDINGS_FILE)
    config = ScaleEvalConfig(ks=(10, 50))
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
        out.update(prepare_seconds=time.perf_counter() - started, items=len(model.items))
        ranked = time.perf_counter()
        per_user = evaluate(model, truth, ks=config.ks).per_user
        per_user = per_user.assign(user_id=per_user["user_id"].astype(np.int64)).sort_values("user_id")
        out["runs"] = [_measured(per_user, args.per_user, len(users), time.perf_counter() - ranked)]
        out["peak_rss_mib"] = _peak_mib()
        return out
    split = ScaleSplit.load(args.split)
    items = ItemSpace.of(split.items[:split.n_warm_items], embeddings)
    out["items"] = len(items.ids)
    if args.stage == "ann":
        from tunespace.index import EmbeddingIndex
        from tunespace.index.ann import import_faiss

        import_faiss().omp_set_num_threads(args.threads)
        index = EmbeddingIndex.build(ItemEmbeddings(ids=items.ids.astype(str), vectors=items.vectors), "hnsw",
                                     hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                                     ef_search=args.ef_search)
        out["prepare_seconds"] = time.perf_counter() - started
        out["runs"] = []
        for candidates in args.candidates:
            ranked = time.perf_counter()
            result = evaluate_partitioned(split, None, "test", replace(config, candidates=candidates), users,
                                          index.candidates, items=items)
            out["runs"].append(_measured(result.per_user, args.per_user.with_name(f"ann-{candidates}.parquet"),
                                         len(users), time.perf_counter() - ranked, candidates=candidates))
        out["peak_rss_mib"] = _peak_mib()
        return out
    sampler = TreeSampler().__enter__()  # from before Ray starts, so every process it starts is summed
    if args.stage == "ray":
        import ray

        ray.init(num_cpus=args.tasks, include_dashboard=False, log_to_driver=False)  # not timed as ranking
    out["prepare_seconds"] = time.perf_counter() - started
    ranked = time.perf_counter()
    if args.stage == "ray":
        result = evaluate_partitioned_ray(split, embeddings, "test", config, users, tasks=args.tasks)
    else:
        result = evaluate_partitioned(split, None, "test", config, users, items=items)
    seconds = time.perf_counter() - ranked
    if args.stage == "ray":
        ray.shutdown()
    sampler.__exit__()
    out["runs"] = [_measured(result.per_user, args.per_user, len(users), seconds)]
    out.update(peak_rss_mib=_peak_mib(), tree_peak_rss_mib=sampler.peak / 2**20)
    return out


def _run(stage: str, log: Path, users: int, args: argparse.Namespace, tmp: Path) -> dict:
    command = [sys.executable, __file__, "--stage", stage, "--log", str(log), "--split", str(log / "split"),
               "--per-user", str(tmp / f"{stage}-{log.name}.parquet"), "--users", str(users),
               "--threads", str(args.threads), "--tasks", str(args.tasks),
               "--candidates", ",".join(map(str, args.candidates)) or "0",
               "--hnsw-m", str(args.hnsw_m), "--ef-construction", str(args.ef_construction),
               "--ef-search", str(args.ef_search)]
    load = load_average()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_before"] = load
    peak = result["tree_peak_rss_mib"] if stage == "ray" else result["peak_rss_mib"]
    for run in result["runs"]:
        print(f"{stage:7s} C={run.get('candidates', 0):<5d} {run['users']:6d} users x {result['items']:8,d} items  "
              f"prepare {result['prepare_seconds']:7.1f} s  rank {run['rank_seconds']:7.1f} s  "
              f"{run['users_per_s']:8.1f} users/s  peak {peak:7.0f} MiB  ndcg@50 {run['means']['ndcg@50']:.4f}  "
              f"load {load}", flush=True)
    return result


def _difference(approximate: pd.DataFrame, exact: pd.DataFrame) -> dict[str, float]:
    return {m: float(approximate[m].mean() - exact[m].mean()) for m in METRICS}


def _frame(run: dict) -> pd.DataFrame:
    return pd.read_parquet(run["per_user_file"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/runs/scale-eval-data"))
    parser.add_argument("--baseline-log", default="log-5000000", help="'' skips the in-memory baseline")
    parser.add_argument("--log", default="log-100000000")
    parser.add_argument("--users", type=int, default=5000, help="first test users by id (all when larger)")
    parser.add_argument("--baseline-users", type=int, default=2000)
    parser.add_argument("--target-users", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2, help="Ray tasks (0 skips the Ray run)")
    parser.add_argument("--candidates", type=lambda t: [int(v) for v in t.split(",") if int(v) > 0],
                        default=[100, 400], help="ANN candidates per user ('0' skips ANN)")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--stage", choices=("memory", "exact", "ray", "ann"), help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--per-user", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if args.stage:
        args.log = Path(args.log)
        print(json.dumps(_stage(args)))
        return
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    with recorded_run(bench_record_path("scale_eval", args.results), extra={"settings": settings}) as record, \
            tempfile.TemporaryDirectory(prefix="scale-eval-") as tmp:
        figures: dict[str, object] = {}
        if args.baseline_log:
            small = args.data / args.baseline_log
            memory = _run("memory", small, args.baseline_users, args, Path(tmp))
            partitioned = _run("exact", small, args.baseline_users, args, Path(tmp))
            identical = _frame(memory["runs"][0]).equals(_frame(partitioned["runs"][0]))
            ratios = {"rank_time": memory["runs"][0]["rank_seconds"] / partitioned["runs"][0]["rank_seconds"],
                      "peak_rss": memory["peak_rss_mib"] / partitioned["peak_rss_mib"]}
            print(f"baseline ({args.baseline_log}): in-memory / partitioned = {ratios['rank_time']:.2f}x ranking "
                  f"time, {ratios['peak_rss']:.2f}x peak memory (the in-memory peak includes reading, splitting and "
                  f"fitting the log, {memory['prepare_seconds']:.0f} s; the partitioned split is "
                  f"bench/scale_data.py's); per-user metrics identical: {identical}")
            figures["baseline"] = {"memory": memory, "partitioned": partitioned,
                                   "ratio_memory_over_partitioned": ratios, "per_user_identical": identical}
        big = args.data / args.log
        exact = _run("exact", big, args.users, args, Path(tmp))
        run = exact["runs"][0]
        exact_frame = _frame(run)
        exact["extrapolated_seconds_for_target_users"] = args.target_users / run["users_per_s"]
        print(f"exact: {args.target_users:,d} users would take about "
              f"{exact['extrapolated_seconds_for_target_users']:.0f} s at {run['users_per_s']:.1f} users/s "
              f"(extrapolated from {run['users']:,d} users)")
        figures["scale"] = {"exact": exact}
        if args.tasks:
            ray_run = _run("ray", big, args.users, args, Path(tmp))
            identical = _frame(ray_run["runs"][0]).equals(exact_frame)
            speedup = ray_run["runs"][0]["users_per_s"] / run["users_per_s"]
            print(f"ray ({args.tasks} tasks): per-user metrics identical to one process: {identical}; {speedup:.2f}x "
                  "the one-process users/s")
            figures["scale"]["ray"] = {**ray_run, "per_user_identical": identical, "speedup_vs_exact": speedup}
        if args.candidates:
            ann = _run("ann", big, args.users, args, Path(tmp))
            for ann_run in ann["runs"]:
                ann_run["difference_vs_exact"] = _difference(_frame(ann_run), exact_frame)
                ann_run["speedup_vs_exact"] = ann_run["users_per_s"] / run["users_per_s"]
                print(f"ann C={ann_run['candidates']}: ndcg@50 {ann_run['difference_vs_exact']['ndcg@50']:+.5f}, "
                      f"recall@50 {ann_run['difference_vs_exact']['recall@50']:+.5f} vs exact; "
                      f"{ann_run['speedup_vs_exact']:.1f}x the exact users/s (HNSW build "
                      f"{ann['prepare_seconds']:.0f} s, not included)")
            figures["scale"]["ann"] = ann
        record["figures"] = figures


if __name__ == "__main__":
    main()

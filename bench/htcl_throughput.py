"""HTCL training throughput (clips/s) on 1 process against 2 DDP processes with the same global batch, and a
projection (arithmetic, not a measurement) of N processes from those two figures.

    python bench/htcl_throughput.py --data CORPUS            # a corpus folder from `tunespace corpus build`
    python bench/htcl_throughput.py --steps 12 --configs tiny --repeats 2

Each measurement is a fresh `tunespace htcl pretrain` run (stage 1, the config's global batch, 10 s crops) for
`--steps` steps:
- 1 process using every core (torch's intra-op threads): what one would run without DDP;
- 1 process on one thread: the same per-process compute as each DDP process below, so the ratio against it is the
  scaling of DDP alone, without the gain or loss of intra-op threads (large on a machine shared with other jobs);
- 2 processes, DDP over gloo, one thread each, the same global batch split in two, launched as `--launch` says:
  `nodes` (default): two torchrun agents with `--nnodes 2 --nproc-per-node 1 --node-rank 0|1` and a static
  rendezvous on 127.0.0.1, the multi-node command line with both "nodes" on this machine; `standalone`: one agent,
  `torchrun --standalone --nproc-per-node 2`.
Runs alternate (the three kinds in turn) `--repeats` times so load from other processes falls on all; the median
of each is compared. Clips/s is counted inside the training loop only (the text tower's sentence vectors are cached
before it starts), and the ratios 2-process / 1-process are printed.

The projection: with t1 and t2 the measured seconds per step on 1 process (one thread) and on 2 processes (one
thread each), the per-step cost that did not halve is o = t2 - t1 / 2 (gradient all-reduce, feature gathers, work
every rank repeats); assuming the compute splits evenly and o stays as measured, N processes would take
t1 / N + o per step (N >= 2). It is labelled PROJECTION in the output and the record; it is not a measurement, and CPU
figures say little about GPUs (where compute shrinks and o is mostly the all-reduce).

Without --data the small built-in corpus is built first. Each run writes a provenance record (command, commit,
packages, machine, load, settings and the figures printed) to `--results` (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from tunespace.provenance import bench_record_path, load_average, recorded_run

BIN = Path(sys.executable).parent


def run(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                   timeout=3600)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_nodes(args: list[str], env: dict[str, str], nodes: int) -> None:
    """One torchrun agent per "node", all on this machine, as the multi-node command line runs them."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes),
                               "--nproc-per-node", "1", "--node-rank", str(rank), "--master-addr", "127.0.0.1",
                               "--master-port", str(port), "-m", "tunespace", *args],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for rank in range(nodes)]
    errors = [proc.communicate(timeout=3600)[1] for proc in procs]
    for rank, (proc, error) in enumerate(zip(procs, errors)):
        if proc.returncode:
            raise RuntimeError(f"node {rank} exited {proc.returncode}: {error[-2000:]}")


def measure(data: Path, config: str, steps: int, processes: int, launch: str, out: Path, threads: int = 0) -> dict:
    """One run; `threads` (1 process only): torch intra-op threads, 0 for torch's default (every core)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = ["htcl", "pretrain", "--data", str(data), "--config", config, "--steps", str(steps), "--out", str(out),
            "--device", "cpu", "--set", "train.checkpoint_every=100000", "--set", f"train.warmup_steps={steps}"]
    load = load_average()
    if processes == 1:
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
            args += ["--set", f"train.threads={threads}"]
        run([str(BIN / "tunespace"), *args], env)
    else:
        env["OMP_NUM_THREADS"] = "1"
        args += ["--set", "train.threads=1"]
        if launch == "nodes":
            run_nodes(args, env, processes)
        else:
            run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                 "-m", "tunespace", *args], env)
    report = json.loads((out / "train_report.json").read_text())
    return {"config": config, "processes": processes, "launch": "single" if processes == 1 else launch,
            "run": "2 processes" if processes > 1 else f"1 process, {'1 thread' if threads == 1 else 'all cores'}",
            "threads_per_process": report["threads"], "world_size": report["world_size"],
            "steps": report["steps_run"], "seconds": round(report["seconds"], 2),
            "seconds_per_step": round(report["seconds"] / report["steps_run"], 3),
            "clips_per_s": round(report["clips_per_second"], 2), "load_1min_before": load[0] if load else None}


def projection(t1: float, t2: float, sizes: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict:
    """Speed-up for N processes under t(N) = t1 / N + o for N >= 2, o = t2 - t1 / 2 (see the docstring)."""
    overhead = t2 - t1 / 2
    kept = max(overhead, 0.0)  # 2 processes faster than twice one (threads lost on one process): assume none
    return {"model": "t(N) = t1/N + o, o = t2 - t1/2 (measured t1, t2)", "t1_s": round(t1, 3), "t2_s": round(t2, 3),
            "overhead_s": round(overhead, 3),
            "speedup": {n: 1.0 if n == 1 else round(t1 / (t1 / n + kept), 2) for n in sizes},
            "limit": round(t1 / overhead, 2) if overhead > 0 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--configs", default="tiny")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--launch", choices=("nodes", "standalone"), default="nodes")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for this run's provenance record (default: bench/results)")
    args = parser.parse_args()
    record_path = bench_record_path(__file__, args.results)
    with recorded_run(record_path) as record, tempfile.TemporaryDirectory() as tmp:
        record["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        figures = record["figures"] = {"runs": [], "ratio_2_over_1_process": {}, "PROJECTION_not_measured": {}}
        data = args.data
        if data is None:
            data = Path(tmp) / "corpus"
            run([str(BIN / "tunespace"), "corpus", "build", "--size", "small", "--out", str(data)], dict(os.environ))
        # one warm-up run fills the audio and text caches, so no measurement pays for them
        measure(data, "tiny", 1, 1, args.launch, Path(tmp) / "warmup")
        rows = []
        for config in args.configs.split(","):
            for repeat in range(args.repeats):
                for processes, threads in ((1, 0), (1, 1), (2, 1)):
                    out = Path(tmp) / f"{config}-{processes}-{threads}-{repeat}"
                    rows.append(measure(data, config, args.steps, processes, args.launch, out, threads))
                    figures["runs"].append(rows[-1])
                    print(rows[-1], flush=True)
                    shutil.rmtree(out, ignore_errors=True)
        frame = pd.DataFrame(rows)
        print(frame.to_string(index=False))
        for config, group in frame.groupby("config", sort=False):
            median = group.groupby("run")[["clips_per_s", "seconds_per_step"]].median()
            figures.setdefault("medians", {})[config] = median.to_dict(orient="index")
            two = median.loc["2 processes"]
            figures["ratio_2_over_1_process"][config] = {}
            for baseline in ("1 process, all cores", "1 process, 1 thread"):
                ratio = two["clips_per_s"] / median.loc[baseline, "clips_per_s"]
                figures["ratio_2_over_1_process"][config][baseline] = round(ratio, 3)
                print(f"{config}: median clips/s {baseline} {median.loc[baseline, 'clips_per_s']:.2f}, 2 DDP "
                      f"processes ({args.launch}, 1 thread each) {two['clips_per_s']:.2f}: ratio {ratio:.2f}x")
            guess = projection(median.loc["1 process, 1 thread", "seconds_per_step"], two["seconds_per_step"])
            figures["PROJECTION_not_measured"][config] = guess
            print(f"{config}: PROJECTION (arithmetic from the two measured figures, not a measurement): "
                  f"{guess['model']}; o = {guess['overhead_s']} s; speed-up "
                  + ", ".join(f"N={n}: {s}x" for n, s in guess["speedup"].items()))
    print(f"provenance record: {record_path}")


if __name__ == "__main__":
    main()

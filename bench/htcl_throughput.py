"""HTCL training throughput (clips/s) of the `tiny` and `small` configs, and its scaling from 1 to 2 DDP processes.

    python bench/htcl_throughput.py --data CORPUS            # a corpus folder from `tunespace corpus build`
    python bench/htcl_throughput.py --steps 20 --configs tiny

Each measurement is a fresh `tunespace htcl pretrain` run (stage 1, batch 64, 10 s crops) for `--steps` steps:
- 1 process using every core (torch's intra-op threads);
- `torchrun --nproc_per_node 2`, DDP over gloo, one thread per process, the same global batch split in two.
Clips/s is counted inside the training loop only (the text tower's sentence vectors are cached before it starts),
and the ratio 2-process / 1-process is printed. Without --data the small built-in corpus is built first.
Each run writes a provenance record (command, commit, packages, machine, load, settings and the figures printed)
to `--results` (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from tunespace.provenance import bench_record_path, recorded_run

BIN = Path(sys.executable).parent


def run(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def measure(data: Path, config: str, steps: int, processes: int, out: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = ["htcl", "pretrain", "--data", str(data), "--config", config, "--steps", str(steps), "--out", str(out),
            "--device", "cpu", "--set", "train.checkpoint_every=100000", "--set", f"train.warmup_steps={steps}"]
    if processes == 1:
        run([str(BIN / "tunespace"), *args], env)
    else:
        env["OMP_NUM_THREADS"] = "1"
        run([str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={processes}", "-m", "tunespace", *args,
             "--set", "train.threads=1"], env)
    report = json.loads((out / "train_report.json").read_text())
    return {"config": config, "processes": processes, "threads_per_process": report["threads"],
            "steps": report["steps_run"], "seconds": round(report["seconds"], 1),
            "clips_per_s": round(report["clips_per_second"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--configs", default="tiny,small")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for this run's provenance record (default: bench/results)")
    args = parser.parse_args()
    record_path = bench_record_path(__file__, args.results)
    with recorded_run(record_path) as record, tempfile.TemporaryDirectory() as tmp:
        record["settings"] = vars(args)
        figures = record["figures"] = {"runs": [], "ratio_2_over_1_process": {}}
        data = args.data
        if data is None:
            data = Path(tmp) / "corpus"
            run([str(BIN / "tunespace"), "corpus", "build", "--size", "small", "--out", str(data)], dict(os.environ))
        # one warm-up run fills the audio and text caches, so no measurement pays for them
        measure(data, "tiny", 1, 1, Path(tmp) / "warmup")
        rows = []
        for config in args.configs.split(","):
            for processes in (1, 2):
                out = Path(tmp) / f"{config}-{processes}"
                rows.append(measure(data, config, args.steps, processes, out))
                figures["runs"].append(rows[-1])
                shutil.rmtree(out, ignore_errors=True)
        frame = pd.DataFrame(rows)
        print(frame.to_string(index=False))
        for config, group in frame.groupby("config", sort=False):
            one, two = (group.set_index("processes")["clips_per_s"].get(n) for n in (1, 2))
            print(f"{config}: 2 DDP processes / 1 process = {two / one:.2f}x")
            figures["ratio_2_over_1_process"][config] = two / one
    print(f"provenance record: {record_path}")


if __name__ == "__main__":
    main()

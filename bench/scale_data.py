"""A listening log at scale: generate it as partitioned Parquet, then split it by the temporal protocol streaming
(`tunespace.data.scale`), each stage in its own process so its peak memory (ru_maxrss) and wall time are its own.
The baseline, at a size pandas holds (`--baseline-interactions`), is the in-memory path `tunespace split` runs
(read every part into one frame, `validate_table`, `temporal_split`) against the streaming split of the same log,
with their stats checked equal.

    python bench/scale_data.py --out /work/runs/scale-eval-data [--tracks 1000000] [--users 150000]
                               [--interactions 100000000] [--baseline-interactions 5000000]

Writes bench/results/scale_data-<UTC time>.json (command, commit, machine, load, figures).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tunespace.provenance import bench_record_path, recorded_run

CUTOFF, TEST_END = "2024-12-01", "2025-01-01"  # the generator's window is 2024-01-01 + 13 months


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _stage(args: argparse.Namespace) -> dict[str, object]:
    """Run one stage in this process and report its time and peak memory."""
    import pandas as pd

    from tunespace.data.scale import ScaleLogConfig, generate_log, scale_split
    from tunespace.data.schema import INTERACTIONS, validate_table
    from tunespace.data.splits import SplitConfig, temporal_split

    split_config = SplitConfig(cutoff=CUTOFF, test_end=TEST_END)
    started = time.perf_counter()
    if args.stage == "generate":
        config = ScaleLogConfig(tracks=args.tracks, users=args.users, interactions=args.interactions,
                                seed=args.seed)
        generate_log(config, args.log)
        rows = sum(_rows(path) for path in (args.log / "interactions").glob("part-*.parquet"))
        out: dict[str, object] = {"rows": rows, "config": asdict(config)}
    elif args.stage == "split":
        out = {"stats": scale_split(args.log, split_config, args.split)}
    else:  # the in-memory baseline
        frame = pd.concat([pd.read_parquet(path) for path in sorted((args.log / "interactions").glob("*.parquet"))],
                          ignore_index=True)
        out = {"stats": temporal_split(validate_table(frame, INTERACTIONS), split_config).stats}
    return {**out, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_mib()}


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _disk_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _run(stage: str, log: Path, split: Path | None, args: argparse.Namespace, interactions: int) -> dict:
    command = [sys.executable, __file__, "--stage", stage, "--log", str(log), "--tracks", str(args.tracks),
               "--users", str(args.users), "--interactions", str(interactions), "--seed", str(args.seed)]
    if split is not None:
        command += ["--split", str(split)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{stage:9s} {interactions:>12,d} events  {result['seconds']:8.1f} s  peak {result['peak_rss_mib']:8.0f} MiB",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/runs/scale-eval-data"))
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=150_000)
    parser.add_argument("--interactions", type=int, default=100_000_000)
    parser.add_argument("--baseline-interactions", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=("generate", "split", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_stage(args)))
        return
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    with recorded_run(bench_record_path("scale_data", args.results), extra={"settings": settings}) as record:
        small = args.out / f"log-{args.baseline_interactions}"
        base = {"generate": _run("generate", small, None, args, args.baseline_interactions),
                "memory_split": _run("memory", small, None, args, args.baseline_interactions),
                "streaming_split": _run("split", small, small / "split", args, args.baseline_interactions)}
        if base["memory_split"]["stats"] != base["streaming_split"]["stats"]:
            raise RuntimeError("the streaming split's stats differ from the in-memory split's")
        ratios = {"time": base["memory_split"]["seconds"] / base["streaming_split"]["seconds"],
                  "peak_rss": base["memory_split"]["peak_rss_mib"] / base["streaming_split"]["peak_rss_mib"]}
        print(f"baseline at {args.baseline_interactions:,d} events: in-memory split / streaming split = "
              f"{ratios['time']:.2f}x time, {ratios['peak_rss']:.2f}x peak memory (stats equal)")
        big = args.out / f"log-{args.interactions}"
        scale = {"generate": _run("generate", big, None, args, args.interactions),
                 "streaming_split": _run("split", big, big / "split", args, args.interactions)}
        scale["disk_mib"] = {"log": _disk_mib(big / "interactions"), "train": _disk_mib(big / "split" / "train")}
        record["figures"] = {"baseline": base, "baseline_ratio_memory_over_streaming": ratios, "scale": scale}


if __name__ == "__main__":
    main()

"""Extraction throughput of the local engine against the Ray Data engine on the same catalogue, and what each stage
costs on one CPU, for a scaling plan on paper.

    python bench/extract_engines.py --data CORPUS [--backends mfcc,musicnn-msd] [--tracks N]

For each backend, in one process on this machine:
- local: `Extractor.run` as `tunespace embed` runs it (2 decode threads, torch on all cores), and again with torch
  on one thread (as in a CPU actor: on a loaded machine torch's threads can cost more than they give);
- ray: `RayExtractor.run` on a local Ray cluster already started (`ray.init()` timed apart as the startup
  overhead), with its default pool (half the CPUs as 1-CPU actors, decode tasks on the rest), then with one actor
  per CPU (decoding fused into the actors, as Ray Data does when no CPU is left for a task); and the fixed cost of
  a Ray run (its actor pool starting, the pipeline) as the time of a one-track run;
- stages: decoding every file in one process (one CPU), and encoding the decoded audio with torch on one thread
  (what one CPU actor does), in files/s: the inputs of the scaling plan.
The Ray output is compared with both local ones (same ids; bitwise equal or the largest difference). Prints files/s, audio min/s
and the ratio Ray/local, and writes a provenance record to `--results` (default bench/results).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tunespace.audio.decode import AudioDecodeError
from tunespace.data.dataset import Dataset
from tunespace.data.embeddings import ItemEmbeddings
from tunespace.encoders.extract import ExtractionConfig, ExtractionReport, Extractor, decode_track
from tunespace.encoders.ray_extract import RayConfig, RayExtractor
from tunespace.provenance import bench_record_path, recorded_run


def rates(report: ExtractionReport, seconds: float, files: int) -> dict[str, float]:
    return {"seconds": seconds, "files": files, "files_per_second": files / seconds,
            "audio_minutes": report.audio_seconds / 60, "audio_minutes_per_second": report.audio_seconds / 60 / seconds,
            "embedded": report.embedded, "skipped": report.skipped}


def timed_run(engine: Extractor, tracks: pd.DataFrame, root: Path, out: Path,
              threads: int | None = None) -> dict[str, float]:
    """One run, with torch on `threads` threads in this process (default: as it is)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        started = time.perf_counter()
        report = engine.run(tracks, root, out)
        return rates(report, time.perf_counter() - started, len(tracks))
    finally:
        torch.set_num_threads(before)


def stages(config: ExtractionConfig, tracks: pd.DataFrame, root: Path) -> dict[str, float]:
    """Decode every file on one CPU, then encode the decoded audio with torch on one thread: files/s of each."""
    extractor = Extractor(config)
    started = time.perf_counter()
    decoded = []
    for position, path in enumerate(tracks["audio_path"]):
        try:
            segments = list(decode_track(root / path, extractor.backend.sample_rate, extractor.segment_samples,
                                         extractor.decoder, config.whole_file_seconds))
            decoded.append((position, segments, None))
        except AudioDecodeError as error:
            decoded.append((position, [], str(error)))
    decode_seconds = time.perf_counter() - started
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        for first in range(0, len(tracks), config.checkpoint_tracks):  # the Ray engine's blocks
            block = decoded[first:first + config.checkpoint_tracks]
            extractor.embed_decoded(tracks.iloc[first:first + len(block)], root,
                                    [(p - first, s, e) for p, s, e in block])
        encode_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return {"decode_seconds": decode_seconds, "decode_files_per_second_per_cpu": len(tracks) / decode_seconds,
            "encode_seconds_1_thread": encode_seconds, "encode_files_per_second_per_cpu": len(tracks) / encode_seconds}


def compare(local: Path, other: Path) -> dict[str, float | bool]:
    a, b = ItemEmbeddings.load(local), ItemEmbeddings.load(other)
    same_ids = list(a.ids) == list(b.ids)
    return {"same_ids": same_ids, "bitwise_equal": same_ids and bool(np.array_equal(a.vectors, b.vectors)),
            "max_abs_difference": float(np.abs(a.vectors - b.vectors).max()) if same_ids else float("nan"),
            "max_abs_value": float(np.abs(a.vectors).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--backends", default="mfcc")
    parser.add_argument("--tracks", type=int, default=None, help="the first N tracks (default: all)")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    import ray

    tracks = Dataset.load_tracks(args.data)
    tracks = tracks if args.tracks is None else tracks.head(args.tracks)
    figures: dict[str, dict] = {}
    with recorded_run(bench_record_path(__file__, args.results), extra={"settings": {
            **{k: str(v) for k, v in vars(args).items()}, "tracks_used": len(tracks),
            "torch_threads": torch.get_num_threads()}}) as record, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
        figures["ray_startup"] = {"init_seconds": time.perf_counter() - started,
                                  "cluster_cpus": ray.cluster_resources().get("CPU", 0)}
        cpus = int(figures["ray_startup"]["cluster_cpus"])
        for backend in args.backends.split(","):
            config = ExtractionConfig(backend)
            row: dict[str, dict] = {}
            row["local"] = timed_run(Extractor(config), tracks, args.data, tmp / f"{backend}-local")
            row["local_1_thread"] = timed_run(Extractor(config), tracks, args.data, tmp / f"{backend}-local-1",
                                              threads=1)
            row["ray_one_track"] = timed_run(RayExtractor(config), tracks.head(1), args.data, tmp / f"{backend}-one")
            row["ray"] = timed_run(RayExtractor(config), tracks, args.data, tmp / f"{backend}-ray")
            row["ray_actor_per_cpu"] = timed_run(RayExtractor(config, RayConfig(actors=cpus)), tracks, args.data,
                                                 tmp / f"{backend}-ray-all")
            row["ray_vs_local"] = compare(tmp / f"{backend}-local", tmp / f"{backend}-ray")
            row["ray_vs_local_1_thread"] = compare(tmp / f"{backend}-local-1", tmp / f"{backend}-ray")
            row["stages"] = stages(config, tracks, args.data)
            for name in ("local_1_thread", "ray", "ray_actor_per_cpu"):
                row[name]["ratio_to_local"] = row[name]["files_per_second"] / row["local"]["files_per_second"]
            figures[backend] = row
            for name in ("local", "local_1_thread", "ray_one_track", "ray", "ray_actor_per_cpu"):
                r = row[name]
                ratio = f"  {r['ratio_to_local']:.2f}x local" if "ratio_to_local" in r else ""
                print(f"{backend:12s} {name:18s} {r['files_per_second']:7.2f} files/s {r['audio_minutes_per_second']:7.2f}"
                      f" audio min/s  {r['seconds']:6.1f} s{ratio}")
            s = row["stages"]
            print(f"{backend:12s} one CPU: decode {s['decode_files_per_second_per_cpu']:.2f} files/s, encode (1 torch "
                  f"thread) {s['encode_files_per_second_per_cpu']:.2f} files/s; Ray vs local: {row['ray_vs_local']}; "
                  f"vs local on 1 thread: {row['ray_vs_local_1_thread']}")
        started = time.perf_counter()
        ray.shutdown()
        figures["ray_startup"]["shutdown_seconds"] = time.perf_counter() - started
        print(f"ray.init {figures['ray_startup']['init_seconds']:.1f} s, shutdown "
              f"{figures['ray_startup']['shutdown_seconds']:.1f} s")
        record["figures"] = figures


if __name__ == "__main__":
    main()

"""Load test of `tunespace serve` on loopback: N concurrent clients for a fixed time against `/tracks/{id}/similar`
and `/search?like=ID`, one endpoint after the other, each request for a random track of the catalogue.

    python bench/serve_load.py [--data /work/runs/corpus-medium] [--embeddings DATA/emb/mfcc] [--clients 8]
                               [--seconds 20]

The server is the real command (`python -m tunespace serve`, FastAPI on uvicorn) in its own process, on a free
loopback port, over a flat index built from the embeddings into a temporary folder; the clients are asyncio tasks
sharing one httpx.AsyncClient in this process (so on a small machine they compete with the server for the same
cores, as a co-located client would). Reports throughput, p50/p99 latency and errors per endpoint, stops by itself,
and writes a provenance record to `--results` (default bench/results/serve-load-<time>.json). Skips cleanly (exit
0) when the corpus or its embeddings are absent. Goal: p99 < 100 ms for /similar at 8 clients on 2 cores, 0 errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np

from tunespace.index import EmbeddingIndex
from tunespace.provenance import bench_record_path, load_average, recorded_run

log = logging.getLogger("serve_load")
DEFAULT_DATA = Path("/work/runs/corpus-medium")
WARMUP_SECONDS = 2.0
GOAL_P99_MS = 100.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(data: Path, index: Path, port: int) -> subprocess.Popen:
    """`tunespace serve` in its own process; returns once /health answers (or raises if the process ends)."""
    command = [sys.executable, "-m", "tunespace", "serve", "--data", str(data), "--index", str(index),
               "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}: {server.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the server did not answer /health within 300 s")


async def hammer(base: str, paths: list[str], clients: int, seconds: float) -> dict[str, float]:
    """`clients` tasks request random paths back to back for `seconds` (after a warm-up that is not counted)."""
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        async def worker(seed: int, until: float, record: bool) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < until:
                path = rng.choice(paths)
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                    if not ok and record:
                        errors.append(f"{response.status_code} {path}")
                except httpx.HTTPError as error:
                    ok = False
                    if record:
                        errors.append(f"{type(error).__name__} {path}")
                if record and ok:
                    latencies.append(time.perf_counter() - started)

        warm_until = time.perf_counter() + WARMUP_SECONDS
        await asyncio.gather(*(worker(1000 + i, warm_until, False) for i in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, started + seconds, True) for i in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "error_examples": errors[:5],
            "seconds": elapsed, "requests_per_second": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p90_ms": float(np.percentile(ms, 90)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "max_ms": float(ms.max()) if len(ms) else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embeddings", type=Path, default=None, help="default DATA/emb/mfcc")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per endpoint")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "faiss.loader"):  # a line per request; a line per CPU feature tried
        logging.getLogger(noisy).setLevel(logging.WARNING)
    embeddings = args.embeddings or args.data / "emb" / "mfcc"
    if not (args.data / "tracks.parquet").is_file() or not embeddings.is_dir():
        log.info(f"skipped: no corpus at {args.data} or no embeddings at {embeddings} (build them with `tunespace "
              "corpus` and `tunespace embed`)")
        return 0
    settings = {**{key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
                "embeddings": str(embeddings), "warmup_seconds": WARMUP_SECONDS, "index_kind": "flat",
                "client": "httpx.AsyncClient in the bench process", "server": "python -m tunespace serve (uvicorn)"}
    results = args.results or Path(__file__).resolve().parent / "results"
    with recorded_run(bench_record_path("serve-load", results), extra={"settings": settings}) as record, \
            tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        index = EmbeddingIndex.from_folder(embeddings, kind="flat")
        index.save(Path(tmp) / "index")
        ids = index.ids
        port = free_port()
        server = start_server(args.data, Path(tmp) / "index", port)
        figures: dict[str, dict[str, object]] = {}
        try:
            base = f"http://127.0.0.1:{port}"
            endpoints = {"similar": [f"/tracks/{quote(t, safe='/')}/similar?k={args.k}" for t in ids],
                         "search_like": [f"/search?like={quote(t, safe='')}&k={args.k}" for t in ids]}
            for name, paths in endpoints.items():
                figures[name] = asyncio.run(hammer(base, paths, args.clients, args.seconds))
                figures[name]["load_average_after"] = load_average()
                row = figures[name]
                log.info("%-12s %6.1f req/s  p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms  errors %d  (%d requests, "
                         "%d clients, load %s)", name, row["requests_per_second"], row["p50_ms"], row["p99_ms"],
                         row["max_ms"], row["errors"], row["requests"], args.clients, row["load_average_after"])
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        similar = figures["similar"]
        record["figures"] = figures
        record["tracks"] = len(ids)
        record["cores"] = len(os.sched_getaffinity(0))
        record["goal"] = {"p99_ms_similar_below": GOAL_P99_MS, "clients": 8,
                          "met": bool(similar["p99_ms"] is not None and similar["p99_ms"] < GOAL_P99_MS
                                      and similar["errors"] == 0 and args.clients == 8)}
        log.info("goal (p99 < %.0f ms for /similar at 8 clients, 0 errors): %s", GOAL_P99_MS,
                 "met" if record["goal"]["met"] else "not met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

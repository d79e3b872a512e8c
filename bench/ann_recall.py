"""Approximate against exact nearest-neighbour search at catalogue scale: recall@k of HNSW and IVF-PQ against exact
inner-product search (faiss IndexFlatIP), with build time, index size and queries per second, all through
`tunespace.index.EmbeddingIndex` (what `tunespace search` runs) and measured in one run on one machine.

    python bench/ann_recall.py [--items 1000000] [--dim 128] [--queries 2000] [--k 50] [--threads 2]
                               [--corpus /work/runs/corpus-medium/emb/mfcc]

Two catalogues:
- `synthetic`: a Gaussian mixture with realistic structure: cluster sizes drawn log-normally (a few large
  genres, many small ones), each cluster spread along its own low-dimensional subspace (`--intrinsic` directions,
  a per-cluster scale) plus a little isotropic noise, so the data has a low intrinsic dimension as learned
  embeddings do. Queries are fresh draws from the same mixture, not catalogue members.
- `corpus`: the real embeddings of `--corpus` (e.g. the medium corpus's MFCC vectors) replicated to `--items`
  rows, each copy plus Gaussian noise of `--noise` times that dimension's spread across the corpus; queries are
  fresh noisy copies. Skipped (with a line saying so) when the folder is absent.

Scores are cosine (the index normalises vectors). Queries/s is the whole batch of queries through
`EmbeddingIndex.search` (faiss plus building the Python hit lists) with `--threads` faiss threads, so the ratio to
exact is the speed-up a caller sees; exact search is timed again on the same queries right after each
setting and the ratio taken against that, since other work on a shared machine changes the speed of both. Index
size is the saved faiss file, which is what the index holds in memory.
Prints a table and writes a provenance record (command, commit, machine, load average, figures) to
bench/results/ann-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tunespace.data.embeddings import ItemEmbeddings
from tunespace.index import EmbeddingIndex
from tunespace.index.ann import INDEX_FILE, import_faiss
from tunespace.provenance import bench_record_path, recorded_run

RECALL_GOAL = 0.95
SPEEDUP_GOAL = 10.0
WARM_UP = 50  # queries searched before each timed batch


def clustered(n: int, queries: int, dim: int, clusters: int, intrinsic: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries from one mixture (see the module docstring); float32."""
    weights = rng.lognormal(0.0, 1.0, clusters)
    weights /= weights.sum()
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    bases = rng.normal(size=(clusters, intrinsic, dim)).astype(np.float32) / np.sqrt(intrinsic)
    scales = rng.uniform(0.4, 1.2, clusters).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        owner = rng.choice(clusters, size=count, p=weights)
        out = np.empty((count, dim), dtype=np.float32)
        for cluster in np.unique(owner):
            rows = np.flatnonzero(owner == cluster)
            latent = rng.normal(size=(len(rows), intrinsic)).astype(np.float32)
            out[rows] = centres[cluster] + scales[cluster] * latent @ bases[cluster]
        out += 0.1 * rng.normal(size=out.shape).astype(np.float32)
        return out

    return draw(n), draw(queries)


def replicated(base: np.ndarray, n: int, queries: int, noise: float, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """`n` noisy copies of the rows of `base` (round robin) and `queries` copies of random rows."""
    spread = (noise * base.std(axis=0)).astype(np.float32)

    def copies(rows: np.ndarray) -> np.ndarray:
        out = base[rows].astype(np.float32)
        out += rng.normal(size=out.shape).astype(np.float32) * spread
        return out

    return copies(np.arange(n) % len(base)), copies(rng.integers(0, len(base), queries))


def timed_search(index: EmbeddingIndex, queries: np.ndarray, k: int) -> tuple[list[set[str]], float]:
    started = time.perf_counter()
    hits = index.search(queries, k)
    seconds = time.perf_counter() - started
    return [{hit.item_id for hit in row} for row in hits], seconds


def measure(name: str, items: np.ndarray, queries: np.ndarray, args: argparse.Namespace, tmp: Path
            ) -> list[dict[str, object]]:
    """Every setting on one catalogue. The first row is exact search over all queries (the truth for recall);
    each other row's speed-up is against exact search timed on `--reference` of the queries right after it, so
    that a change in the machine's load between rows does not move the ratio."""
    embeddings = ItemEmbeddings(ids=np.char.add("t", np.arange(len(items)).astype(str)).astype(object),
                                vectors=items)
    rows: list[dict[str, object]] = []
    builds = [("hnsw", {"hnsw_m": m, "ef_construction": args.ef_construction},
               [{"ef_search": ef} for ef in args.ef_search]) for m in args.hnsw_m]
    builds += [("ivfpq", {"nlist": args.nlist, "pq_m": pq_m}, [{"nprobe": p} for p in args.nprobe])
               for pq_m in args.pq_m]
    started = time.perf_counter()
    exact = EmbeddingIndex.build(embeddings, "flat")
    rows.append(_row(name, exact, time.perf_counter() - started, tmp, queries, args, truth=None, exact=exact))
    truth = rows[0].pop("found")
    for kind, params, settings in builds:
        started = time.perf_counter()
        index = EmbeddingIndex.build(embeddings, kind, **params)
        build_seconds = time.perf_counter() - started
        for setting in settings:
            index.tune(**setting)
            rows.append(_row(name, index, build_seconds, tmp, queries, args, truth, exact))
            rows[-1].pop("found")
        del index
    return rows


def _row(name: str, index: EmbeddingIndex, build_seconds: float, tmp: Path, queries: np.ndarray,
         args: argparse.Namespace, truth: list[set[str]] | None, exact: EmbeddingIndex) -> dict[str, object]:
    """One setting measured: size, speed, speed of exact search just after, recall against `truth`."""
    folder = tmp / index.kind
    index.save(folder)
    size = (folder / INDEX_FILE).stat().st_size
    index.search(queries[:WARM_UP], args.k)  # first touches of the index's memory are not timed
    load = os.getloadavg()[0]
    found, seconds = timed_search(index, queries, args.k)
    qps = len(queries) / seconds
    if truth is None:
        truth, exact_qps = found, qps
    else:
        reference = queries[:args.reference or len(queries)]
        _, exact_seconds = timed_search(exact, reference, args.k)
        exact_qps = len(reference) / exact_seconds
    recall = float(np.mean([len(f & t) / args.k for f, t in zip(found, truth)]))
    row = {"catalogue": name, "kind": index.kind, "params": {**index.params}, "build_s": build_seconds,
           "index_mb": size / 2**20, "queries_per_s": qps, "exact_queries_per_s": exact_qps,
           "speedup_vs_exact": qps / exact_qps, f"recall@{args.k}": recall, "load_1min": load, "found": found}
    print(f"{name:9s} {index.kind:5s} {_setting(index.kind, index.params):38s} build {build_seconds:7.1f} s  "
          f"{size / 2**20:8.1f} MB  {qps:9.0f} q/s  {qps / exact_qps:6.1f}x exact ({exact_qps:.0f} q/s)  "
          f"recall@{args.k} {recall:.3f}  load {load:.1f}", flush=True)
    return row


def _setting(kind: str, params: dict[str, int]) -> str:
    keys = {"flat": (), "hnsw": ("hnsw_m", "ef_construction", "ef_search"),
            "ivfpq": ("nlist", "pq_m", "nbits", "nprobe")}[kind]
    return " ".join(f"{key}={params[key]}" for key in keys) or "exact"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--reference", type=int, default=0,
                        help="queries of the exact search timed after each setting, for its speed-up (default "
                             "all: exact search per query is cheaper in larger batches, so a smaller reference "
                             "batch flatters the approximate index)")
    parser.add_argument("--threads", type=int, default=2, help="faiss (OpenMP) threads")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--intrinsic", type=int, default=16, help="directions each synthetic cluster spreads in")
    parser.add_argument("--corpus", type=Path, default=Path("/work/runs/corpus-medium/emb/mfcc"),
                        help="embedding folder to replicate with noise (skipped when absent)")
    parser.add_argument("--noise", type=float, default=0.5, help="noise of each copy, times the dimension's spread")
    parser.add_argument("--hnsw-m", type=_ints, default=[16, 32])
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=_ints, default=[64, 128, 256],
                        help="HNSW candidates per query (searches raise it to k when it is below)")
    parser.add_argument("--nlist", type=int, default=4000)
    parser.add_argument("--pq-m", type=_ints, default=[32, 64], help="IVF-PQ sub-quantizers (the corpus uses the "
                        "largest divisor of its dimension not above each); empty for no IVF-PQ")
    parser.add_argument("--nprobe", type=_ints, default=[8, 32, 128])
    parser.add_argument("--catalogues", type=lambda text: text.split(","), default=["synthetic", "corpus"],
                        help="which catalogues to measure: synthetic, corpus or both (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    faiss = import_faiss()
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    with recorded_run(bench_record_path("ann", args.results), extra={"settings": settings}) as record, \
            tempfile.TemporaryDirectory(prefix="ann-bench-") as tmp:
        record["faiss_threads"] = faiss.omp_get_max_threads()
        rows = []
        if "synthetic" in args.catalogues:
            items, queries = clustered(args.items, args.queries, args.dim, args.clusters, args.intrinsic, rng)
            rows += measure("synthetic", items, queries, args, Path(tmp) / "synthetic")
            del items, queries
        if "corpus" not in args.catalogues:
            record["corpus"] = None
        elif (args.corpus / "manifest.json").exists() or args.corpus.is_file():
            base = ItemEmbeddings.load(args.corpus).vectors
            items, queries = replicated(base, args.items, args.queries, args.noise, rng)
            corpus_args = argparse.Namespace(**{**vars(args), "hnsw_m": args.hnsw_m[-1:],
                                                "pq_m": [_divisor(base.shape[1], m) for m in args.pq_m]})
            record["corpus"] = {"folder": str(args.corpus), "tracks": len(base), "dim": base.shape[1]}
            rows += measure("corpus", items, queries, corpus_args, Path(tmp) / "corpus")
        else:
            print(f"corpus catalogue skipped: no embeddings at {args.corpus}")
            record["corpus"] = None
        record["figures"] = rows
        reached = [r for r in rows if r["kind"] != "flat" and r[f"recall@{args.k}"] >= RECALL_GOAL
                   and r["speedup_vs_exact"] >= SPEEDUP_GOAL]
        record["goal"] = {"recall": RECALL_GOAL, "speedup": SPEEDUP_GOAL,
                          "reached_by": [{"catalogue": r["catalogue"], "kind": r["kind"], "params": r["params"]}
                                         for r in reached]}
        print(f"goal recall@{args.k} >= {RECALL_GOAL} at >= {SPEEDUP_GOAL:.0f}x exact: " + (
            "; ".join(f"{r['catalogue']} {r['kind']} {_setting(str(r['kind']), r['params'])}" for r in reached)
            or "reached by no setting"))


def _divisor(dim: int, wanted: int) -> int:
    """The largest divisor of `dim` not above `wanted` (the corpus's dimension may not be the synthetic one's)."""
    return max(m for m in range(1, wanted + 1) if dim % m == 0)


if __name__ == "__main__":
    main()

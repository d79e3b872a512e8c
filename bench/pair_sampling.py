"""Pair sampling throughput of the editorial and playlist pair sources, against the training step they feed.

    python bench/pair_sampling.py [--data /work/runs/corpus-medium] [--batch 256] [--batches 300]
                                  [--step-records bench/results/htcl-medium/runs]

On a corpus folder (skipped, with a line saying so, when it is absent) this builds each source the way HTCL does
(the train split before the cutoff, the held-out tracks of the default holdout_share and holdout_seed removed)
and times:
- setup: building the source (Word2Vec training for playlist-emb, co-occurrence counting for playlist-top);
- sampling: `--batches` batches of `--batch` pairs, each from a generator seeded by (seed, step) through
  `sample_mixed`, exactly as `BatchMaker` draws a step's batch (after 10 untimed warm-up batches). Median and 95th
  percentile milliseconds per batch and pairs/s; the existing `playlist` source (neighbours in a playlist, drawn by
  the base class's per-pair Python loop) is timed beside them as the peer;
- what the drawn pairs have in common: the share whose anchor and positive share artist (collection), album
  (book), dance type and region (pairs with an unknown value left out), beside two random tracks' (chance), to
  read the similarity results by.
The step time comes from the recorded HTCL runs in `--step-records` whose batch is `--batch` (train_report.json:
seconds / steps), the fastest taken, since the cheaper the step the larger sampling's share; sampling's share of
it is median batch time / step time, and the verdict says whether every source stays under 5 %.
Prints a table and writes a provenance record (command, commit, machine, load average, figures) to
bench/results/pair-sampling-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tunespace.contrastive.htcl import Corpus, HTCLConfig
from tunespace.contrastive.pairs import make_pair_source, sample_mixed
from tunespace.provenance import bench_record_path, recorded_run

SOURCES = {"artist": {}, "album": {}, "playlist-random": {}, "playlist-top": {}, "playlist-emb": {},
           "playlist": {}}
"""Each source with its default options; `playlist` is the peer (the base class's sampler)."""
WARMUP = 10
SHARE_LIMIT = 0.05


AGREEMENT = ("artist_id", "album_id", "dance_type", "region")
"""Columns whose agreement between anchor and positive is reported: what each source's pairs have in common."""


def agreement(tracks: pd.DataFrame, anchors: np.ndarray, positives: np.ndarray) -> dict[str, float | None]:
    """Share of pairs whose two tracks hold the same known value of each AGREEMENT column (blank = unknown)."""
    shares: dict[str, float | None] = {}
    for column in AGREEMENT:
        if column not in tracks:
            continue
        values = tracks[column].astype("string").str.strip().replace({"": pd.NA, "unknown": pd.NA}).to_numpy()
        a, b = values[anchors], values[positives]
        known = ~(pd.isna(a) | pd.isna(b))
        shares[f"same_{column}"] = round(float((a[known] == b[known]).mean()), 3) if known.any() else None
    return shares


def time_source(name: str, options: dict, context, batch: int, batches: int, seed: int) -> dict:
    started = time.perf_counter()
    source = make_pair_source(name, context, **options)
    setup = time.perf_counter() - started
    for step in range(WARMUP):
        sample_mixed([source], np.random.default_rng([seed, step]), batch)
    seconds, pairs = np.empty(batches), np.empty(batches, dtype=np.int64)
    anchors, positives = [], []
    for i in range(batches):
        rng = np.random.default_rng([seed, WARMUP + i])
        started = time.perf_counter()
        drawn = sample_mixed([source], rng, batch)
        seconds[i] = time.perf_counter() - started
        pairs[i] = len(drawn.anchors)
        anchors.append(drawn.anchors)
        positives.append(drawn.positives)
    return {"source": name, "setup_s": round(setup, 3), "anchors": len(source),
            "unpaired": getattr(source, "unpaired", None), "pairs_per_batch": round(float(pairs.mean()), 1),
            "median_ms": round(float(np.median(seconds)) * 1e3, 4),
            "p95_ms": round(float(np.percentile(seconds, 95)) * 1e3, 4),
            "pairs_per_s": round(float(pairs.sum() / seconds.sum())),
            **agreement(context.tracks, np.concatenate(anchors), np.concatenate(positives))}


def recorded_steps(folder: Path, batch: int) -> list[dict]:
    """Seconds per step of the recorded HTCL runs under `folder` trained at `batch`."""
    runs = []
    for report in sorted(folder.glob("*/train_report.json")):
        provenance = json.loads((report.parent / "provenance.json").read_text())
        settings = provenance.get("settings", {})
        if settings.get("train", {}).get("batch_size") != batch:
            continue
        done = json.loads(report.read_text())
        runs.append({"run": str(report.parent), "tune": settings.get("stage", {}).get("tune"),
                     "inputs": done.get("inputs"), "device": provenance.get("machine", {}).get("gpu") or "cpu",
                     "step_ms": round(1e3 * done["seconds"] / max(done["steps_run"], 1), 2)})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/runs/corpus-medium"))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-records", type=Path, default=Path(__file__).resolve().parent / "results" /
                        "htcl-medium" / "runs")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for this run's provenance record (default: bench/results)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (args.data / "tracks.parquet").exists():
        print(f"skipped: no corpus at {args.data} (build one with `tunespace corpus build --size medium`)")
        return
    record_path = bench_record_path("pair-sampling", args.results or Path(__file__).resolve().parent / "results")
    with recorded_run(record_path) as record:
        record["settings"] = vars(args)
        config = HTCLConfig()
        corpus = Corpus.load(args.data, config.cutoff)
        held = corpus.holdout(config).mask(corpus.tracks["track_id"].astype(str))
        context = corpus.pair_context(~held)
        rows = [time_source(name, options, context, args.batch, args.batches, args.seed)
                for name, options in SOURCES.items()]
        frame = pd.DataFrame(rows)
        peer = frame.set_index("source").loc["playlist", "median_ms"]
        frame["speedup_vs_peer"] = (peer / frame["median_ms"]).round(1)
        drawable = np.flatnonzero(~held)
        chance_rng = np.random.default_rng(args.seed)
        chance = agreement(corpus.tracks, chance_rng.choice(drawable, 100_000), chance_rng.choice(drawable, 100_000))
        steps = recorded_steps(args.step_records, args.batch) if args.step_records.exists() else []
        figures = record["figures"] = {"sources": frame.to_dict("records"), "recorded_steps": steps,
                                       "chance_agreement": chance, "catalogue": len(corpus.tracks),
                                       "held_out": int(held.sum())}
        print(frame.to_string(index=False))
        print(f"chance agreement (two random drawable tracks): {chance}")
        if steps:
            fastest = min(steps, key=lambda run: run["step_ms"])
            mine = frame[frame["source"] != "playlist"]
            share = mine["median_ms"].max() / fastest["step_ms"]
            figures["fastest_step"], figures["worst_share_of_step"] = fastest, share
            figures["under_5_percent"] = bool(share < SHARE_LIMIT)
            print(f"fastest recorded step at batch {args.batch}: {fastest['step_ms']} ms ({fastest['run']}, tune "
                  f"{fastest['tune']}, {fastest['device']}); slowest new source's median batch is {100 * share:.2f} % "
                  f"of it: {'under' if share < SHARE_LIMIT else 'NOT under'} 5 %")
        else:
            print(f"no recorded HTCL run at batch {args.batch} under {args.step_records}; no step-time share")
    print(f"provenance record: {record_path}")


if __name__ == "__main__":
    main()

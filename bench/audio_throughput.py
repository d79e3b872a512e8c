"""Audio embedding throughput: tunespace's `mfcc` and `musicnn-msd` backends against the reference musicnn.

    python bench/audio_throughput.py --reference-python /tmp/tfenv/bin/python     # 20 clips of 30 s
    python bench/audio_throughput.py --clips 4 --skip-memory                          # tunespace only, quick

1. Writes `--clips` synthetic music-like clips of `--seconds` each (seeded: chords, bass, melody, drums, noise) as
   16 kHz mono float WAV files in a temporary folder, so neither side resamples.
2. tunespace, per backend: decode each file (soundfile), cut it into the backend's segments, `frames` on batches of
   `--batch-size` segments, mean of the valid frames, `finalize`; timed from the first decode to the last vector
   (model loading is reported apart). This is the backend and its front end, not the sharded pipeline.
3. The reference, in a child process of `--reference-python` (a virtual environment with tensorflow-cpu 2.15,
   numpy<2, librosa and `pip install --no-deps musicnn==0.1.0`; skipped with a message when absent):
   a. as shipped: `musicnn.extractor.extractor(file, model="MSD_musicnn")` per file, which builds the graph and
      restores the weights on every call, then runs one patch per session call;
   b. warm: graph and weights loaded once, then per file the reference front end (`batch_data`: librosa load and
      mel) and one session call on all its patches: the reference without its per-call overheads. This run also
      gives the true per-patch penultimate values (the shipped extractor repeats the first patch's).
4. Parity on the same clips: max |difference| of the per-patch penultimate (200-d) between tunespace and 3b.
5. Peak resident memory of a `--memory-minutes` signal through each backend alone (segments and batches as in 2),
   in a fresh child process: the peak while embedding (VmHWM after resetting it; ru_maxrss where that is not
   possible), next to the resident size just before, which holds the signal (float32), torch and the model.

Throughput is in minutes of audio per second of wall time. Both sides use every core by default (torch:
`--threads`; TensorFlow: its own default). The load average is printed because the machine may be shared: on a busy
machine torch's OpenMP threads lose much more than TensorFlow's thread pool, and `--threads 1` is then the faster
setting for tunespace.

Each run writes a provenance record (command, commit, packages, machine, load, settings and the figures printed)
to `--results` (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch
from rich.console import Console
from rich.table import Table

from tunespace.audio.decode import load_audio
from tunespace.encoders.base import AudioBackend, get_backend
from tunespace.provenance import bench_record_path, recorded_run

RATE = 16000
REFERENCE_MODEL = "MSD_musicnn"

REFERENCE_CHILD = r"""
import contextlib, io, json, os, sys, time
import numpy as np
paths, model, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
import tensorflow as tf
import musicnn
from musicnn import models
from musicnn.extractor import batch_data, extractor

started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    for path in paths:
        extractor(path, model=model, input_length=3, input_overlap=False, extract_features=True)
shipped = time.perf_counter() - started

started = time.perf_counter()
tf.compat.v1.reset_default_graph()
x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
training = tf.compat.v1.placeholder(tf.bool)
logits, *_, penultimate = models.define_model(x, training, model, 50)
tags = tf.nn.sigmoid(logits)
session = tf.compat.v1.Session()
tf.compat.v1.train.Saver().restore(session, os.path.join(os.path.dirname(musicnn.__file__), model) + "/")
loaded = time.perf_counter() - started
started = time.perf_counter()
results = {}
for i, path in enumerate(paths):
    batch, _ = batch_data(path, 187, 187)
    results[f"taggram{i}"], results[f"penultimate{i}"] = session.run([tags, penultimate], {x: batch, training: False})
warm = time.perf_counter() - started
np.savez(out, **results)
print(json.dumps({"shipped_s": shipped, "warm_s": warm, "warm_load_s": loaded, "tensorflow": tf.__version__}))
"""


def music_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A few seconds of plausible music: chord changes, a sawtooth bass, a plucked melody, kick and hi-hat, noise."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n)
    beat = 60.0 / rng.uniform(80, 150)
    bar = 4 * beat
    for start in np.arange(0, seconds, bar):
        root = 110 * 2 ** (rng.integers(0, 12) / 12)
        span = (t >= start) & (t < start + bar)
        tt = t[span] - start
        for ratio in (1.0, 1.26 if rng.random() < 0.5 else 1.19, 1.498):
            out[span] += 0.15 * sum(np.sin(2 * np.pi * k * 2 * root * ratio * tt) / k for k in (1, 2, 3))
        out[span] += 0.3 * (2 * ((root / 2 * tt) % 1.0) - 1) * np.exp(-tt / bar)
    for eighth, start in enumerate(np.arange(0, seconds, beat / 2)):
        begin, length = int(start * RATE), int(0.25 * RATE)
        tt = np.arange(min(length, n - begin)) / RATE
        freq = 220 * 2 ** (rng.integers(0, 24) / 12)
        out[begin:begin + len(tt)] += 0.25 * np.sin(2 * np.pi * freq * tt) * np.exp(-tt * 12)
        out[begin:begin + len(tt)] += 0.05 * rng.standard_normal(len(tt)) * np.exp(-tt * 60)  # hi-hat
        if eighth % 2 == 0:  # kick: a falling sine
            kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 15)
            out[begin:begin + len(tt)] += 0.6 * kick
    out += 0.01 * rng.standard_normal(n)
    return (rng.uniform(0.3, 0.95) * out / np.abs(out).max()).astype(np.float32)


def write_clips(folder: Path, count: int, seconds: float, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"clip{i:03d}.wav"
        soundfile.write(path, music_clip(rng, seconds), RATE, subtype="FLOAT")
        paths.append(path)
    return paths


def segments(audio: np.ndarray, backend: AudioBackend) -> list[np.ndarray]:
    """The pipeline's cut: segments of segment_seconds, a trailing sliver shorter than min_seconds dropped."""
    size = round(backend.segment_seconds * backend.sample_rate)
    least = int(np.ceil(backend.min_seconds * backend.sample_rate))
    pieces = [audio[i:i + size] for i in range(0, len(audio), size)]
    return [p for i, p in enumerate(pieces) if i == 0 or len(p) >= least]


def embed(backend: AudioBackend, sources: Sequence[Path | np.ndarray], batch_size: int,
          keep_frames: bool = True) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """Track vectors and, per track, its valid frames if `keep_frames`; `sources` are paths (decoded here) or arrays."""
    sums = np.zeros((len(sources), backend.dim))
    counts = np.zeros(len(sources))
    frames: list[list[np.ndarray]] = [[] for _ in sources]
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        lengths = torch.tensor([len(s) for _, s in pending])
        waveforms = torch.zeros(len(pending), int(lengths.max()))
        for row, (_, piece) in enumerate(pending):
            waveforms[row, :len(piece)] = torch.from_numpy(piece)
        features, valid = backend.frames(waveforms, lengths)
        for row, (track, _) in enumerate(pending):
            kept = features[row][valid[row]].double().numpy()
            sums[track] += kept.sum(axis=0)
            counts[track] += len(kept)
            if keep_frames:
                frames[track].append(kept)
        pending.clear()

    for track, source in enumerate(sources):
        audio = load_audio(source, backend.sample_rate) if isinstance(source, Path) else source
        for piece in segments(audio, backend):
            pending.append((track, piece))
            if len(pending) == batch_size:
                flush()
    if pending:
        flush()
    return backend.finalize(sums / counts[:, None], counts), frames


def run_tunespace(name: str, paths: list[Path], batch_size: int) -> dict:
    started = time.perf_counter()
    backend = get_backend(name)
    loaded = time.perf_counter() - started
    embed(backend, paths[:1], batch_size)  # warm-up: first-call allocations and kernel selection
    started = time.perf_counter()
    vectors, frames = embed(backend, paths, batch_size)
    return {"seconds": time.perf_counter() - started, "load_s": loaded, "vectors": vectors,
            "frames": [np.concatenate(f) for f in frames]}


def run_reference(python: str, paths: list[Path], folder: Path) -> dict | None:
    if not python or not Path(python).is_file():
        print(f"skipping the reference: no python at {python!r} (this script's docstring says how to make one)")
        return None
    out = folder / "reference.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    child = subprocess.run([python, "-c", REFERENCE_CHILD, json.dumps([str(p) for p in paths]), REFERENCE_MODEL,
                            str(out)], capture_output=True, text=True, env=env)
    if child.returncode != 0:
        print(f"skipping the reference: its child process failed:\n{child.stderr[-2000:]}")
        return None
    report = json.loads(child.stdout.strip().splitlines()[-1])
    with np.load(out) as data:
        report["penultimate"] = [data[f"penultimate{i}"] for i in range(len(paths))]
    return report


def memory_child(name: str, minutes: float, batch_size: int) -> None:
    backend = get_backend(name)
    rng = np.random.default_rng(1)
    audio = np.concatenate([music_clip(rng, 60.0) for _ in range(int(np.ceil(minutes)))])[:int(minutes * 60 * RATE)]
    before = _status_bytes("VmRSS")
    reset = _reset_peak()
    started = time.perf_counter()
    embed(backend, [audio], batch_size, keep_frames=False)
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_bytes": peak, "before_bytes": before, "seconds": seconds}))


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    """Linux can restart the peak-RSS count (so the synthesis of the test signal is not in it); False elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory(names: list[str], minutes: float, batch_size: int, threads: int, console: Console) -> dict:
    table = Table(title=f"Peak memory: one {minutes:g}-minute signal through the backend alone (batch {batch_size})")
    for column in ("backend", "resident before (MiB)", "peak (MiB)", "peak - before (MiB)", "audio min/s"):
        table.add_column(column, justify="right" if column != "backend" else "left")
    figures = {}
    for name in names:
        child = subprocess.run([sys.executable, __file__, "--part", "memory-child", "--backend", name,
                                "--memory-minutes", str(minutes), "--batch-size", str(batch_size),
                                "--threads", str(threads)], capture_output=True, text=True, check=True)
        report = json.loads(child.stdout.strip().splitlines()[-1])
        mib = 2**20
        table.add_row(name, f"{report['before_bytes'] / mib:.0f}", f"{report['peak_bytes'] / mib:.0f}",
                      f"{(report['peak_bytes'] - report['before_bytes']) / mib:.0f}",
                      f"{minutes / report['seconds']:.2f}")
        figures[name] = {"before_mib": report["before_bytes"] / mib, "peak_mib": report["peak_bytes"] / mib,
                         "seconds": report["seconds"], "audio_min_per_s": minutes / report["seconds"]}
    console.print(table)
    return figures


def throughput(args: argparse.Namespace, console: Console) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_clips(folder, args.clips, args.seconds)
        minutes = args.clips * args.seconds / 60
        load_before = os.getloadavg()[0]
        console.print(f"{args.clips} clips x {args.seconds:g} s = {minutes:.1f} min of audio; torch threads "
                      f"{torch.get_num_threads()}; load average {load_before:.2f}")
        ours = {name: run_tunespace(name, paths, args.batch_size) for name in ("mfcc", "musicnn-msd")}
        reference = run_reference(args.reference_python, paths, folder)
        load_after = os.getloadavg()[0]
        console.print(f"load average after: {load_after:.2f}")
        if load_after > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
            console.print("the machine is busy: torch's OpenMP threads wait at every barrier for a descheduled peer "
                          "(TensorFlow's work-stealing pool does not), so compare with --threads 1")

    rates = {f"tunespace {name}": minutes / r["seconds"] for name, r in ours.items()}
    loads = {f"tunespace {name}": r["load_s"] for name, r in ours.items()}
    seconds = {f"tunespace {name}": r["seconds"] for name, r in ours.items()}
    if reference is not None:
        for label, key, load in (("reference musicnn, as shipped", "shipped_s", None),
                                 ("reference musicnn, warm graph", "warm_s", reference["warm_load_s"])):
            rates[label], seconds[label], loads[label] = minutes / reference[key], reference[key], load
    table = Table(title=f"Throughput, {args.clips} x {args.seconds:g} s clips (minutes of audio per second)")
    for column in ("pipeline", "wall s", "audio min/s", "model load s", "x shipped", "x warm"):
        table.add_column(column, justify="right" if column != "pipeline" else "left")
    for label, rate in rates.items():
        ratios = [f"{rate / rates[ref]:.2f}" if ref in rates else "-"
                  for ref in ("reference musicnn, as shipped", "reference musicnn, warm graph")]
        load = "-" if loads[label] is None else f"{loads[label]:.2f}"
        table.add_row(label, f"{seconds[label]:.1f}", f"{rate:.2f}", load, *ratios)
    console.print(table)
    figures = {"audio_minutes": minutes, "reference_ran": reference is not None, "load_average_before": load_before,
               "load_average_after": load_after,
               "pipelines": {label: {"wall_s": seconds[label], "audio_min_per_s": rate, "model_load_s": loads[label],
                                     **{f"x {ref.removeprefix('reference musicnn, ')}": rate / rates[ref]
                                        for ref in ("reference musicnn, as shipped", "reference musicnn, warm graph")
                                        if ref in rates}}
                             for label, rate in rates.items()}}

    if reference is not None:
        ours_frames = ours["musicnn-msd"]["frames"]
        pairs = zip(ours_frames, reference["penultimate"], strict=True)
        diffs = [np.abs(o - r).max() for o, r in pairs if o.shape == r.shape]
        shapes_agree = len(diffs) == len(ours_frames)
        track_means = np.abs(ours["musicnn-msd"]["vectors"] - np.stack([r.mean(axis=0) for r in
                                                                         reference["penultimate"]])).max()
        patches = sum(len(f) for f in ours_frames)
        console.print(f"parity with the reference (TensorFlow {reference['tensorflow']}), {patches} patches: "
                      f"patch counts agree: {shapes_agree}; max |penultimate difference| per patch "
                      f"{max(diffs):.2e}; per track mean {track_means:.2e}")
        figures["parity"] = {"tensorflow": reference["tensorflow"], "patches": patches,
                             "patch_counts_agree": shapes_agree,
                             "max_penultimate_difference_per_patch": max(diffs),
                             "max_track_mean_difference": track_means}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "throughput", "memory", "memory-child"], default="all")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=16, help="segments per frames() call, as the pipeline")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reference-python", default="/tmp/tfenv/bin/python", help="'' to skip the reference")
    parser.add_argument("--memory-minutes", type=float, default=30.0)
    parser.add_argument("--backend", default="musicnn-msd", help="memory-child only")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for this run's provenance record (default: bench/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "memory-child":
        memory_child(args.backend, args.memory_minutes, args.batch_size)
        return
    console = Console(width=120)
    record_path = bench_record_path(__file__, args.results, tag=None if args.part == "all" else args.part)
    with recorded_run(record_path) as record:
        record["settings"] = vars(args)
        figures = record["figures"] = {}
        if args.part in ("all", "throughput"):
            figures["throughput"] = throughput(args, console)
        if args.part == "memory" or (args.part == "all" and not args.skip_memory):
            figures["memory"] = memory(["mfcc", "musicnn-msd"], args.memory_minutes, args.batch_size, args.threads,
                                       console)
    console.print(f"provenance record: {record_path}")


if __name__ == "__main__":
    main()

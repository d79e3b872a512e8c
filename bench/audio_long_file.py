"""Peak memory of embedding one very long file, streamed by `tunespace embed`, against decoding it whole.

    python bench/audio_long_file.py                          # 30 min, backends mfcc and musicnn-msd
    python bench/audio_long_file.py --minutes 60 --backends mfcc

Writes a FLAC file of `--minutes` of music-like audio (44.1 kHz stereo: chords with vibrato, noise, loudness
swells), then in a fresh child process per measurement:
- `tunespace embed` on a one-track catalogue (streamed decoding, segment by segment);
- the naive way for mfcc: decode the whole file, resample, and compute MFCC statistics in one go.
Each child reports its own peak resident memory (ru_maxrss); the ratio naive / streamed is printed. The goal of
issue 4 is under 2 GiB for a 30-minute file. Each run writes a provenance record (command, commit, packages,
machine, load, settings and the figures printed) to `--results` (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from tunespace.provenance import bench_record_path, recorded_run

CHILD = """
import json, resource, sys, time
started = time.perf_counter()
mode, backend, folder, batch = sys.argv[1:5]
if mode == "streamed":
    from tunespace.cli.main import main
    code = main(["embed", "--backend", backend, "--data", folder, "--out", folder + f"/emb-{backend}-{batch}",
                 "--batch-size", batch])
else:
    from tunespace.audio.decode import load_audio
    from tunespace.audio.features import mfcc_stats
    mfcc_stats(load_audio(folder + "/long.flac", 16000), 16000)
    code = 0
print(json.dumps({"code": code, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - started}))
"""


def write_long_file(path: Path, minutes: float, rate: int = 44100) -> None:
    """Chunked synthesis so the benchmark itself never holds the whole file."""
    rng = np.random.default_rng(0)
    block = rate * 10
    with soundfile.SoundFile(path, "w", rate, 2, format="FLAC", subtype="PCM_16") as handle:
        for start in range(0, int(minutes * 60 * rate), block):
            t = (start + np.arange(block)) / rate
            root = 110 * 2 ** (int(t[0] // 2) % 12 / 12)
            chord = sum(np.sin(2 * np.pi * root * ratio * t * (1 + 0.002 * np.sin(2 * np.pi * 5 * t)))
                        for ratio in (1, 1.25, 1.5))
            swell = 0.5 + 0.4 * np.sin(2 * np.pi * t / 30)
            mono = 0.2 * swell * chord + 0.01 * rng.normal(size=block)
            handle.write(np.stack([mono, 0.9 * mono], axis=1).astype(np.float32))


def measure(mode: str, backend: str, folder: Path, batch: int = 0) -> dict:
    output = subprocess.run([sys.executable, "-c", CHILD, mode, backend, str(folder), str(batch)], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--backends", default="mfcc,musicnn-msd")
    parser.add_argument("--batch-sizes", default="4,16", help="segments per forward pass, one run each")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for this run's provenance record (default: bench/results)")
    args = parser.parse_args()
    record_path = bench_record_path(__file__, args.results)
    with recorded_run(record_path) as record, tempfile.TemporaryDirectory() as tmp:
        record["settings"] = vars(args)
        folder = Path(tmp)
        started = time.perf_counter()
        write_long_file(folder / "long.flac", args.minutes)
        print(f"wrote {args.minutes:g} min of 44.1 kHz stereo FLAC ({(folder / 'long.flac').stat().st_size / 2**20:.0f}"
              f" MiB) in {time.perf_counter() - started:.0f} s")
        pd.DataFrame({"track_id": ["long"], "audio_path": ["long.flac"]}).to_parquet(folder / "tracks.parquet")
        rows = []
        for backend in args.backends.split(","):
            for batch in map(int, args.batch_sizes.split(",")):
                result = measure("streamed", backend, folder, batch)
                rows.append({"backend": backend, "way": f"tunespace embed, batch {batch}", **result})
        naive = measure("whole", "mfcc", folder)
        rows.append({"backend": "mfcc", "way": "decode whole file, then MFCC", **naive})
        frame = pd.DataFrame(rows)
        frame["audio_min_per_s"] = args.minutes / frame["seconds"]
        print(frame.round(2).to_string(index=False))
        streamed = frame[(frame.backend == "mfcc") & frame.way.str.startswith("tunespace")]["peak_mib"].min()
        print(f"peak memory, naive whole-file MFCC / streamed (smallest batch): {naive['peak_mib'] / streamed:.1f}x")
        record["figures"] = {"file_mib": (folder / "long.flac").stat().st_size / 2**20,
                             "runs": frame.to_dict("records"),
                             "ratio_peak_naive_over_streamed": naive["peak_mib"] / streamed}
    print(f"provenance record: {record_path}")


if __name__ == "__main__":
    main()

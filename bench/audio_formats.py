"""MFCC extraction throughput by file format and decoder: the corpus's 16 kHz mono FLAC renders against the same
audio as 44.1 kHz Ogg Vorbis, 48 kHz Opus and 44.1 kHz AAC in M4A (what real collections hold), through the real
pipeline (`Extractor`: decode, resample with soxr, segments, the backend, shards), decoded by soundfile (libsndfile)
or by PyAV (ffmpeg; `--decoder auto` when installed), with decoding prefetched by background threads (`prefetch` 4,
the default) or one track at a time (`prefetch` 1). libsndfile cannot read AAC, so M4A runs through PyAV only.

    python bench/audio_formats.py --data CORPUS [--tracks 40] [--backend mfcc]

The renders are real tunes performed by a synthesiser, not recordings; what the format changes is the cost of
decoding and resampling, which this measures. Prints audio minutes per second and the ratio to FLAC, and writes a
provenance record to `--results` (default bench/results).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from tunespace.data.dataset import Dataset
from tunespace.encoders.extract import ExtractionConfig, Extractor
from tunespace.provenance import bench_record_path, recorded_run

FORMATS = {"flac-16k": (16000, "FLAC", "PCM_16", ".flac"), "ogg-44k": (44100, "OGG", "VORBIS", ".ogg"),
           "opus-48k": (48000, "OGG", "OPUS", ".opus"), "aac-44k": (44100, "MP4", "AAC", ".m4a")}


def write_copies(tracks: pd.DataFrame, root: Path, out: Path) -> dict[str, pd.DataFrame]:
    """Each track re-encoded in every format (stereo for the lossy ones, as collections hold them)."""
    tables = {}
    for name, (rate, container, subtype, suffix) in FORMATS.items():
        rows = []
        for row in tracks.itertuples():
            signal, source_rate = sf.read(root / row.audio_path, dtype="float32")
            if rate != source_rate:
                signal = soxr.resample(signal, source_rate, rate)
            if name != "flac-16k":
                signal = np.stack([signal, signal], axis=1)
            path = out / name / f"{row.track_id}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if container == "MP4":
                write_aac(path, signal, rate)
            else:
                sf.write(path, signal, rate, format=container, subtype=subtype)
            rows.append({"track_id": row.track_id, "audio_path": str(path.relative_to(out))})
        tables[name] = pd.DataFrame(rows)
    return tables


def write_aac(path: Path, signal: np.ndarray, rate: int) -> None:
    """AAC in MP4 through ffmpeg's encoder (PyAV): libsndfile writes no AAC."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal.T.astype(np.float32)), format="fltp",
                                           layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--backend", default="mfcc")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    tracks = Dataset.load(args.data).tracks.head(args.tracks)
    figures: dict[str, dict[str, float]] = {}
    with recorded_run(bench_record_path(__file__, args.results), extra={"settings": vars(args)}) as record, \
            tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tables = write_copies(tracks, args.data, tmp)
        for name, table in tables.items():
            for decoder, prefetch in (("soundfile", 4), ("soundfile", 1), ("av", 4), ("av", 1)):
                if decoder == "soundfile" and name.startswith("aac"):
                    continue
                out = tmp / f"emb-{name}-{decoder}-{prefetch}"
                started = time.perf_counter()
                summary = Extractor(ExtractionConfig(args.backend, prefetch=prefetch, decoder=decoder)).run(
                    table, tmp, out)
                seconds = time.perf_counter() - started
                minutes = float(summary.audio_seconds) / 60
                figures[f"{name} {decoder} prefetch {prefetch}"] = {
                    "seconds": seconds, "audio_minutes": minutes, "audio_minutes_per_second": minutes / seconds,
                    "skipped": summary.skipped}
        base = figures["flac-16k soundfile prefetch 4"]["audio_minutes_per_second"]
        for label, row in figures.items():
            row["ratio_to_flac"] = row["audio_minutes_per_second"] / base
            name, decoder, _, prefetch = label.split()
            peer = figures.get(f"{name} soundfile prefetch {prefetch}")
            row["ratio_to_soundfile"] = row["audio_minutes_per_second"] / peer["audio_minutes_per_second"] \
                if peer else None
            versus = f", {row['ratio_to_soundfile']:.2f}x soundfile" if peer and decoder == "av" else ""
            print(f"{label:30s} {row['audio_minutes_per_second']:7.2f} audio min/s  ({row['ratio_to_flac']:.2f}x "
                  f"FLAC 16 kHz{versus}), {row['seconds']:.1f} s")
        record["figures"] = figures


if __name__ == "__main__":
    main()

"""Embed every track of a catalogue with a backend: decode, resample, segment, batch, encode, pool, write shards.

Why it is built this way:
- Tracks are assigned to fixed shards of `shard_size` in catalogue order. A shard is written atomically once all
  its tracks are done, so a killed run resumes at the first missing shard and produces byte-identical shards to an
  uninterrupted run (a shard is always computed with the same batches). Workers of a distributed run take shards
  `k % workers == worker` and write into the same folder.
- A file that is missing, not audio, empty, silent, shorter than `min_seconds`, non-finite or that the model fails
  on is recorded with the reason in the shard's skipped file; the run goes on. A clip shorter than `min_seconds`
  (0.5 s by default, never below the backend's own receptive field) would be embedded from a handful of frames
  and sit among real tracks as if it were one, so it is skipped instead.
- A shard in progress is checkpointed every `checkpoint_tracks` tracks (and at the first track end after
  `checkpoint_seconds`) to `partial-XXXXX.parquet`, atomically, with the rows done so far and their skips; a
  restart resumes after them. Batches never span a `checkpoint_tracks` boundary, so resuming from such a checkpoint
  gives the same batches, hence byte-identical shards (a time-triggered checkpoint closes its batch early, which
  changes nothing for a backend whose frames ignore padding, as `AudioBackend.frames` promises).
- The folder remembers its catalogue in `catalogue.parquet` (layout order, with the batch each track came in).
  A later run whose tracks table holds all those tracks unchanged (track_id, audio_path, and size/mtime columns
  if both tables have them) embeds only the new tracks into new shards; a removed or changed track is refused.
- Audio is streamed in segments of the backend's `segment_seconds`, so a very long file costs one segment of
  memory at a time; the pooled mean (and std) is accumulated in float64 over the valid frames of all segments, so
  padding never enters the mean.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tunespace.audio.decode import AudioDecodeError
from tunespace.audio.stream import audio_seconds, resolve_decoder, stream_segments
from tunespace.encoders.base import AudioBackend, get_backend
from tunespace.errors import DataValidationError, TunespaceError
from tunespace.io import atomic_path, write_text

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CATALOGUE = "catalogue.parquet"  # the folder's tracks in shard order, with the batch (run) that added each
# Columns that identify a track's audio file beyond its path, compared when both catalogues have them.
FILE_IDENTITY_COLUMNS = ("size", "mtime", "audio_size", "audio_mtime")
POOLINGS = ("mean", "mean+std")
SKIPPED_COLUMNS = ["track_id", "audio_path", "kind", "reason"]
DEFAULT_MIN_SECONDS = 0.5
# Manifest keys added after output folders already existed: an older manifest without one is not refused for it.
LATER_MANIFEST_KEYS = ("min_seconds", "decoder")
NO_AUDIO_PATH = "no audio_path"  # the reason recorded for a row without a path


class ExtractionError(TunespaceError):
    """The extraction cannot start or resume as asked (mismatched manifest, bad configuration)."""


@dataclass
class ExtractionConfig:
    backend: str
    options: dict[str, Any] = field(default_factory=dict)  # backend constructor options (layer, weights...)
    pooling: str = "mean"
    batch_size: int = 16  # segments per forward pass
    shard_size: int = 256  # tracks per output shard
    device: str = "cpu"
    silence_peak: float = 1e-4  # a track whose peak |amplitude| stays below this is skipped as silent
    whole_file_seconds: float = 600.0  # longer files are streamed in the main thread instead of prefetched
    prefetch: int = 4  # tracks decoded ahead by background threads
    min_seconds: float = DEFAULT_MIN_SECONDS  # shorter tracks are skipped (the backend's own minimum if larger)
    checkpoint_tracks: int = 32  # a shard in progress is saved every this many tracks...
    checkpoint_seconds: float = 60.0  # ...and at the first track end after this many seconds since the last save
    decoder: str = "auto"  # auto (PyAV for compressed files when installed), soundfile or av: see audio.stream

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ExtractionError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.batch_size < 1 or self.shard_size < 1:
            raise ExtractionError("batch_size and shard_size must be positive")
        if not self.min_seconds >= 0:
            raise ExtractionError(f"min_seconds must be a non-negative number, got {self.min_seconds!r}")
        if self.checkpoint_tracks < 1 or not self.checkpoint_seconds > 0:
            raise ExtractionError("checkpoint_tracks and checkpoint_seconds must be positive")


@dataclass
class ExtractionReport:
    embedded: int = 0
    skipped: int = 0
    shards_written: int = 0
    shards_reused: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def audio_minutes_per_second(self) -> float:
        return self.audio_seconds / 60.0 / self.seconds if self.seconds else 0.0


@dataclass
class EmbeddedTracks:
    """What a run of tracks gave: the embedded ids and vectors in catalogue order, the skipped rows in the order they
    finished, the audio seconds of every finished track (embedded or skipped) and of the embedded ones."""

    ids: list[str]
    vectors: list[np.ndarray]
    skipped: list[dict[str, str]]
    durations: dict[str, float]
    seconds: float


class _Track:
    """Running sums over the valid frames of one track's segments."""

    def __init__(self, dim: int) -> None:
        self.total = np.zeros(dim, dtype=np.float64)
        self.squares = np.zeros(dim, dtype=np.float64)
        self.frames = 0
        self.samples = 0
        self.peak = 0.0
        self.pending = 0  # segments queued but not yet encoded
        self.ended = False
        self.error: str | None = None


def catalogue_digest(tracks: pd.DataFrame) -> str:
    """Identity of the catalogue an output folder belongs to, so a resume never mixes two catalogues."""
    text = "\n".join(f"{t}\t{p}" for t, p in zip(tracks["track_id"].astype(str), tracks["audio_path"].astype(str)))
    return hashlib.sha1(text.encode()).hexdigest()


def shard_path(out: Path, shard: int) -> Path:
    return out / f"shard-{shard:05d}.parquet"


def skipped_path(out: Path, shard: int) -> Path:
    return out / f"shard-{shard:05d}.skipped.parquet"


def partial_path(out: Path, shard: int) -> Path:
    """A shard's checkpoint; not named shard-* so that loaders never mistake it for a finished shard."""
    return out / f"partial-{shard:05d}.parquet"


def load_skipped(out: str | Path) -> pd.DataFrame:
    """All skipped tracks of an output folder: track_id, audio_path, kind (for counting) and the full reason."""
    files = sorted(Path(out).glob("shard-*.skipped.parquet"))
    if not files:
        return pd.DataFrame(columns=SKIPPED_COLUMNS)
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


class Extractor:
    """Runs one backend over a catalogue; see the module docstring for the guarantees."""

    def __init__(self, config: ExtractionConfig, backend: AudioBackend | None = None) -> None:
        self.config = config
        self.backend = backend or get_backend(config.backend, device=config.device, **config.options)
        if config.pooling == "mean+std" and type(self.backend).finalize is not AudioBackend.finalize:
            raise ExtractionError(f"backend {config.backend!r} publishes a fixed statistic; use pooling 'mean'")
        self.segment_samples = int(round(self.backend.segment_seconds * self.backend.sample_rate))
        self.min_samples = int(np.ceil(self.backend.min_seconds * self.backend.sample_rate))
        self.min_track_seconds = max(float(config.min_seconds), float(self.backend.min_seconds))
        self.skipped_so_far = 0  # tracks skipped so far in the current run, for progress lines
        self.decoder = resolve_decoder(config.decoder)

    @property
    def output_dim(self) -> int:
        extra = self.backend.dim if self.config.pooling == "mean+std" else 0
        return self.backend.output_dim + extra

    def manifest(self, tracks: pd.DataFrame) -> dict[str, Any]:
        config = asdict(self.config)
        return {"backend": config["backend"], "options": {k: str(v) for k, v in config["options"].items()},
                "pooling": config["pooling"], "shard_size": config["shard_size"], "dim": self.output_dim,
                "sample_rate": self.backend.sample_rate, "segment_seconds": self.backend.segment_seconds,
                "tracks": len(tracks), "catalogue": catalogue_digest(tracks),
                "min_seconds": self.min_track_seconds, "decoder": self.decoder}

    def run(self, tracks: pd.DataFrame, root: str | Path, out: str | Path, worker: int = 0, workers: int = 1,
            progress: Callable[[int, float], None] | None = None, source: str | None = None) -> ExtractionReport:
        """Embed `tracks` (track_id, audio_path relative to `root`) into shards under `out`, resuming if present.

        `source` names the tracks table in errors (default: `tracks.attrs["source"]`, else root/tracks.parquet).
        """
        if not 0 <= worker < workers:
            raise ExtractionError(f"worker {worker} is not in [0, {workers})")
        root, out = Path(root), Path(out)
        parts = self._plan(tracks, root, out, source)
        report = ExtractionReport()
        self.skipped_so_far = 0
        started = time.perf_counter()
        for shard in range(worker, len(parts), workers):
            part = parts[shard]
            if self._reuse(out, shard, len(part), report, progress):
                continue
            done = self._embed_shard(part, root, progress, partial_path(out, shard))
            self._finish_shard(out, shard, done, report)
        report.seconds = time.perf_counter() - started
        return report

    def embed_decoded(self, part: pd.DataFrame, root: str | Path,
                      decoded: Iterable[tuple[int, Iterable[np.ndarray], str | None]]) -> EmbeddedTracks:
        """Embed tracks decoded elsewhere (the Ray engine's decode tasks) as `run` embeds them: `decoded` gives
        (position in `part`, segments, problem) in order; nothing is checkpointed and the last batch ends with
        `part`, so a part that `run` would close a batch after gives the same batches, hence the same vectors."""
        return self._embed_shard(part, Path(root), None, None, decoded)

    def _plan(self, tracks: pd.DataFrame, root: Path, out: Path, source: str | None) -> list[pd.DataFrame]:
        """Check the table, prepare the folder (manifest, catalogue) and cut its tracks into the shards' rows."""
        _require_columns(tracks, root, source)
        tracks = tracks.reset_index(drop=True)
        layout = self._prepare(tracks, out)
        ordered = _in_layout_order(tracks, layout)
        return [ordered.iloc[start:stop] for start, stop in _shard_plan(layout["batch"].tolist(),
                                                                         self.config.shard_size)]

    def _reuse(self, out: Path, shard: int, size: int, report: ExtractionReport,
               progress: Callable[[int, float], None] | None) -> bool:
        """A shard already on disk is counted as reused (its stale checkpoint removed); False if it is missing."""
        if not shard_path(out, shard).exists():
            return False
        partial_path(out, shard).unlink(missing_ok=True)
        report.shards_reused += 1
        if skipped_path(out, shard).exists():
            self.skipped_so_far += pq.read_metadata(skipped_path(out, shard)).num_rows
        if progress is not None:
            progress(size, 0.0)
        return True

    def _finish_shard(self, out: Path, shard: int, done: EmbeddedTracks, report: ExtractionReport) -> None:
        self._write_shard(out, shard, (done.ids, done.vectors), done.skipped)
        partial_path(out, shard).unlink(missing_ok=True)
        report.shards_written += 1
        report.embedded += len(done.ids)
        report.skipped += len(done.skipped)
        report.audio_seconds += done.seconds

    def _prepare(self, tracks: pd.DataFrame, out: Path) -> pd.DataFrame:
        """Check (or write) the manifest and return the folder's layout: its tracks in shard order with a `batch`
        column, the tracks new in `tracks` appended as a new batch (manifest and catalogue updated atomically)."""
        path = out / MANIFEST
        if not path.exists():
            layout = _identity(tracks).assign(batch=0)
            out.mkdir(parents=True, exist_ok=True)
            self._save_layout(layout, out)
            return layout
        existing = json.loads(path.read_text(encoding="utf-8"))
        manifest = self.manifest(tracks)
        different = sorted(k for k in manifest if k not in ("tracks", "catalogue") and existing.get(k) != manifest[k]
                           and (k in existing or k not in LATER_MANIFEST_KEYS))
        if different:
            raise ExtractionError(f"{path}: this folder holds another extraction (differs in "
                                  f"{', '.join(different)}); use a new --out or remove it")
        layout = self._old_layout(existing, tracks, out)
        new = _identity(tracks)
        known = new.drop_duplicates("track_id").set_index("track_id")
        removed = layout.loc[~layout["track_id"].isin(known.index), "track_id"]
        if len(removed):
            raise ExtractionError(f"{path}: track {removed.iloc[0]!r} of this folder is no longer in the tracks table"
                                  f"{f' (nor {len(removed) - 1} more)' if len(removed) > 1 else ''}; use a new --out "
                                  "or remove the folder")
        for column in ["audio_path", *(c for c in FILE_IDENTITY_COLUMNS if c in layout and c in known)]:
            now = known.loc[layout["track_id"], column].to_numpy()
            changed = np.flatnonzero(layout[column].to_numpy() != now)
            if len(changed):
                first = changed[0]
                raise ExtractionError(f"{path}: track {layout['track_id'].iloc[first]!r} changed its {column} "
                                      f"({layout[column].iloc[first]} -> {now[first]})"
                                      f"{f' (and {len(changed) - 1} more tracks changed)' if len(changed) > 1 else ''}"
                                      "; use a new --out or remove the folder")
        added = new[~new["track_id"].isin(set(layout["track_id"]))]
        if len(added):
            batch = int(layout["batch"].max()) + 1 if len(layout) else 0
            layout = pd.concat([layout, added.assign(batch=batch)], ignore_index=True)
            self._save_layout(layout, out)
        elif not (out / CATALOGUE).exists():
            self._save_layout(layout, out)
        return layout

    def _old_layout(self, existing: dict[str, Any], tracks: pd.DataFrame, out: Path) -> pd.DataFrame:
        """The folder's catalogue; a folder from before catalogue.parquet must have its tracks as a prefix."""
        if (out / CATALOGUE).exists():
            layout = pd.read_parquet(out / CATALOGUE)
            return layout.astype({c: str for c in layout.columns if c != "batch"})
        count = int(existing.get("tracks", -1))
        if 0 <= count <= len(tracks) and catalogue_digest(tracks.iloc[:count]) == existing.get("catalogue"):
            return _identity(tracks.iloc[:count]).assign(batch=0)
        raise ExtractionError(f"{out / MANIFEST}: this folder holds another extraction (differs in catalogue, and "
                              "its tracks are not the first rows of this tracks table); use a new --out or remove it")

    def _save_layout(self, layout: pd.DataFrame, out: Path) -> None:
        with atomic_path(out / CATALOGUE) as tmp:
            layout.to_parquet(tmp, index=False)
        manifest = self.manifest(layout)
        manifest["batches"] = layout.groupby("batch", sort=True).size().astype(int).tolist()
        manifest["shards"] = len(_shard_plan(layout["batch"].tolist(), self.config.shard_size))
        write_text(json.dumps(manifest, indent=2), out / MANIFEST)

    def _write_shard(self, out: Path, shard: int, embedded: tuple[list[str], list[np.ndarray]],
                     skipped: list[dict[str, str]]) -> None:
        ids, vectors = embedded
        frame = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).astype(str)
        with atomic_path(skipped_path(out, shard)) as tmp:
            frame.to_parquet(tmp, index=False)
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.output_dim)
        table = pa.table({"track_id": pa.array(ids, type=pa.string()),
                          "embedding": pa.FixedSizeListArray.from_arrays(
                              pa.array(matrix.reshape(-1), type=pa.float32()), self.output_dim)})
        with atomic_path(shard_path(out, shard)) as tmp:  # written last: its presence marks the shard done
            pq.write_table(table, tmp)

    def _decode(self, path: Path) -> Iterable[np.ndarray]:
        return decode_track(path, self.backend.sample_rate, self.segment_samples, self.decoder,
                            self.config.whole_file_seconds)

    def _embed_shard(self, part: pd.DataFrame, root: Path, progress: Callable[[int, float], None] | None,
                     partial: Path | None,
                     decoded: Iterable[tuple[int, Iterable[np.ndarray], str | None]] | None = None
                     ) -> EmbeddedTracks:
        """Embed a shard's tracks, resuming from and saving to the checkpoint `partial` (None: neither); `decoded`
        gives the tracks already decoded (default: decoded here, ahead, by background threads)."""
        state: dict[int, _Track] = {}
        batch: list[tuple[int, np.ndarray]] = []
        rows = list(part[["track_id", "audio_path"]].itertuples(index=False))
        done_ids: list[str] = []
        vectors: list[np.ndarray] = []
        skipped: list[dict[str, str]] = []
        durations: dict[str, float] = {}  # audio seconds of every finished track, for the checkpoint
        seconds = 0.0
        start = 0
        restored = self._restore(partial, rows) if partial is not None else None
        if restored is not None:
            done_ids, vectors, skipped, durations = restored
            start = len(done_ids) + len(skipped)
            seconds = sum(durations[t] for t in done_ids)
            self.skipped_so_far += len(skipped)
            if progress is not None:
                progress(start, sum(durations.values()))
        saved = time.perf_counter()

        def flush() -> None:
            if batch:
                self._encode(batch, state)
                batch.clear()
            for position in [p for p, t in state.items() if t.ended and t.pending == 0]:
                track = state.pop(position)
                nonlocal seconds
                row = rows[position]
                vector, reason = self._finish(track)
                durations[str(row.track_id)] = track.samples / self.backend.sample_rate
                if reason is None:
                    done_ids.append(str(row.track_id))
                    vectors.append(vector)
                    seconds += track.samples / self.backend.sample_rate
                else:
                    self.skipped_so_far += 1
                    skipped.append({"track_id": str(row.track_id), "audio_path": str(row.audio_path),
                                    "kind": _kind(reason, str(root / str(row.audio_path))), "reason": reason})
                if progress is not None:
                    progress(1, track.samples / self.backend.sample_rate)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
            tracks = self._prefetched(rows, root, pool, start) if decoded is None else decoded
            for position, source, problem in tracks:
                track = state[position] = _Track(self.backend.dim)
                track.error = problem
                try:
                    for segment in source:
                        if len(segment) < self.min_samples and track.samples > 0:
                            track.samples += len(segment)
                            continue  # a sliver at the end: too short for the model, dropped (documented)
                        track.samples += len(segment)
                        track.peak = max(track.peak, float(np.abs(segment).max()))
                        track.pending += 1
                        batch.append((position, segment))
                        if len(batch) >= self.config.batch_size:
                            flush()
                except AudioDecodeError as error:
                    track.error = str(error)
                track.ended = True
                finished = position + 1
                if partial is not None and finished < len(rows) and (
                        finished % self.config.checkpoint_tracks == 0
                        or time.perf_counter() - saved >= self.config.checkpoint_seconds):
                    flush()  # every track so far is finished: nothing in flight crosses the checkpoint
                    self._checkpoint(partial, done_ids, vectors, skipped, durations)
                    saved = time.perf_counter()
                elif not batch:
                    flush()
            flush()
        order = {str(t): i for i, t in enumerate(part["track_id"])}
        ranked = sorted(range(len(done_ids)), key=lambda i: order[done_ids[i]])
        return EmbeddedTracks([done_ids[i] for i in ranked], [vectors[i] for i in ranked], skipped, durations, seconds)

    def _checkpoint(self, partial: Path, ids: list[str], vectors: list[np.ndarray], skipped: list[dict[str, str]],
                    durations: dict[str, float]) -> None:
        """Atomically save a shard's finished tracks (embedded, then skipped rows) so a restart resumes after them."""
        dim = self.output_dim
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(ids), dim)
        embeddings = [*(list(v) for v in matrix), *([None] * len(skipped))]
        every = ids + [s["track_id"] for s in skipped]
        table = pa.table({
            "track_id": pa.array(every, type=pa.string()),
            "embedding": pa.array(embeddings, type=pa.list_(pa.float32(), dim)),
            **{c: pa.array([None] * len(ids) + [s[c] for s in skipped], type=pa.string())
               for c in SKIPPED_COLUMNS[1:]},
            "seconds": pa.array([durations[t] for t in every], type=pa.float64())})
        with atomic_path(partial) as tmp:
            pq.write_table(table, tmp)

    def _restore(self, partial: Path, rows: list[Any]
                 ) -> tuple[list[str], list[np.ndarray], list[dict[str, str]], dict[str, float]] | None:
        """A shard's checkpoint if it holds exactly its first tracks; a stale or unreadable one is ignored."""
        if not partial.exists():
            return None
        try:
            frame = pq.read_table(partial).to_pandas()
        except Exception as error:  # noqa: BLE001 - a damaged checkpoint only costs its tracks
            logger.warning("ignoring the unreadable checkpoint %s (%s)", partial, error)
            return None
        expected = {str(r.track_id) for r in rows[:len(frame)]}
        if len(frame) > len(rows) or set(frame["track_id"]) != expected or frame["track_id"].duplicated().any():
            logger.warning("ignoring the checkpoint %s: it is not this shard's first tracks", partial)
            return None
        done = frame[frame["reason"].isna()]
        lost = frame[frame["reason"].notna()]
        vectors = [np.asarray(v, dtype=np.float32) for v in done["embedding"]]
        skipped = [{c: str(getattr(r, c)) for c in SKIPPED_COLUMNS} for r in lost.itertuples(index=False)]
        durations = dict(zip(frame["track_id"].astype(str), frame["seconds"].astype(float)))
        return list(done["track_id"].astype(str)), vectors, skipped, durations

    def _prefetched(self, rows: list[Any], root: Path, pool: ThreadPoolExecutor, start: int = 0
                    ) -> Iterator[tuple[int, Iterable[np.ndarray], str | None]]:
        """(position, segments, problem) in catalogue order from `start`, decoding up to `prefetch` tracks ahead."""
        ahead: deque[tuple[int, Future | None, str | None]] = deque()
        positions = iter(range(start, len(rows)))

        def submit() -> None:
            position = next(positions, None)
            if position is None:
                return
            path = rows[position].audio_path
            if not has_audio_path(path):
                ahead.append((position, None, NO_AUDIO_PATH))
            else:
                ahead.append((position, pool.submit(self._decode, root / str(path)), None))

        for _ in range(max(1, self.config.prefetch)):
            submit()
        while ahead:
            position, future, problem = ahead.popleft()
            submit()
            segments: Iterable[np.ndarray] = ()
            if future is not None:
                try:
                    segments = future.result()
                except AudioDecodeError as error:
                    problem = str(error)
            yield position, segments, problem

    def _encode(self, batch: list[tuple[int, np.ndarray]], state: dict[int, _Track]) -> None:
        try:
            self._accumulate(batch, state)
        except (RuntimeError, ValueError) as error:
            if len(batch) == 1:
                state[batch[0][0]].error = f"backend failed: {error}"
                state[batch[0][0]].pending -= 1
                return
            logger.warning("a batch failed (%s); retrying its segments one by one", error)
            for item in batch:
                self._encode([item], state)

    def _accumulate(self, batch: list[tuple[int, np.ndarray]], state: dict[int, _Track]) -> None:
        lengths = torch.tensor([len(s) for _, s in batch])
        waveforms = torch.zeros(len(batch), int(lengths.max()))
        for row, (_, segment) in enumerate(batch):
            waveforms[row, :len(segment)] = torch.from_numpy(segment)
        features, valid = self.backend.frames(waveforms.to(self.backend.device), lengths)
        features = features.detach().to("cpu", torch.float64)
        valid = valid.detach().to("cpu")
        weights = valid.to(torch.float64).unsqueeze(-1)
        sums = (features * weights).sum(dim=1).numpy()
        squares = (features.square() * weights).sum(dim=1).numpy()
        counts = valid.sum(dim=1).numpy()
        for row, (position, _) in enumerate(batch):
            track = state[position]
            track.total += sums[row]
            track.squares += squares[row]
            track.frames += int(counts[row])
            track.pending -= 1

    def _finish(self, track: _Track) -> tuple[np.ndarray | None, str | None]:
        rate = self.backend.sample_rate
        if track.error is not None:
            return None, track.error
        if track.samples == 0:
            return None, "empty: no samples"
        if track.samples < self.min_samples or track.samples < self.min_track_seconds * rate:
            return None, f"shorter than {_seconds(self.min_track_seconds)} s: {_seconds(track.samples / rate)} s"
        if track.peak < self.config.silence_peak:
            return None, f"silent: peak amplitude {track.peak:.2e} < {self.config.silence_peak:.0e}"
        if track.frames == 0:
            return None, "no valid frames from the backend"
        mean = track.total / track.frames
        vector = self.backend.finalize(mean[None, :], np.array([track.frames]))[0]
        if self.config.pooling == "mean+std":
            std = np.sqrt(np.maximum(track.squares / track.frames - mean**2, 0.0))
            vector = np.concatenate([vector, std])
        vector = np.asarray(vector, dtype=np.float32)
        if not np.isfinite(vector).all():
            return None, "backend produced non-finite values"
        return vector, None


def extract_embeddings(tracks: pd.DataFrame, root: str | Path, out: str | Path, config: ExtractionConfig,
                       worker: int = 0, workers: int = 1,
                       progress: Callable[[int, float], None] | None = None) -> ExtractionReport:
    """Convenience wrapper: build the backend from `config` and run it; see :class:`Extractor`."""
    return Extractor(config).run(tracks, root, out, worker=worker, workers=workers, progress=progress)


def decode_track(path: Path, sample_rate: int, segment_samples: int, decoder: str,
                 whole_file_seconds: float) -> Iterable[np.ndarray]:
    """A track's segments: a short file decoded whole (a list), a longer one as a lazy stream. Raises
    AudioDecodeError for a file that cannot be read (the stream may raise it after some segments)."""
    segments = stream_segments(path, sample_rate, segment_samples, decoder)
    return segments if audio_seconds(path, decoder) > whole_file_seconds else list(segments)


def has_audio_path(path: object) -> bool:
    """False for a row whose audio_path is missing (None, NaN, pd.NA as a Parquet null reads) or empty: it is skipped
    as NO_AUDIO_PATH."""
    return not (path is None or (not isinstance(path, str) and bool(pd.isna(path))) or str(path) == "")


def _identity(tracks: pd.DataFrame) -> pd.DataFrame:
    """What identifies each track's audio: track_id, audio_path and any file size/mtime columns, as text."""
    columns = ["track_id", "audio_path", *(c for c in FILE_IDENTITY_COLUMNS if c in tracks.columns)]
    return tracks[columns].astype(str).reset_index(drop=True)


def _in_layout_order(tracks: pd.DataFrame, layout: pd.DataFrame) -> pd.DataFrame:
    """The rows of `tracks` (original values: a missing audio_path stays missing) in the folder's layout order."""
    ids = tracks["track_id"].astype(str)
    if ids.tolist() == layout["track_id"].tolist():
        return tracks
    first = pd.Series(np.arange(len(tracks)), index=ids)
    first = first[~first.index.duplicated()]
    return tracks.iloc[first.loc[layout["track_id"]].to_numpy()].reset_index(drop=True)


def _shard_plan(batches: list[int], shard_size: int) -> list[tuple[int, int]]:
    """(start, stop) rows of the layout for each shard: every batch of tracks is cut into its own shards."""
    plan: list[tuple[int, int]] = []
    start = 0
    for _, group in itertools.groupby(batches):
        stop = start + len(list(group))
        plan.extend((s, min(s + shard_size, stop)) for s in range(start, stop, shard_size))
        start = stop
    return plan


def _require_columns(tracks: pd.DataFrame, root: Path, source: str | None) -> None:
    """A table without track_id or audio_path is one clear error naming the table, not a KeyError mid-run."""
    missing = [c for c in ("track_id", "audio_path") if c not in tracks.columns]
    if not missing:
        return
    if source is None:
        source = tracks.attrs.get("source") or (
            str(root / "tracks.parquet") if (root / "tracks.parquet").exists() else "tracks table")
    present = ", ".join(map(str, tracks.columns)) or "none"
    raise DataValidationError(str(source), f"missing column needed for audio extraction (columns present: {present}"
                              f"); audio_path is each track's audio file relative to {root}", column=missing[0])


def _seconds(value: float) -> str:
    """1.0, 0.5, 0.18, 0.025: enough digits to tell a clip from the threshold, no more."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _kind(reason: str, path: str) -> str:
    """The reason without the file name and the details: 'cannot decode', 'silent', 'too short'..."""
    text = reason.removeprefix(f"{path}: ")
    return text.split(" (")[0].split(":")[0].strip()


__all__ = ["EmbeddedTracks", "ExtractionConfig", "ExtractionError", "ExtractionReport", "Extractor", "decode_track",
           "extract_embeddings", "has_audio_path", "load_skipped"]

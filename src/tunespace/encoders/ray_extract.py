"""Extraction on Ray Data: the local Extractor's shards, decoded by Ray tasks and encoded by a pool of Ray actors.

Why it is built this way:
- `RayExtractor` is an `Extractor`: the same manifest, catalogue, shard plan, shard, skipped and checkpoint files
  and atomic writers, so a folder begun by one engine is finished by the other, and a bad file is skipped with the
  same reason.
- The unit of work is a block: a shard's tracks between two `checkpoint_tracks` boundaries (32 by default). The
  local engine never lets a batch of segments span such a boundary, so a block encoded on its own is cut into the
  very batches the local engine makes, and its vectors are the local ones bit for bit on the same kind of device
  (a time-triggered local checkpoint, `checkpoint_seconds`, closes a local batch early; for a backend whose frames
  ignore padding that changes the last bits at most).
- Blocks are decoded in CPU tasks and encoded by an actor pool: one actor per GPU when the cluster has GPUs, CPU
  actors otherwise. The decoded audio of a block travels through the object store as one row (32 tracks of 30 s
  at 16 kHz: 61 MB). Only the driver writes: it gathers each shard's track rows, checkpoints the shard's finished
  prefix to `partial-XXXXX.parquet` as blocks arrive and writes the shard atomically once it is complete, so a
  stopped run resumes at its first missing shard (from its checkpoint) with either engine.
- A worker process that dies (killed, out of memory, a lost node) is retried with Ray Data's own fault tolerance
  (the defaults since Ray 2.x, which deprecates setting them per call): a decode task is resubmitted, an actor
  restarted and its block retried, so the run finishes with the same output. A Python exception is not retried.
- Every node reads the audio under `root`, so on a cluster it is a path all nodes see (a shared file system).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tunespace.audio.decode import AudioDecodeError
from tunespace.encoders.base import AudioBackend
from tunespace.encoders.extract import (
    NO_AUDIO_PATH,
    EmbeddedTracks,
    ExtractionConfig,
    ExtractionError,
    ExtractionReport,
    Extractor,
    decode_track,
    has_audio_path,
    partial_path,
)
from tunespace.extras import needs_extra

logger = logging.getLogger(__name__)

BackendFactory = Callable[[str], AudioBackend]  # device -> backend, built inside each actor (and on the driver)
REACH_SECONDS = 5.0  # a cluster address that takes longer to accept a connection is reported unreachable


@dataclass
class RayConfig:
    address: str | None = None  # "host:port", "ray://host:port" or "auto"; None starts Ray on this machine
    actors: int | None = None  # encoder actors; default one per GPU, else half the cluster's CPUs (at least one)
    actor_cpus: float = 1.0  # CPUs an encoder actor reserves (its torch threads on a CPU actor)
    decode_cpus: float = 1.0  # CPUs a decode task reserves

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ExtractionError(f"actors must be at least 1, got {self.actors}")
        if not (self.actor_cpus > 0 and self.decode_cpus > 0):
            raise ExtractionError("actor_cpus and decode_cpus must be positive")


@dataclass(frozen=True)
class _DecodeSpec:
    """What a decode task needs to cut a track into the backend's segments, without building the backend."""

    root: str
    sample_rate: int
    segment_samples: int
    decoder: str
    whole_file_seconds: float


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start Ray on this machine; True if this call started (or joined) Ray, so
    the caller shuts it down; False if Ray was already initialised in this process."""
    with needs_extra("distributed"):
        import ray
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
        return True
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise ExtractionError(f"cannot join the Ray cluster at {address}: {error}") from error
    return True


def _check_reachable(address: str) -> None:
    """A bad address is one clear error within seconds (ray.init would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "localhost", int(port)), timeout=REACH_SECONDS).close()
    except (OSError, ValueError) as error:
        raise ExtractionError(f"no Ray cluster answers at {address!r} ({error}); start one with `ray start --head` "
                              "and give its address (host:port), or leave out --address to run Ray on this "
                              "machine") from error


class RayExtractor(Extractor):
    """An Extractor whose blocks of tracks are decoded and encoded on a Ray cluster; see the module docstring."""

    def __init__(self, config: ExtractionConfig, ray_config: RayConfig | None = None,
                 backend_factory: BackendFactory | None = None) -> None:
        # The driver's backend only describes the output (dimension, rate, segment); the actors build their own.
        super().__init__(replace(config, device="cpu"), backend_factory("cpu") if backend_factory else None)
        self.actor_config = config
        self.ray_config = ray_config or RayConfig()
        self.backend_factory = backend_factory

    def run(self, tracks: pd.DataFrame, root: str | Path, out: str | Path, worker: int = 0, workers: int = 1,
            progress: Callable[[int, float], None] | None = None, source: str | None = None) -> ExtractionReport:
        """Embed `tracks` into shards under `out` as `Extractor.run` does, resuming if present; the cluster shares
        the shards out itself (`worker`/`workers` are the local engine's split and must stay 0/1)."""
        if (worker, workers) != (0, 1):
            raise ExtractionError("the Ray engine shares the shards across its cluster; --worker/--workers split "
                                  "them between local engines")
        root, out = Path(root), Path(out)
        parts = self._plan(tracks, root, out, source)
        report = ExtractionReport()
        self.skipped_so_far = 0
        started = time.perf_counter()
        shards: dict[int, _Shard] = {}
        blocks: list[dict[str, Any]] = []
        for shard, part in enumerate(parts):
            if self._reuse(out, shard, len(part), report, progress):
                continue
            state = shards[shard] = _Shard(part, self._restore(partial_path(out, shard), _rows(part)))
            if state.start:
                self.skipped_so_far += len(state.skipped)
                if progress is not None:
                    progress(state.start, sum(state.durations.values()))
            blocks.extend(self._blocks(shard, part, state.start))
            if state.start == len(part):  # the checkpoint held every track
                self._finish_shard(out, shard, state.result(), report)
                del shards[shard]
        if blocks:
            started_ray = connect(self.ray_config.address)
            try:
                for rows in self._pipeline(blocks, root):
                    self._collect(rows, shards, out, report, progress)
            finally:
                if started_ray:
                    import ray

                    ray.shutdown()
        if shards:  # every block came back, so this is a bug, never a silent hole in the output
            raise ExtractionError(f"the Ray pipeline did not return every track of shards {sorted(shards)}")
        report.seconds = time.perf_counter() - started
        return report

    def _blocks(self, shard: int, part: pd.DataFrame, start: int) -> Iterator[dict[str, Any]]:
        """The shard's tracks from `start`, cut at every `checkpoint_tracks` boundary (where local batches end)."""
        every = self.config.checkpoint_tracks
        first = start
        while first < len(part):
            stop = min((first // every + 1) * every, len(part))
            rows = part.iloc[first:stop]
            yield {"shard": shard, "first": first, "track_id": rows["track_id"].astype(str).tolist(),
                   "audio_path": [str(p) for p in rows["audio_path"]],
                   "has_path": [has_audio_path(p) for p in rows["audio_path"]]}
            first = stop

    def _pipeline(self, blocks: list[dict[str, Any]], root: Path) -> Iterator[pa.Table]:
        """Decode tasks -> encoder actors; yields the encoders' track rows as blocks finish, in any order."""
        import ray
        from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

        context = DataContext.get_current()
        context.enable_progress_bars = context.print_on_execution_start = False  # the caller shows progress
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        actors = self.ray_config.actors or gpus or max(1, cpus // 2)
        if self.ray_config.address is not None:  # tasks on other machines: the path as all nodes see it
            root = root.resolve()
        spec = _DecodeSpec(str(root), self.backend.sample_rate, self.segment_samples, self.decoder,
                           self.config.whole_file_seconds)
        logger.info("Ray: %d blocks, %d %s encoder actors", len(blocks), actors, "GPU" if gpus else "CPU")
        dataset = ray.data.from_items(blocks, override_num_blocks=len(blocks))
        dataset = dataset.map_batches(_decode_blocks, fn_kwargs={"spec": spec}, batch_size=1, batch_format="pyarrow",
                                      num_cpus=self.ray_config.decode_cpus,
                                      compute=TaskPoolStrategy(size=self._decode_tasks(cpus, actors, len(blocks))))
        dataset = dataset.map_batches(
            _Encoder, fn_constructor_kwargs={"config": self.actor_config, "root": str(root),
                                             "factory": self.backend_factory, "threads": self.ray_config.actor_cpus},
            batch_size=1, batch_format="pyarrow", compute=ActorPoolStrategy(size=actors),
            num_cpus=self.ray_config.actor_cpus, num_gpus=1 if gpus else 0)
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")

    def _decode_tasks(self, cpus: int, actors: int, blocks: int) -> int:
        """The cap on decode tasks at once. Ray Data fuses a task map into the actor map after it when their
        resources agree and this cap equals the pool size: then each actor decodes its own blocks. That is what
        is wanted when the actors leave no CPU for a decode task (which would otherwise wait for ever); otherwise a
        cap other than the pool size keeps decoding in tasks beside the actors (GPU actors never fuse)."""
        free = cpus - actors * self.ray_config.actor_cpus
        if free < self.ray_config.decode_cpus:
            return actors
        tasks = max(1, min(int(free // self.ray_config.decode_cpus), blocks))
        return tasks + 1 if tasks == actors else tasks

    def _collect(self, rows: pa.Table, shards: dict[int, _Shard], out: Path, report: ExtractionReport,
                 progress: Callable[[int, float], None] | None) -> None:
        """File the encoders' track rows under their shards; checkpoint each grown prefix, write complete shards."""
        vectors = rows.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, self.output_dim)
        touched = set()
        for row, vector in zip(rows.drop_columns(["embedding"]).to_pylist(), vectors):
            shards[row["shard"]].add(row, vector)
            touched.add(row["shard"])
            if row["reason"] is not None:
                self.skipped_so_far += 1
            if progress is not None:
                progress(1, row["seconds"])
        for shard in sorted(touched):
            state = shards[shard]
            done = state.prefix()
            if done == len(state.part):
                self._finish_shard(out, shard, state.result(), report)
                del shards[shard]
            elif done > state.saved:
                result = state.result(done)
                self._checkpoint(partial_path(out, shard), result.ids, result.vectors, result.skipped,
                                 result.durations)
                state.saved = done


class _Shard:
    """A shard being assembled: its checkpointed first tracks, then the encoders' rows by position."""

    def __init__(self, part: pd.DataFrame, restored: tuple[list[str], list[np.ndarray], list[dict[str, str]],
                                                           dict[str, float]] | None) -> None:
        self.part = part
        self.ids, self.vectors, self.skipped, self.durations = restored or ([], [], [], {})
        self.start = self.saved = len(self.ids) + len(self.skipped)
        self.rows: dict[int, tuple[dict[str, Any], np.ndarray]] = {}

    def add(self, row: dict[str, Any], vector: np.ndarray) -> None:
        self.rows[row["position"]] = (row, vector)

    def prefix(self) -> int:
        """How many of the shard's first tracks are finished."""
        done = self.start
        while done in self.rows:
            done += 1
        return done

    def result(self, upto: int | None = None) -> EmbeddedTracks:
        """The first `upto` tracks (all by default) as the local engine would hold them, in the same order."""
        ids, vectors, skipped, durations = list(self.ids), list(self.vectors), list(self.skipped), dict(self.durations)
        seconds = sum(durations[t] for t in ids)
        for position in range(self.start, len(self.part) if upto is None else upto):
            row, vector = self.rows[position]
            durations[row["track_id"]] = row["seconds"]
            if row["reason"] is None:
                ids.append(row["track_id"])
                vectors.append(vector)
                seconds += row["seconds"]
            else:
                skipped.append({"track_id": row["track_id"], "audio_path": row["audio_path"], "kind": row["kind"],
                                "reason": row["reason"]})
        return EmbeddedTracks(ids, vectors, skipped, durations, seconds)


def _rows(part: pd.DataFrame) -> list[Any]:
    return list(part[["track_id", "audio_path"]].itertuples(index=False))


def _decode_blocks(batch: pa.Table, spec: _DecodeSpec) -> pa.Table:
    """Ray task: decode each block's tracks into the backend's segments, packed as flat arrays (one row a block)."""
    columns: dict[str, list[Any]] = {"shard": [], "first": [], "track_id": [], "audio_path": [], "problem": [],
                                     "segments": [], "lengths": []}
    samples: list[np.ndarray] = []
    offsets = [0]
    for block in batch.to_pylist():
        problems, counts, lengths = [], [], []
        for path, has_path in zip(block["audio_path"], block["has_path"]):
            segments: list[np.ndarray] = []
            problem = None if has_path else NO_AUDIO_PATH
            if has_path:
                try:  # a long file may fail after some segments: they are kept, as the local engine encodes them
                    for segment in decode_track(Path(spec.root) / path, spec.sample_rate, spec.segment_samples,
                                                spec.decoder, spec.whole_file_seconds):
                        segments.append(np.asarray(segment, dtype=np.float32))
                except AudioDecodeError as error:
                    problem = str(error)
            problems.append(problem)
            counts.append(len(segments))
            lengths.extend(len(s) for s in segments)
            samples.extend(segments)
        for key in ("shard", "first", "track_id", "audio_path"):
            columns[key].append(block[key])
        columns["problem"].append(problems)
        columns["segments"].append(counts)
        columns["lengths"].append(lengths)
        offsets.append(offsets[-1] + sum(lengths))
    flat = np.concatenate(samples) if samples else np.zeros(0, np.float32)
    table = pa.table({key: pa.array(values) for key, values in columns.items()})
    return table.append_column("samples", pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()),
                                                                        pa.array(flat, pa.float32())))


class _Encoder:
    """Ray actor: holds the backend and embeds decoded blocks with the local engine's own batching and pooling."""

    def __init__(self, config: ExtractionConfig, root: str, factory: BackendFactory | None, threads: float) -> None:
        import ray
        import torch

        device = "cuda" if ray.get_gpu_ids() else "cpu"
        if device == "cpu":
            torch.set_num_threads(max(1, int(threads)))
        self.extractor = Extractor(replace(config, device=device), factory(device) if factory else None)
        self.root = root

    def __call__(self, batch: pa.Table) -> pa.Table:
        frames = []
        for index in range(batch.num_rows):
            block = {key: batch.column(key)[index] for key in batch.column_names}
            ids = block["track_id"].as_py()
            part = pd.DataFrame({"track_id": ids, "audio_path": block["audio_path"].as_py()})
            samples = np.array(block["samples"].values.to_numpy(zero_copy_only=False), dtype=np.float32)
            segments = np.split(samples, np.cumsum(block["lengths"].as_py())[:-1]) if len(samples) else []
            bounds = np.cumsum([0, *block["segments"].as_py()])
            decoded = [(k, segments[bounds[k]:bounds[k + 1]], problem)
                       for k, problem in enumerate(block["problem"].as_py())]
            done = self.extractor.embed_decoded(part, self.root, decoded)
            frames.append(_track_rows(block["shard"].as_py(), block["first"].as_py(), part, done,
                                      self.extractor.output_dim))
        return pa.concat_tables(frames)


def _track_rows(shard: int, first: int, part: pd.DataFrame, done: EmbeddedTracks, dim: int) -> pa.Table:
    """One row a track: its position in the shard, its vector (NaN when skipped) or its skip reason, its seconds."""
    embedded = dict(zip(done.ids, done.vectors))
    skipped = {s["track_id"]: s for s in done.skipped}
    matrix = np.full((len(part), dim), np.nan, dtype=np.float32)
    kinds, reasons = [], []
    for k, track_id in enumerate(part["track_id"]):
        if track_id in embedded:
            matrix[k] = embedded[track_id]
        kinds.append(skipped[track_id]["kind"] if track_id in skipped else None)
        reasons.append(skipped[track_id]["reason"] if track_id in skipped else None)
    return pa.table({
        "shard": pa.array([shard] * len(part), pa.int64()),
        "position": pa.array(range(first, first + len(part)), pa.int64()),
        "track_id": pa.array(part["track_id"], pa.string()),
        "audio_path": pa.array(part["audio_path"], pa.string()),
        "kind": pa.array(kinds, pa.string()),
        "reason": pa.array(reasons, pa.string()),
        "seconds": pa.array([done.durations[t] for t in part["track_id"]], pa.float64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim)})


__all__ = ["BackendFactory", "RayConfig", "RayExtractor", "connect"]

"""Extraction on Ray Data: the same shards as the local engine, skipped files, resume, and a killed worker.

One local Ray cluster (2 CPUs, no dashboard) serves the module. The Ray engine's CPU actors run torch on one thread,
so the local runs it is compared with bit for bit run on one thread too (torch's sums differ in the last bits with
the thread count, the engine not at all).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.encoders.test_extract import catalogue, tone
from tunespace.cli.main import main
from tunespace.data.dataset import Dataset
from tunespace.encoders.extract import ExtractionConfig, ExtractionError, Extractor, load_skipped
from tunespace.encoders.mfcc import MfccBackend
from tunespace.encoders.ray_extract import RayConfig, RayExtractor, connect
from tunespace.errors import MissingExtraError

ray = pytest.importorskip("ray")

RATE = 16000


@pytest.fixture(scope="module")
def cluster():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test backend below, inside the actors
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def one_thread_local(config: ExtractionConfig, tracks: pd.DataFrame, root, out, **kwargs):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Extractor(config).run(tracks, root, out, **kwargs)
    finally:
        torch.set_num_threads(threads)


def same_folders(left, right) -> None:
    """Every shard and skipped file byte for byte, and nothing left over (no checkpoint, no temporary file)."""
    names = sorted(p.name for p in left.glob("shard-*"))
    assert names and names == sorted(p.name for p in right.glob("shard-*"))
    for name in names:
        assert (left / name).read_bytes() == (right / name).read_bytes(), name
    assert not list(right.glob("partial-*")) and not list(right.glob("*.tmp"))


def corpus(tmp_path, count: int = 11, seconds: float = 1.0) -> pd.DataFrame:
    signals = {f"t{i:02d}": tone(seconds + 0.3 * (i % 3), 180 + 25 * i, seed=i) for i in range(count)}
    return catalogue(tmp_path, signals)


@pytest.fixture(scope="module")
def engines(cluster, tmp_path_factory):
    """One catalogue with good and bad files, embedded by the local engine and by `tunespace embed --engine ray`."""
    root = tmp_path_factory.mktemp("catalogue")
    tracks = corpus(root)
    (root / "audio" / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    silent = catalogue(root, {"silent": np.zeros(RATE, np.float32), "clip": tone(0.2)})
    bad = pd.DataFrame({"track_id": ["corrupt", "missing", "nopath"],
                        "audio_path": ["audio/corrupt.wav", "audio/missing.wav", None]})
    tracks = pd.concat([tracks.iloc[:4], silent, bad, tracks.iloc[4:]], ignore_index=True)
    tracks.to_parquet(root / "tracks.parquet")
    tracks = Dataset.load_tracks(root)  # as the CLI reads it (a null audio_path is pd.NA)
    config = ExtractionConfig("mfcc", batch_size=3, shard_size=4)
    one_thread_local(config, tracks, root, root / "local")
    Extractor(config).run(tracks, root, root / "local-threads")
    code = main(["embed", "--backend", "mfcc", "--data", str(root), "--out", str(root / "ray"), "--engine", "ray",
                 "--batch-size", "3", "--shard-size", "4", "--device", "cpu"])
    assert code == 0
    return root


def test_the_ray_engine_writes_the_local_engines_shards_vector_for_vector(engines):
    same_folders(engines / "local", engines / "ray")
    for name in ("manifest.json", "catalogue.parquet"):
        assert (engines / "local" / name).read_bytes() == (engines / "ray" / name).read_bytes(), name
    record = json.loads((engines / "ray" / "provenance.json").read_text())
    assert record["status"] == "ok" and record["settings"]["engine"] == "ray"
    assert record["figures"]["embedded"] == 11 and record["figures"]["shards_written"] == 4
    # against a local run on all of torch's threads: the same ids, vectors equal to float32 rounding of the largest
    for shard in sorted((engines / "local-threads").glob("shard-?????.parquet")):
        local, distributed = pd.read_parquet(shard), pd.read_parquet(engines / "ray" / shard.name)
        assert local["track_id"].tolist() == distributed["track_id"].tolist()
        if len(local):  # a shard of skipped tracks only has no vectors
            expected = np.stack(local["embedding"])
            np.testing.assert_allclose(np.stack(distributed["embedding"]), expected, rtol=1e-5,
                                       atol=1e-6 * np.abs(expected).max())


def test_bad_files_are_skipped_with_the_local_engines_reasons(engines):
    skipped = load_skipped(engines / "ray")
    assert skipped.equals(load_skipped(engines / "local"))
    reasons = skipped.set_index("track_id")["reason"]
    assert sorted(reasons.index) == ["clip", "corrupt", "missing", "nopath", "silent"]
    assert reasons["missing"] == f"{engines / 'audio' / 'missing.wav'}: missing file"
    assert "not audio" in reasons["corrupt"] and reasons["nopath"] == "no audio_path"


class Stop(Exception):
    pass


def test_a_stopped_run_resumes_at_its_first_missing_shard_with_either_engine(cluster, tmp_path):
    tracks = corpus(tmp_path, count=12)
    config = ExtractionConfig("mfcc", batch_size=2, shard_size=5, checkpoint_tracks=2)  # shards of 5, 5 and 2
    one_thread_local(config, tracks, tmp_path, tmp_path / "clean")

    def stop_after(count: int):
        done = [0]

        def progress(tracks_done: int, seconds: float) -> None:
            done[0] += tracks_done
            if done[0] >= count:
                raise Stop

        return progress

    # the local engine stopped (Ctrl-C) at its 8th track: shard 0 written, shard 1 checkpointed after 2 tracks
    out = tmp_path / "out"
    with pytest.raises(Stop):
        one_thread_local(config, tracks, tmp_path, out, progress=stop_after(8))
    assert [p.name for p in out.glob("shard-?????.parquet")] == ["shard-00000.parquet"]
    assert len(pd.read_parquet(out / "partial-00001.parquet")) == 2
    # the Ray engine takes over from that checkpoint (7 tracks count as done) and is stopped in turn at its last
    # track back; its blocks (shard 1's tracks 2-3 and 4, shard 2's 0-1) come back in any order, so the shard of the
    # last block is not written and the other one is
    with pytest.raises(Stop):
        RayExtractor(config).run(tracks, tmp_path, out, progress=stop_after(12))
    kept = sorted(out.glob("shard-?????.parquet"))
    assert len(kept) == 2
    written = {p.name: p.stat().st_mtime_ns for p in kept}
    # resumed by an actor per CPU: no CPU is left for decode tasks, so each actor decodes its blocks
    report = RayExtractor(config, RayConfig(actors=2)).run(tracks, tmp_path, out)
    assert (report.shards_reused, report.shards_written) == (2, 1)
    assert {p.name: p.stat().st_mtime_ns for p in kept} == written  # finished shards are not redone
    same_folders(tmp_path / "clean", out)


class SlowMfcc(MfccBackend):
    """MFCC that takes its time and leaves its process id in `folder`, so a test can kill the actor holding it."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        super().__init__(device)
        (folder / f"{os.getpid()}.pid").touch()

    def frames(self, waveforms, lengths):
        time.sleep(0.3)
        return super().frames(waveforms, lengths)


def test_a_killed_actor_is_retried_and_the_run_gives_the_same_output(cluster, tmp_path):
    tracks = corpus(tmp_path, count=12)
    config = ExtractionConfig("mfcc", shard_size=2, checkpoint_tracks=1)  # 12 blocks of one track, 6 shards
    one_thread_local(config, tracks, tmp_path, tmp_path / "clean")
    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "ray"
    engine = RayExtractor(config, RayConfig(actors=1), backend_factory=lambda device: SlowMfcc(pids, device))
    outcome: dict[str, object] = {}
    run = threading.Thread(target=lambda: outcome.update(report=engine.run(tracks, tmp_path, out)))
    run.start()
    deadline = time.monotonic() + 60
    actor = None
    while actor is None and time.monotonic() < deadline:
        workers = [int(p.stem) for p in pids.glob("*.pid") if int(p.stem) != os.getpid()]
        if workers and list(out.glob("shard-?????.parquet")):
            actor = workers[0]
        time.sleep(0.05)
    assert actor is not None, "the actor never started or never finished a shard"
    os.kill(actor, signal.SIGKILL)
    shards_at_kill = len(list(out.glob("shard-?????.parquet")))
    run.join(timeout=120)
    assert not run.is_alive() and "report" in outcome
    assert shards_at_kill < 6  # the kill came mid-run
    restarted = {int(p.stem) for p in pids.glob("*.pid")} - {os.getpid(), actor}
    assert restarted, "no actor replaced the killed one"
    assert outcome["report"].embedded == 12
    same_folders(tmp_path / "clean", out)


def test_a_bad_address_is_one_clear_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    started = time.monotonic()
    with pytest.raises(ExtractionError, match="no Ray cluster answers at '127.0.0.1:1'"):
        connect("127.0.0.1:1")
    assert time.monotonic() - started < 30


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match="distributed"):
        connect(None)


def test_the_cli_refuses_ray_options_that_do_not_fit(tmp_path, capsys):
    args = ["embed", "--data", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*args, "--engine", "spark"]) != 0
    assert main([*args, "--address", "host:6379"]) != 0
    assert main([*args, "--engine", "ray", "--worker", "1", "--workers", "2"]) != 0
    said = capsys.readouterr().out
    assert "local or ray" in said and "--engine ray" in said and "split them" in said

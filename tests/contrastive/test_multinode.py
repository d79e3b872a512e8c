"""Multi-node training with torchrun: two local processes act as two nodes (`--nnodes 2 --nproc-per-node 1`, a
static rendezvous on 127.0.0.1, gloo), train through the CLI into one shared run folder, equal one process with the
same global batch, and a run resumes on another number of processes (2 -> 1 for HTCL, 1 -> 2 for M3 pretraining)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import tiny_bert

pytest.importorskip("transformers")

from tunespace.cli.main import main
from tunespace.data.synthetic import SYNTHETIC_CUTOFF, SyntheticConfig, synthetic_dataset

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 150  # seconds for both nodes together; a hung rendezvous fails the test instead of the suite


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_nodes(args: list[str], nodes: int = 2) -> list[str]:
    """Run `python -m torch.distributed.run ... -m tunespace ARGS` once per node, all on this machine, and return
    each node's output; every node must exit 0. A port taken between the probe and node 0's bind is retried."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")])))
    for attempt in range(3):
        port = free_port()
        procs = [subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc-per-node", "1",
             "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
             "-m", "tunespace", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            for rank in range(nodes)]
        deadline = time.monotonic() + TIMEOUT
        try:
            outputs = [proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for proc in procs]
        finally:
            for proc in procs:  # each node runs in its own session: end its agent and workers on failure
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if any("address already in use" in out.lower() for out in outputs) and attempt < 2:
            continue
        for rank, (proc, out) in enumerate(zip(procs, outputs)):
            assert proc.returncode == 0, f"node {rank} exited {proc.returncode}:\n{out[-4000:]}"
        return outputs
    raise AssertionError("no free port for the rendezvous")


def checkpoint(run: Path) -> dict:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=False)


def assert_same_weights(a: dict, b: dict) -> None:
    """Equal within float tolerance, except the attention key projections' biases: a key bias adds the same amount
    to every logit of a query's softmax, so its gradient is 0 in exact arithmetic, and Adam turns the rounding noise
    of another summation order into steps of size lr there. It changes no output of the model."""
    assert a.keys() == b.keys()
    for name, value in a.items():
        other = b[name]
        if name.endswith("self_attn.in_proj_bias"):  # (query, key, value) biases stacked: drop the key third
            width = len(value) // 3
            value, other = torch.cat([value[:width], value[2 * width:]]), torch.cat([other[:width], other[2 * width:]])
        torch.testing.assert_close(value, other, rtol=1e-4, atol=2e-5, msg=name)


@pytest.fixture(scope="module")
def htcl_corpus(tmp_path_factory):
    """24 tracks of 2.5 s tones with an English caption and a metadata text each, and a synthetic listening log."""
    import soundfile

    folder = tmp_path_factory.mktemp("htcl-corpus")
    dataset, _ = synthetic_dataset(SyntheticConfig(users=30, tracks=24, artists=4, seed=5))
    (folder / "audio").mkdir()
    t = np.arange(40000) / 16000
    words = ("fast", "slow", "reel", "jig")
    for number, track in enumerate(dataset.tracks["track_id"]):
        tone = 0.3 * np.sin(2 * np.pi * (150 + 30 * number) * t) * (1 + 0.5 * np.sin(2 * np.pi * (number % 5) * t))
        soundfile.write(folder / "audio" / f"{track}.wav", tone.astype(np.float32), 16000)
    dataset.tracks = dataset.tracks.assign(
        audio_path=[f"audio/{track}.wav" for track in dataset.tracks["track_id"]],
        metadata_text=[f"a {words[i % 4]} tune" for i in range(len(dataset.tracks))])
    dataset.save(folder)
    pd.DataFrame({"track_id": dataset.tracks["track_id"].astype(str), "language": "en", "variant": 0,
                  "text": [f"a {words[i % 4]} {words[(i // 4) % 4]} played on the fiddle"
                           for i in range(len(dataset.tracks))]}).to_parquet(folder / "captions.parquet")
    text = tiny_bert(folder / "bert", ["a", "tune", "fast", "slow", "reel", "jig", "played", "on", "the", "fiddle"])
    return folder, text


def test_htcl_on_two_nodes_equals_one_process_and_resumes_on_one(htcl_corpus, tmp_path):
    data, text = htcl_corpus
    shared = tmp_path / "shared"  # the run folder every node writes to and reads from (one machine: one disk)
    options = ["--data", str(data), "--config", "tiny", "--device", "cpu",
               "--set", f"text.model={text}", "--set", "text.embed_dim=16", "--set", "audio.width=16",
               "--set", "audio.stem_channels=16", "--set", "audio.layers=1", "--set", "audio.heads=2",
               "--set", "audio.embed_dim=16", "--set", "audio.dropout=0.0", "--set", "train.batch_size=8",
               "--set", "train.warmup_steps=8", "--set", "train.log_every=1", "--set", "train.checkpoint_every=2",
               "--set", "train.lr=0.003", "--set", "stage.crop_seconds=2.0", "--set", "holdout_share=0.25",
               "--set", f"cutoff={SYNTHETIC_CUTOFF}"]
    # warm-up covers every step, so 2 steps then 2 more follow the learning rates of 4 straight steps
    outputs = launch_nodes(["htcl", "pretrain", "--out", str(shared), "--steps", "2", *options,
                            "--set", "train.threads=1"])
    assert "2 process(es)" in outputs[0]  # node 0 hosts rank 0, which reports
    written = checkpoint(shared)
    assert (written["step"], written["world_size"], written["train_config"]["batch_size"]) == (2, 2, 8)
    assert not list(shared.glob(".*.tmp"))  # written atomically, by rank 0 only

    assert main(["htcl", "pretrain", "--out", str(tmp_path / "one"), "--steps", "4", *options]) == 0
    reference = checkpoint(tmp_path / "one")
    two_nodes = [entry["loss"] for entry in written["history"]]
    np.testing.assert_allclose(two_nodes, [entry["loss"] for entry in reference["history"][:2]], rtol=1e-4)

    # the same run continues on one process (another thread count is allowed): same stream, same global batch
    assert main(["htcl", "pretrain", "--out", str(shared), "--steps", "4", "--resume", *options]) == 0
    resumed = checkpoint(shared)
    assert (resumed["step"], resumed["world_size"]) == (4, 1)
    assert_same_weights(resumed["model"], reference["model"])


@pytest.fixture(scope="module")
def score_corpus(tmp_path_factory):
    """24 tunes with ABC, MIDI and a caption in each language (the CLaMP tests' tunes)."""
    pytest.importorskip("mido")
    from tests.contrastive.test_clamp import tune_text, write_midi

    folder = tmp_path_factory.mktemp("score-corpus")
    (folder / "abc").mkdir()
    (folder / "midi").mkdir()
    tracks, captions = [], []
    for number in range(24):
        abc, key, meter = tune_text(number)
        (folder / "abc" / f"{number}.abc").write_text(abc)
        write_midi(folder / "midi" / f"{number}.mid", number)
        tracks.append({"track_id": f"t{number}", "collection": "book", "abc_path": f"abc/{number}.abc",
                       "midi_path": f"midi/{number}.mid"})
        captions += [{"track_id": f"t{number}", "language": language, "variant": 0, "text": f"{key} {meter}"}
                     for language in ("en", "de", "zh")]
    pd.DataFrame(tracks).to_parquet(folder / "tracks.parquet")
    pd.DataFrame(captions).to_parquet(folder / "captions.parquet")
    return folder


def test_m3_pretraining_resumes_from_one_process_on_two_nodes(score_corpus, tmp_path):
    options = ["--data", str(score_corpus), "--config", "tiny", "--device", "cpu",
               "--set", "model.max_patches=32", "--set", "model.dropout=0.0", "--set", "model.extend_vocabulary=false",
               "--set", "data.holdout_share=0.34", "--set", "train.batch_size=8", "--set", "train.warmup_steps=8",
               "--set", "train.log_every=1", "--set", "train.checkpoint_every=2", "--set", "train.threads=1"]
    assert main(["clamp", "pretrain", "--out", str(tmp_path / "one"), "--steps", "4", *options]) == 0
    shared = tmp_path / "shared"
    assert main(["clamp", "pretrain", "--out", str(shared), "--steps", "2", *options]) == 0
    launch_nodes(["clamp", "pretrain", "--out", str(shared), "--steps", "4", "--resume", *options])
    resumed, reference = checkpoint(shared), checkpoint(tmp_path / "one")
    assert (resumed["step"], resumed["world_size"]) == (4, 2)
    # each rank rebuilt half of every batch, yet the losses are the whole batch's and the weights one process's
    np.testing.assert_allclose([e["loss"] for e in resumed["history"]], [e["loss"] for e in reference["history"]],
                               rtol=1e-4)
    assert_same_weights(resumed["model"], reference["model"])

"""Provenance records: every field, failed runs, folder paths, atomic writes, and a bench script writing one."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import tunespace.io
from tunespace import provenance
from tunespace.provenance import bench_record_path, command_line, git_state, jsonable, recorded_run

ROOT = Path(__file__).resolve().parents[1]


def _head() -> str | None:
    """This checkout's commit, or None where the tests run from a copy without .git."""
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def test_record_has_every_field(tmp_path):
    path = tmp_path / "run.json"
    with recorded_run(path, argv=["tunespace", "benchmark", "--k", "10"], extra={"note": "x"}) as record:
        record["settings"] = {"k": 10, "out": tmp_path}
        record["figures"] = {"ratio": np.float32(1.5), "counts": np.arange(3), "missing": float("nan")}
        time.sleep(0.01)
    saved = json.loads(path.read_text())

    assert saved["command"] == ["tunespace", "benchmark", "--k", "10"] and saved["executable"] == sys.executable
    assert saved["note"] == "x" and saved["status"] == "ok" and saved["wall_seconds"] > 0
    assert saved["settings"] == {"k": 10, "out": str(tmp_path)}
    assert saved["figures"] == {"ratio": 1.5, "counts": [0, 1, 2], "missing": None}  # strict JSON: no NaN
    for key in ("load_average_start", "load_average_end"):
        assert len(saved[key]) == 3 and all(value >= 0 for value in saved[key])
    assert saved["started"] <= saved["ended"]
    assert saved["packages"]["torch"] == torch.__version__ and saved["packages"]["numpy"] == np.__version__
    assert saved["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "tunespace" in saved["packages"]
    machine = saved["machine"]
    assert machine["cpu"] and machine["cpu_count"] >= 1 and 1 <= machine["usable_cores"] <= machine["cpu_count"]
    assert machine["torch_threads"] == torch.get_num_threads()

    head = _head()
    if head is None:
        assert saved["git"] == {"commit": None, "dirty": None, "changed_files": None}
    else:  # the checkout the package runs from, and whether it differs from its commit
        assert saved["git"]["commit"] == head and isinstance(saved["git"]["dirty"], bool)
        assert saved["git"]["dirty"] == bool(saved["git"]["changed_files"])
        assert all(not name.startswith("bench/results/") for name in saved["git"]["changed_files"])


def test_failed_block_writes_its_record_beside_the_last_good_one_and_reraises(tmp_path):
    path = tmp_path / "run.json"
    with recorded_run(path, argv=["good"]):
        pass
    with pytest.raises(ValueError, match="no such model"):
        with recorded_run(path, argv=["x"]) as record:
            record["figures"] = {"first": 0.5}
            raise ValueError("no such model")
    assert json.loads(path.read_text())["command"] == ["good"]  # the record of the run that made the outputs
    saved = json.loads((tmp_path / "run.failed.json").read_text())
    assert saved["status"] == "failed: ValueError: no such model"
    assert saved["figures"] == {"first": 0.5} and saved["wall_seconds"] >= 0 and saved["load_average_end"]


def test_folder_path_gets_provenance_json(tmp_path):
    with recorded_run(tmp_path / "run" / "out", argv=["x"]) as record:
        record["figures"] = {"a": 1}
    saved = json.loads((tmp_path / "run" / "out" / "provenance.json").read_text())
    assert saved["figures"] == {"a": 1} and saved["status"] == "ok"


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    with recorded_run(path, argv=["first"]):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left beside it
    before = path.read_text()

    def interrupted(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(tunespace.io.os, "replace", interrupted)
    with pytest.raises(OSError, match="disk full"):
        with recorded_run(path, argv=["second"]):
            pass
    monkeypatch.undo()
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_jsonable():
    assert jsonable({1: (np.int64(2), Path("a/b")), "x": {np.bool_(True)}, "inf": -math.inf,
                     "t": torch.tensor([0.5])}) == {"1": [2, "a/b"], "x": [True], "inf": None, "t": [0.5]}


def test_command_line_names_the_module(monkeypatch):
    main = types.SimpleNamespace(__spec__=types.SimpleNamespace(name="pytest.__main__"))
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["/venv/lib/pytest/__main__.py", "tests", "-q"])
    assert command_line() == ["-m", "pytest", "tests", "-q"]  # what `python -m pytest tests -q` recorded
    main.__spec__ = None  # a script: its argv as it was
    monkeypatch.setattr(sys, "argv", ["bench/recsys_hetrec.py", "--part", "throughput"])
    assert command_line() == ["bench/recsys_hetrec.py", "--part", "throughput"]


def test_git_state_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "changed_files": None}


def test_bench_record_path(tmp_path):
    script = ROOT / "bench" / "recsys_hetrec.py"
    default = bench_record_path(script)
    assert default.parent == ROOT / "bench" / "results"
    assert re.fullmatch(r"recsys_hetrec-\d{8}T\d{6}Z\.json", default.name)
    first = bench_record_path(script, tmp_path, tag="throughput")
    assert first.parent == tmp_path and re.fullmatch(r"recsys_hetrec-throughput-\d{8}T\d{6}Z\.json", first.name)
    first.write_text("{}")
    second = bench_record_path(script, tmp_path, tag="throughput")
    assert second != first and second.name.startswith(first.stem)  # same second: -2, never overwritten


def test_machine_without_torch_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")
    assert "torch_threads" not in provenance.machine()


def test_bench_script_writes_a_record(tmp_path):
    """The cheapest bench script, offline, with tiny sizes: its record lands in --results with its figures."""
    command = [sys.executable, str(ROOT / "bench" / "recsys_hetrec.py"), "--part", "throughput",
               "--throughput-users", "40", "--throughput-items", "200", "--naive-users", "10",
               "--results", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp_path.iterdir()  # the record only: the throughput part writes no tables
    assert re.fullmatch(r"recsys_hetrec-throughput-\d{8}T\d{6}Z\.json", path.name)
    assert f"provenance record: {path}" in done.stdout
    saved = json.loads(path.read_text())
    assert saved["status"] == "ok" and saved["command"][1:] == command[2:]
    assert saved["settings"]["throughput_users"] == 40 and saved["settings"]["results"] == str(tmp_path)
    throughput = saved["figures"]["throughput"]
    assert throughput["problem"]["users"] == 40 and throughput["tunespace_users_per_s"] > 0
    for loop in ("numpy loop, argsort", "numpy loop, argpartition"):
        assert throughput[loop]["ratio"] > 0 and throughput[loop]["max_ndcg_difference"] < 1e-6

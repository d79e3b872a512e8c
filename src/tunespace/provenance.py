"""Provenance records: what produced a figure (command, commit, packages, machine, load, wall time).

Every benchmark and bench script writes one JSON record beside its tables, so a number quoted anywhere can be
traced to the run that printed it and rerun under the same conditions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from tunespace.io import write_text

RECORD_NAME = "provenance.json"
PACKAGES = ("tunespace", "torch", "numpy", "scipy", "pandas", "pyarrow", "transformers", "implicit", "faiss-cpu",
            "soundfile", "soxr", "music21", "symusic", "musicnn", "gensim", "av")
"""Packages whose versions a record lists when installed (the ones that shape tunespace's numbers)."""


def _source_root() -> Path:
    """The checkout this package runs from (an editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / ".git").exists() else Path.cwd()


def git_state(root: str | Path | None = None) -> dict[str, Any]:
    """Commit and whether tracked or untracked files (bench/results/ aside) differ from it; nulls outside a git
    checkout."""
    root = Path(root) if root is not None else _source_root()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip()
    if not commit:
        return {"commit": None, "dirty": None, "changed_files": None}
    # porcelain lines are "XY path" (either status letter may be a space); earlier runs' records do not count
    status = git("status", "--porcelain", "--untracked-files=normal", "--", ".", ":(exclude)bench/results") or ""
    changes = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "dirty": bool(changes), "changed_files": changes[:50]}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU, cores this process may use, threads torch uses (if loaded), and the GPU if torch sees one."""
    info: dict[str, Any] = {"host": platform.node(), "platform": platform.platform(), "cpu": cpu_model(),
                            "cpu_count": os.cpu_count()}
    with contextlib.suppress(AttributeError):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    info["thread_env"] = {key: os.environ[key] for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS") if key in os.environ}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def command_line() -> list[str]:
    """sys.argv, with `-m <module>` in place of the module's __main__.py path (`python -m pytest ...`)."""
    argv = list(sys.argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and argv:
        return ["-m", spec.name.removesuffix(".__main__"), *argv[1:]]
    return argv


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def jsonable(value: Any) -> Any:
    """`value` as plain JSON: numpy scalars and arrays as numbers and lists, paths as strings, NaN and infinities
    as null (json.dumps would write `NaN`, which strict JSON readers reject)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays, torch tensors
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


@contextlib.contextmanager
def recorded_run(path: str | Path, argv: Sequence[str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Write a provenance record to `path` when the block ends (also when it fails, with the error).

    The yielded dict may be filled in by the caller (settings, output files, headline figures); it is written
    as JSON (see :func:`jsonable`), atomically. A folder `path` gets `provenance.json` inside it. A failing block
    still writes its record, with status `failed: <error>`, to `<name>.failed.json` beside `path` (so a refused
    rerun never replaces the record of the run that made the outputs), and the error propagates.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path / RECORD_NAME
    record: dict[str, Any] = {
        "command": command_line() if argv is None else list(argv),
        "executable": sys.executable,
        "cwd": str(Path.cwd()),
        "started": _now(),
        "git": git_state(),
        "packages": package_versions(),
        "load_average_start": load_average(),
        **(extra or {}),
    }
    started = time.perf_counter()
    status = "ok"
    try:
        yield record
    except BaseException as error:
        status = f"failed: {type(error).__name__}: {error}"
        raise
    finally:
        record.update({"status": status, "ended": _now(), "wall_seconds": round(time.perf_counter() - started, 3),
                       "load_average_end": load_average(), "machine": machine()})
        target = path if status == "ok" else path.with_name(f"{path.stem}.failed.json")
        write_text(json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n", target)


def bench_record_path(script: str | Path, results: str | Path | None = None, tag: str | None = None) -> Path:
    """bench/results/<script stem>[-<tag>]-<UTC time>.json: one record per run, never overwritten (a run that
    starts in the same second as an earlier one gets `-2`, `-3`, ... after the time).

    `script` is a bench script's `__file__` (its folder's `results/` is the default), or just a name."""
    script = Path(script)
    folder = Path(results) if results is not None else script.resolve().parent / "results"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{script.stem}{'-' + tag if tag else ''}-{stamp}"
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path

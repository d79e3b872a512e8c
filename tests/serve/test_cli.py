"""`tunespace serve` as a user runs it: the real command in its own process on loopback, its errors as one line,
and the missing `serve` extra named."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tunespace.cli.main import main
from tunespace.errors import MissingExtraError


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_command_serves_on_loopback_until_interrupted(served):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tunespace", "serve", "--data", str(served.data), "--index",
                               str(served.mfcc_index), "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        health = None
        for _ in range(1200):  # a bounded wait for start-up (imports, the map's PCA), not a timing assertion
            if server.poll() is not None:
                break
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health is not None, server.communicate()[0]
        assert health["tracks"] == 24 and health["text_search"] is False
        track_id = httpx.get(f"http://127.0.0.1:{port}/map").json()["points"][0]["id"]
        assert httpx.get(f"http://127.0.0.1:{port}/tracks/{track_id}/similar").status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0 and f"http://127.0.0.1:{port}/" in output


def test_a_missing_index_is_one_line_naming_it(served, tmp_path, capsys):
    assert main(["serve", "--data", str(served.data), "--index", str(tmp_path / "nothing")]) == 1
    said = capsys.readouterr().out
    assert said.startswith("error:") and "nothing" in said and "Traceback" not in said


def test_without_fastapi_the_serve_extra_is_named(monkeypatch):
    from tunespace.serve import require_serve_extra

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    with pytest.raises(MissingExtraError, match=r'the \'serve\' extra.*pip install "tunespace\[serve\]"'):
        require_serve_extra()


def test_the_explorer_logic_imports_without_fastapi():
    code = ("import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None\n"
            "import tunespace.serve.explorer, tunespace.cli.serve, tunespace.cli.main\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr

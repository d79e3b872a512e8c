"""The explorer in headless Chromium against a live server: search, play, score, listener, map. Screenshots of each
page go to the test's tmp folder and, with TUNESPACE_SCREENSHOTS=DIR, to DIR as well."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (Debian package chromium)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def live(served):
    """uvicorn serving the full explorer on a free loopback port, in a background thread."""
    import uvicorn

    from tunespace.serve.app import create_app
    from tunespace.serve.explorer import Explorer

    app = create_app(Explorer(served.data, served.htcl_index, run=served.run, model=served.model))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):  # started is set once the socket listens; a bounded wait, not a timing assertion
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def page(live, tmp_path):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox",
                                                                    "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(30_000)
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def _shoot(page, tmp_path: Path, name: str) -> None:
    folders = [tmp_path / "screenshots"]
    if os.environ.get("TUNESPACE_SCREENSHOTS"):
        folders.append(Path(os.environ["TUNESPACE_SCREENSHOTS"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_search_play_score_listener_and_map(page, live, tmp_path):
    page.goto(live + "/")
    page.wait_for_selector("text=Find tunes")
    page.select_option("select[name=lang]", "de")
    page.fill("input[name=q]", "ein langsames Lied auf der Geige")
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("article.result")
    assert page.locator("article.result").count() == 20
    assert page.locator("article.result .tag").count() > 0 and page.locator(".score-value").first.inner_text()

    # the first result's audio loads and plays
    audio = page.locator("article.result audio").first
    audio.evaluate("a => a.play()")
    page.wait_for_function("() => { const a = document.querySelector('article.result audio');"
                           " return a.readyState >= 2 && isFinite(a.duration) && a.duration > 0 && a.currentTime > 0 }")
    assert audio.evaluate("a => a.error") is None
    _shoot(page, tmp_path, "search")

    # its score renders (abcjs draws an SVG), with similar tunes and who plays it
    first_title = page.locator("article.result a.title").first.inner_text()
    page.locator("article.result a.title").first.click()
    page.wait_for_selector("#score svg")
    assert page.locator("h1").inner_text() == first_title
    assert page.locator("#score svg path").count() > 10  # staff lines and notes
    assert page.locator("article.result").count() == 8
    _shoot(page, tmp_path, "track")

    # a listener of that track: history and recommendations
    listener = page.locator(".listeners a").first
    user_id = listener.inner_text().split(" ")[0]
    listener.click()
    page.wait_for_selector("table.history tbody tr")
    assert page.locator("h1").inner_text() == f"Listener {user_id}"
    assert page.locator("article.result").count() > 0
    _shoot(page, tmp_path, "listener")

    # the map, coloured by mode; a click opens the track
    page.click("nav a[data-nav=map]")
    page.wait_for_selector("#map-svg circle")
    assert page.locator("#map-svg circle").count() == 24
    page.select_option(".map-controls select", "mode")
    page.wait_for_function("() => location.hash === '#/map?colour=mode' && document.querySelector('#map-svg circle')")
    page.wait_for_selector(".legend >> text=mode")
    _shoot(page, tmp_path, "map")
    point = page.locator("#map-svg circle").nth(3)
    track_id = point.get_attribute("data-id")
    point.click()
    page.wait_for_selector("#score svg")
    assert page.evaluate("location.hash") == "#/track/" + track_id.replace("/", "%2F")
    assert page.locator(".sub").first.inner_text().endswith(track_id)

"""The operator page in a real headless Chromium: connected cameras appear, then an event after a scripted behavior.

Chromium (Debian's package; `.ci/run` installs it when missing) is driven over the DevTools protocol. The test
skips where no Chromium is installed unless CI=true, where it must run. OPERATOR_SCREENSHOT=PATH keeps the
screenshot (the README's is made that way); it is always saved under the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from factories import free_port, serving

from ingest.config import ServerConfig
from simulators.camera import CameraReport, run_camera
from simulators.timeline import Period, Timeline
from simulators.video import synthetic_units

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "--window-size=1400,1100",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI", "").lower() not in ("1", "true"),
    reason="no chromium here (CI installs it and runs this test)",
)


class DevTools:
    """Just enough of the Chrome DevTools protocol: evaluate JavaScript in the page, take a screenshot."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client

        self._ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self._id = 0

    def call(self, method: str, **params: object) -> dict:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression: str) -> object:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self._ws.close()


def _open_page(url: str, profile: Path) -> tuple[subprocess.Popen, DevTools]:
    assert CHROMIUM is not None, "chromium is not installed (apt-get install -y chromium)"
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, "chromium did not start"
        time.sleep(0.2)
    port = port_file.read_text().split()[0]
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.load(resp) if t.get("type") == "page"]
        if pages:
            return proc, DevTools(pages[0]["webSocketDebuggerUrl"])
        assert time.monotonic() < deadline, "no page target"
        time.sleep(0.2)


def _wait_for(devtools: DevTools, expression: str, timeout_s: float) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = devtools.js(expression)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"the page never showed: {expression}")


@pytest.fixture(scope="module")
def sim_engine():
    from inference.engine import load_engine

    engine = load_engine("sim-tiny", dtype="fp32")
    yield engine
    engine.close()


def test_operator_page_shows_cameras_and_an_event_after_a_scripted_behavior(sim_engine, tmp_path):
    # kitchen: quiet for 6 s, then the dog barks; hall: quiet throughout (a second connected camera)
    barking = Timeline((Period(0.0, 6.0), Period(6.0, 30.0, frozenset({"barking"}))))
    quiet = Timeline((Period(0.0, 30.0, sleeping=True),))
    streams = {
        "cam-kitchen": list(synthetic_units(3, width=320, height=180, duration_s=22.0, timeline=barking)),
        "cam-hall": list(synthetic_units(5, width=320, height=180, duration_s=22.0, timeline=quiet)),
    }
    config = ServerConfig(port=0, metrics_port=free_port())
    with serving(sim_engine, config) as (address, server):
        proc, devtools = _open_page(f"http://127.0.0.1:{server.metrics_port}/", tmp_path / "profile")
        try:
            _wait_for(devtools, "Number(document.body.dataset.polls || 0) > 0", 30)
            assert devtools.js("document.querySelectorAll('.cam').length") == 0  # nobody connected yet
            assert "no camera connected" in str(devtools.js("document.getElementById('cameras').innerText"))
            reports: list[CameraReport] = []
            started = time.monotonic()

            def cameras() -> None:
                async def both() -> list[CameraReport]:
                    return list(
                        await asyncio.gather(
                            *(run_camera(address, d, u, speed=1.5, sample_fps=2.0) for d, u in streams.items())
                        )
                    )

                reports.extend(asyncio.run(both()))

            thread = threading.Thread(target=cameras, daemon=True)
            thread.start()
            shown = _wait_for(
                devtools,
                "document.querySelectorAll('.cam').length == 2 && "
                "[...document.querySelectorAll('.cam .device')].map(e => e.textContent).join(',')",
                20,
            )
            assert shown == "cam-hall,cam-kitchen"
            assert devtools.js("document.querySelectorAll('.event').length") == 0  # the behavior has not begun
            onset = 6.0 / 1.5  # wall seconds until the scripted barking starts at 1.5x
            text = _wait_for(
                devtools,
                "(() => { const c = document.querySelector('.cam[data-device=\"cam-kitchen\"]');"
                " const e = c && c.querySelector('.event.STARTED'); return e ? e.textContent : ''; })()",
                25,
            )
            assert "barking STARTED" in str(text)
            assert time.monotonic() - started > onset  # it came after the scripted behavior, not before
            assert devtools.js("!!document.querySelector('.cam[data-device=\"cam-kitchen\"] .badge')")  # open
            assert devtools.js("document.querySelector('.cam[data-device=\"cam-kitchen\"] img') !== null")
            assert devtools.js(
                "(() => { const i = document.querySelector('.cam img'); return i.complete && i.naturalWidth; })()"
            )
            time.sleep(2.5)  # one more chart sample
            png = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
            shot = tmp_path / "operator-page.png"
            shot.write_bytes(png)
            if os.environ.get("OPERATOR_SCREENSHOT"):
                Path(os.environ["OPERATOR_SCREENSHOT"]).write_bytes(png)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
            thread.join(60)
        finally:
            devtools.close()
            proc.terminate()
            proc.wait(10)
    hall_events = [e for r in reports if r.device_id == "cam-hall" for e in r.events]
    kitchen = [e.behavior for r in reports if r.device_id == "cam-kitchen" for e in r.events]
    assert "barking" in kitchen and not hall_events

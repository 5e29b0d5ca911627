"""End to end: `petstream serve --workers 2` as a subprocess; both processes take cameras on one port, and a route
change sent to whichever worker the admin call reaches is followed by the other."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from factories import free_port, scrape, square_units

from simulators.admin import set_route
from simulators.camera import run_camera
from simulators.fleet import server_process

_CONNECTED = re.compile(r"\[worker (\d+)\] ingest\.\w+: camera (\S+) connected")


def _workers_by_camera(log: Path) -> dict[str, str]:
    return {m.group(2): m.group(1) for m in _CONNECTED.finditer(log.read_text())}


def test_two_workers_share_the_port_and_follow_one_route(tmp_path: Path) -> None:
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"pools": [{"name": "a", "dtype": "fp32"}, {"name": "b", "dtype": "fp32"}]}))
    log = tmp_path / "server.log"
    units = square_units(2.0)
    metrics_port = free_port()
    args = ["--workers", "2", "--model", "tiny", "--config", str(config), "--route", "a=1"]
    args += ["--metrics-port", str(metrics_port)]
    with server_process(args, log_path=str(log), timeout_s=240) as target:
        reports = []
        for round_ in range(6):  # the kernel spreads connections by their addresses: stream until both have some
            batch = [
                run_camera(target, f"cam-{round_}-{i}", units, speed=0, want_scores=True, sample_fps=5)
                for i in range(6)
            ]
            reports += asyncio.run(_gather(batch))
            time.sleep(0.3)
            if len(set(_workers_by_camera(log).values())) == 2:
                break
        assert all(r.error is None and r.scores for r in reports), [r.error for r in reports if r.error]
        assert {s.pool for r in reports for s in r.scores} == {"a"}
        by_camera = _workers_by_camera(log)
        assert set(by_camera.values()) == {"0", "1"}, by_camera
        assert set(by_camera) == {r.device_id for r in reports}

        status = asyncio.run(set_route(target, {"b": 1}, None))
        assert dict(status.weights) == {"a": 0.0, "b": 1.0} and status.workers == 2
        time.sleep(0.8)  # the other worker polls the shared route file every 0.25 s
        seen: dict[int, dict[str, float]] = {}
        for _ in range(40):  # each call opens a new connection, landing on either worker
            s = asyncio.run(set_route(target, None, None))
            seen[s.worker] = dict(s.weights)
            if len(seen) == 2:
                break
        assert seen == {0: {"a": 0.0, "b": 1.0}, 1: {"a": 0.0, "b": 1.0}}, seen
        after = asyncio.run(run_camera(target, "cam-after", units, speed=0, want_scores=True, sample_fps=5))
        assert after.error is None and {s.pool for s in after.scores} == {"b"}
        # the supervisor's metrics port: both workers' counters, labelled; they add up to what the cameras got
        scored = _by_worker(scrape(metrics_port), "petstream_frames_scored_total")
        assert set(scored) == {"0", "1"} and sum(scored.values()) == sum(len(r.scores) for r in [*reports, after])
        assert _by_worker(scrape(metrics_port), "petstream_worker_up") == {"0": 1.0, "1": 1.0}
        state = json.loads(scrape(metrics_port, "/api/state"))
        assert state["workers"] == [{"index": 0, "up": True}, {"index": 1, "up": True}]
        assert "<html" in scrape(metrics_port, "/").lower()


def _by_worker(text: str, name: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        s.labels["worker"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and "worker" in s.labels
    }


async def _gather(coros):  # noqa: ANN001, ANN202
    return await asyncio.gather(*coros)


def test_operator_states_of_workers_merge_into_one_page() -> None:
    from ingest.workers_http import merge_states

    def state(cams: list[str], fps: float, p99: float) -> dict:
        return {
            "model": "tiny",
            "queued": 1,
            "rate_scale": 1.0,
            "cameras": [{"device_id": d, "thumbnail": f"/api/thumb/{d}.jpg?n=1"} for d in cams],
            "history": [{"t": 1.0, "scored_fps": fps, "received_fps": 10 * fps, "p99_ms": {"vision": p99}}] * 3,
        }

    merged = merge_states([state(["b", "c"], 2.0, 40.0), None, state(["a"], 1.5, 90.0)])
    assert [(c["device_id"], c["worker"]) for c in merged["cameras"]] == [("a", 2), ("b", 0), ("c", 0)]
    assert merged["cameras"][0]["thumbnail"] == "/w/2/api/thumb/a.jpg?n=1"  # fetched from its owner
    assert merged["history"][-1]["scored_fps"] == 3.5 and merged["history"][-1]["p99_ms"] == {"vision": 90.0}
    assert merged["workers"] == [{"index": 0, "up": True}, {"index": 1, "up": False}, {"index": 2, "up": True}]
    assert merged["queued"] == 2


def test_the_supervisors_metrics_port_labels_every_workers_samples(tmp_path: Path) -> None:
    import threading
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client.parser import text_string_to_metric_families

    from ingest.workers_http import WorkersHttp

    def worker(scored: int) -> ThreadingHTTPServer:
        body = (
            "# HELP petstream_frames_scored frames the model answered\n# TYPE petstream_frames_scored counter\n"
            f"petstream_frames_scored_total {scored}\n"
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body if self.path == "/metrics" else b"ok\n")

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    workers = [worker(5), worker(7)]
    urls = [f"http://127.0.0.1:{w.server_address[1]}" for w in workers] + ["http://127.0.0.1:9"]  # one is down
    http = WorkersHttp("127.0.0.1", 0, urls)
    port = http.start()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        http.stop()
        for w in workers:
            w.shutdown()
    samples = {
        (s.name, s.labels.get("worker")): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert samples[("petstream_frames_scored_total", "0")] == 5 and samples[("petstream_frames_scored_total", "1")] == 7
    assert [samples[("petstream_worker_up", str(i))] for i in range(3)] == [1.0, 1.0, 0.0]

"""The supervisor's metrics port with `serve --workers N`: every worker's /metrics with a `worker` label, and one
operator page over all of them (cameras of every worker, summed throughput), thumbnails fetched from their owner.

Each worker still serves its own port (metrics_port + 1 + index), so Prometheus may scrape the workers one by one
instead; this port is the one-target view. prometheus-client's multiprocess mode cannot serve here: the servers'
counters are read live from each process's sessions at scrape time, not kept in shared value files.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from ingest.operator import PageHandler

log = logging.getLogger(__name__)
FETCH_TIMEOUT_S = 2.0


def worker_metrics_port(base: int, index: int) -> int:
    """The port worker `index` serves /metrics and its own operator page on."""
    return base + 1 + index


def _fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            return bytes(response.read())
    except (urllib.error.URLError, OSError):
        return None  # a worker restarting: its figures are missing from this scrape, not an error


class MergedCollector(Collector):
    """Every worker's families, each sample labelled with its worker (families merged by name)."""

    def __init__(self, urls: Callable[[], Sequence[str]]) -> None:
        self._urls = urls

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, url in enumerate(self._urls()):
            body = _fetch(f"{url}/metrics")
            if body is None:
                continue
            for family in text_string_to_metric_families(body.decode()):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for s in family.samples:
                    labels = {**s.labels, "worker": str(index)}
                    into.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))
        up = Metric("petstream_worker_up", "1 for each worker whose metrics this scrape could read", "gauge")
        yield from merged.values()
        for index, url in enumerate(self._urls()):
            up.samples.append(
                Sample("petstream_worker_up", {"worker": str(index)}, 0.0 if _fetch(f"{url}/healthz") is None else 1.0)
            )
        yield up


def merge_states(states: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """One operator-page state over all workers: cameras side by side (each says its worker), throughput summed."""
    live = [(i, s) for i, s in enumerate(states) if s is not None]
    if not live:
        return {"cameras": [], "history": [], "workers": [{"index": i, "up": False} for i in range(len(states))]}
    first = live[0][1]
    cameras = []
    for index, state in live:
        for cam in state.get("cameras", []):
            cam = dict(cam, worker=index)
            if cam.get("thumbnail"):
                cam["thumbnail"] = f"/w/{index}{cam['thumbnail']}"
            cameras.append(cam)
    cameras.sort(key=lambda c: (c.get("device_id", ""), c["worker"]))
    histories = [s.get("history", []) for _, s in live]
    length = min(len(h) for h in histories)
    history = []
    for k in range(length):  # the workers sample on their own clocks: the newest `length` points, aligned from the end
        points = [h[len(h) - length + k] for h in histories]
        point: dict[str, Any] = {"t": max(p.get("t", 0) for p in points)}
        for key in ("received_fps", "scored_fps", "skipped_fps", "dropped_fps"):
            point[key] = round(sum(p.get(key, 0.0) for p in points), 2)
        stages = {st for p in points for st in (p.get("p99_ms") or {})}
        point["p99_ms"] = {  # the worst worker's p99: a bound on the fleet's, not a merge of distributions
            st: max((v for p in points if (v := (p.get("p99_ms") or {}).get(st)) is not None), default=None)
            for st in sorted(stages)
        }
        history.append(point)
    return {
        **first,
        "queued": sum(s.get("queued", 0) for _, s in live),
        "rate_scale": min(s.get("rate_scale", 1.0) for _, s in live),
        "cameras": cameras,
        "history": history,
        "workers": [{"index": i, "up": states[i] is not None} for i in range(len(states))],
    }


class WorkersHttp:
    """The supervisor's HTTP port: /metrics (merged), / (the operator page), /api/state (merged), /w/N/... (proxy)."""

    def __init__(self, host: str, port: int, worker_urls: Sequence[str]) -> None:
        self.urls = list(worker_urls)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MergedCollector(lambda: self.urls))
        self._address = (host, port)
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> int:
        httpd = ThreadingHTTPServer(self._address, _handler(self))
        httpd.daemon_threads = True
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, name="workers-http", daemon=True).start()
        return int(httpd.server_address[1])

    def state(self) -> dict[str, Any]:
        states = []
        for url in self.urls:
            body = _fetch(f"{url}/api/state")
            states.append(json.loads(body) if body else None)
        return merge_states(states)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def _handler(http: WorkersHttp) -> type[BaseHTTPRequestHandler]:
    try:
        page: bytes | None = files("ingest").joinpath("operator.html").read_bytes()
    except OSError:  # a tree without the operator page: metrics and JSON still merge
        page = None

    class Handler(PageHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path
            try:
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(http.registry))
                elif path in ("/", "/index.html") and page is not None:
                    self._send(200, "text/html; charset=utf-8", page)
                elif path == "/api/state":
                    self._send(200, "application/json", json.dumps(http.state()).encode())
                elif path.startswith("/w/"):
                    index, _, rest = path[3:].partition("/")
                    body = (
                        _fetch(f"{http.urls[int(index)]}/{rest}")
                        if index.isdigit() and int(index) < len(http.urls)
                        else None
                    )
                    if body is None:
                        self._send(404, "text/plain", b"no such worker or path\n")
                    else:
                        self._send(200, "image/jpeg" if rest.endswith(".jpg") else "application/octet-stream", body)
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok\n")
                else:
                    self._send(404, "text/plain", b"not found: try /, /metrics or /api/state\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("workers http: " + format, *args)

    return Handler

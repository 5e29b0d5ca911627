"""The metrics HTTP port: /metrics for Prometheus, the operator page at / and its JSON (/api/state, thumbnails)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.metrics import STAGES, ServerMetrics, stats_counts

if TYPE_CHECKING:
    from ingest.stream_service import BehaviorStreamService

log = logging.getLogger(__name__)
THUMB_SIZE = (256, 144)  # the model's square picture shown at 16:9 again


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs, sorted; None without data."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower  # beyond the last finite bound: that bound, as Prometheus does
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def _bucket_counts(metrics: ServerMetrics) -> dict[str, list[tuple[float, float]]]:
    """Cumulative bucket counts of every stage histogram and of frame-to-event, by stage name."""
    out: dict[str, list[tuple[float, float]]] = {}
    for family in (*metrics.stage_latency.collect(), *metrics.frame_to_event.collect()):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                stage = sample.labels.get("stage", "frame_to_event")
                out.setdefault(stage, []).append((float(sample.labels["le"]), sample.value))
    return {k: sorted(v) for k, v in out.items()}


class History:
    """Samples throughput and per-stage p99 every `interval_s` (a background thread) for the page's charts."""

    def __init__(self, metrics: ServerMetrics, interval_s: float = 2.0, points: int = 300) -> None:
        self._m = metrics
        self.interval_s = interval_s
        self.points: deque[dict[str, Any]] = deque(maxlen=points)
        self.camera_rates: dict[str, dict[str, float]] = {}  # session id -> received_fps, scored_fps
        self._prev: tuple[float, Any, dict[str, list[tuple[float, float]]], dict[str, tuple[int, int]]] | None = None
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = time.monotonic()
        totals = self._m.totals()
        buckets = _bucket_counts(self._m)
        views, _, _ = self._m.snapshot()
        cams = {v.session.session_id: (v.session.stats.frames_scored, _received(v.session)) for v in views}
        prev, self._prev = self._prev, (now, totals, buckets, cams)
        if prev is None:
            return
        t0, tot0, b0, cams0 = prev
        dt = max(now - t0, 1e-6)
        p99: dict[str, float | None] = {}
        for stage, counts in buckets.items():
            before = dict(b0.get(stage, []))
            delta = [(le, n - before.get(le, 0.0)) for le, n in counts]
            value = histogram_quantile(0.99, delta)
            p99[stage] = None if value is None else round(value * 1e3, 1)
        point = {
            "t": round(time.time(), 1),
            "received_fps": round((totals["received", ""] - tot0["received", ""]) / dt, 2),
            "scored_fps": round((totals["scored", ""] - tot0["scored", ""]) / dt, 2),
            "skipped_fps": round(_sum(totals, "skipped", tot0) / dt, 2),
            "dropped_fps": round(_sum(totals, "dropped", tot0) / dt, 2),
            "p99_ms": p99,
        }
        rates = {
            sid: {
                "scored_fps": round((scored - cams0.get(sid, (scored, rec))[0]) / dt, 2),
                "received_fps": round((rec - cams0.get(sid, (scored, rec))[1]) / dt, 2),
            }
            for sid, (scored, rec) in cams.items()
        }
        with self._lock:
            self.points.append(point)
            self.camera_rates = rates

    def read(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
        with self._lock:
            return list(self.points), dict(self.camera_rates)


def _received(session: Any) -> int:
    s = session.stats
    return int(s.frames_decoded + s.not_decoded_by_policy + s.skipped_resync)


def _sum(totals: Any, kind: str, before: Any) -> float:
    now = sum(n for (k, _), n in totals.items() if k == kind)
    return float(now - sum(n for (k, _), n in before.items() if k == kind))


def page_state(metrics: ServerMetrics, service: BehaviorStreamService, history: History) -> dict[str, Any]:
    """Everything the operator page shows, as JSON values."""
    points, rates = history.read()
    gauges = metrics.gauges()
    cameras = []
    now = time.time()
    for view in metrics.camera_views():
        session = view["session"]
        counts = stats_counts(session.stats)
        spec = session.spec
        thumb = metrics.thumbnail(session.session_id)
        dropped = {r: n for (k, r), n in counts.items() if k == "dropped" and n}
        cameras.append(
            {
                "device_id": session.device_id,
                "session_id": session.session_id,
                "codec": spec.codec,
                "sampling": spec.sampling,
                "buffer_policy": "WAIT" if spec.wait else "DROP_OLDEST",
                "sample_fps": spec.sample_fps,
                "effective_sample_fps": round(spec.sample_fps * session.sampler.rate_scale, 3),
                "connected_s": round(now - view["connected_at"], 1),
                "frames": {k: counts[k, ""] for k in ("received", "decoded", "sampled", "scored")},
                "skipped": {r: n for (k, r), n in counts.items() if k == "skipped"},
                "dropped": dropped,
                "dropped_total": sum(dropped.values()),
                "warnings": {c: n for (k, c), n in counts.items() if k == "warnings"},
                "events": counts["events", ""],
                "open_episodes": view["open_episodes"],
                "last_events": view["last_events"][::-1],
                "rates": rates.get(session.session_id, {"scored_fps": 0.0, "received_fps": 0.0}),
                "thumbnail": f"/api/thumb/{quote(session.session_id, safe='')}.jpg?n={thumb[1]}" if thumb else None,
                "thumbnail_age_s": round(now - thumb[2], 1) if thumb else None,
            }
        )
    cameras.sort(key=lambda c: c["device_id"])
    return {
        "now": now,
        "model": gauges.get("model", ""),
        "dtype": gauges.get("dtype", ""),
        "backend": metrics.backend,
        "rate_scale": gauges.get("rate_scale", 1.0),
        "queued": gauges.get("queued", 0),
        "stages": [*STAGES, "frame_to_event"],
        "cameras": cameras,
        "history": points,
    }


class OperatorHttp:
    """A small threaded HTTP server on the metrics port; it reads the server's state, never blocks the loop."""

    def __init__(self, metrics: ServerMetrics, service: BehaviorStreamService, host: str, port: int) -> None:
        self.metrics = metrics
        self.service = service
        self.history = History(metrics)
        self._address = (host, port)
        self._httpd: ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._jpeg_cache: dict[str, tuple[int, bytes]] = {}

    def start(self) -> int:
        try:
            httpd = ThreadingHTTPServer(self._address, _handler_for(self))
        except OSError as exc:
            raise RuntimeError(f"metrics_port: cannot bind {self._address[0]}:{self._address[1]}: {exc}") from None
        httpd.daemon_threads = True
        self._httpd = httpd
        self._threads = [
            threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True),
            threading.Thread(target=self._sample, name="metrics-history", daemon=True),
        ]
        for t in self._threads:
            t.start()
        port = int(httpd.server_address[1])
        log.info("metrics and operator page on http://%s:%d/", self._address[0], port)
        return port

    def _sample(self) -> None:
        self.history.tick()
        while not self._stop.wait(self.history.interval_s):
            try:
                self.history.tick()
            except Exception:  # a failed sample must not end the charts
                log.exception("operator page: history sample failed")

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def thumbnail_jpeg(self, session_id: str) -> bytes | None:
        thumb = self.metrics.thumbnail(session_id)
        if thumb is None:
            return None
        image, n, _ = thumb
        cached = self._jpeg_cache.get(session_id)
        if cached is not None and cached[0] == n:
            return cached[1]
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).resize(THUMB_SIZE).save(buf, format="JPEG", quality=80)
        data = buf.getvalue()
        if len(self._jpeg_cache) > 4096:  # departed sessions: start over rather than grow
            self._jpeg_cache.clear()
        self._jpeg_cache[session_id] = (n, data)
        return data


class PageHandler(BaseHTTPRequestHandler):
    """The operator page's HTTP handlers (one server's, the workers' supervisor's): uncached replies."""

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def _handler_for(http: OperatorHttp) -> type[BaseHTTPRequestHandler]:
    page = files("ingest").joinpath("operator.html").read_bytes()

    class Handler(PageHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path
            try:
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(http.metrics.registry))
                elif path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", page)
                elif path == "/api/state":
                    state = page_state(http.metrics, http.service, http.history)
                    self._send(200, "application/json", json.dumps(state).encode())
                elif path.startswith("/api/thumb/") and path.endswith(".jpg"):
                    data = http.thumbnail_jpeg(unquote(path[len("/api/thumb/") : -len(".jpg")]))
                    if data is None:
                        self._send(404, "text/plain", b"no frame looked at yet for this camera\n")
                    else:
                        self._send(200, "image/jpeg", data)
                elif path == "/healthz":
                    self._send(200, "text/plain", b"ok\n")
                else:
                    self._send(404, "text/plain", b"not found: try /, /metrics or /api/state\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("metrics http: " + format, *args)  # scrapes every few seconds must not fill the log

    return Handler

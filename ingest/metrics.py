"""Prometheus metrics of one server: the families, the scrape-time collector, the hooks and the gRPC interceptor.

Counters that already exist as state (each camera's SessionStats, the batcher's counters, the governor's scale)
are read at scrape time by a custom collector, which adds the totals of departed cameras; the hot path only
observes the per-frame latency histograms, once, where a frame is scored. Labels take bounded values only:
behavior names outside the server's known set become "other", and a per-device label is opt-in (small fleets).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ingest.session import Session
    from ingest.session_stats import SessionStats
    from streaming.frames import Event, FrameTimings

#: latency buckets (seconds): fine enough below 2 s that a quantile read off them is within ~20 % of the truth
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
LATENCY_BUCKETS += (0.4, 0.5, 0.65, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
#: the stages of a frame's path, in order; label values of petstream_stage_latency_seconds
STAGES = ("decode", "sample_wait", "batch_wait", "vision", "text")
#: why a frame was not looked at on purpose (gating) vs lost (dropped); label values
DROP_REASONS = ("backpressure", "stale", "shutdown", "resync", "model_error")
OTHER = "other"
LAST_EVENTS = 8  # events kept per camera for the operator page


@dataclass
class CameraView:
    """What the operator page shows of one camera besides its SessionStats (kept by the hooks)."""

    session: Session
    connected_at: float  # time.time()
    last_events: deque[dict[str, Any]]
    open_episodes: dict[str, dict[str, Any]]  # behavior -> its STARTED event


def stats_counts(stats: SessionStats) -> Counter[tuple[str, str]]:
    """One camera's SessionStats as (family, label value) -> count; tolerant of the decode thread writing."""
    for _ in range(5):
        try:
            dropped, warnings = dict(stats.dropped), dict(stats.warnings)
            break
        except RuntimeError:  # "dictionary changed size during iteration": read again
            continue
    else:
        dropped, warnings = {}, {}
    c: Counter[tuple[str, str]] = Counter()
    c["chunks", ""] = stats.chunks
    c["bytes", ""] = stats.bytes
    c["received", ""] = stats.frames_decoded + stats.not_decoded_by_policy + stats.skipped_resync
    c["decoded", ""] = stats.frames_decoded
    c["sampled", ""] = stats.frames_sampled
    c["scored", ""] = stats.frames_scored
    c["refreshed", ""] = stats.refreshed
    c["skipped", "sampler"] = stats.skipped_by_sampler
    c["skipped", "not_decoded"] = stats.not_decoded_by_policy
    c["dropped", "resync"] = stats.skipped_resync
    c["dropped", "model_error"] = stats.model_errors
    for reason, n in dropped.items():
        c["dropped", reason] += n
    for code, n in warnings.items():
        c["warnings", code] += n
    c["events", ""] = stats.events
    return c


#: (family, help, label name or "") of every counter read from SessionStats
_STATS_FAMILIES = {
    "chunks": ("petstream_video_chunks_received_total", "VideoChunk messages received", ""),
    "bytes": ("petstream_video_received_bytes_total", "encoded video bytes received", ""),
    "received": ("petstream_frames_received_total", "frames received (decoded, not decoded by policy, resync)", ""),
    "decoded": ("petstream_frames_decoded_total", "frames decoded", ""),
    "sampled": ("petstream_frames_sampled_total", "frames the sampler picked for the model", ""),
    "scored": ("petstream_frames_scored_total", "frames the model answered", ""),
    "refreshed": ("petstream_frames_refreshed_total", "waiting frames given a newer picture (late binding)", ""),
    "skipped": ("petstream_frames_skipped_total", "frames not looked at on purpose (gating), by reason", "reason"),
    "dropped": ("petstream_frames_dropped_total", "frames lost before an answer, by reason", "reason"),
    "warnings": ("petstream_warnings_total", "StreamWarnings sent to cameras, by code", "code"),
}


class ServerMetrics:
    """Owns every metric family of one server (its own registry, so several servers can share a process)."""

    def __init__(self, *, per_device: bool = False, behaviors: Iterable[str] = (), backend: str = "") -> None:
        self.per_device = per_device
        self.known_behaviors = frozenset(behaviors)
        self.backend = backend or "unknown"
        disable_created_metrics()  # the `_created` series double every family and no dashboard reads them
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraView] = {}  # session id -> live camera
        self._departed: dict[str, Counter[tuple[str, str]]] = {}  # device ("" unless per_device) -> totals
        self._opened: Counter[str] = Counter()
        self._thumbs: dict[str, tuple[Any, int, float]] = {}  # batcher key (session id) -> (RGB image, n, time)
        self._source: Callable[[], dict[str, Any]] = dict  # scrape-time gauges of the service (attach)
        device = ("device",) if per_device else ()
        r = self.registry
        self.stage_latency = Histogram(
            "petstream_stage_latency_seconds",
            "time a scored frame spent in each stage (decode, sample_wait, batch_wait, vision, text)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.frame_to_event = Histogram(
            "petstream_frame_to_event_seconds",
            "chunk arrival to scores (and any event they trigger) ready, per scored frame",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "petstream_model_batch_size", "frames per model call", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "petstream_model_batch_seconds", "wall time of one model call", buckets=LATENCY_BUCKETS, registry=r
        )
        self.events = PromCounter(
            "petstream_events",
            "behavior events sent, by behavior and state",
            [*device, "behavior", "state"],
            registry=r,
        )
        #: refusals by reason: the auth interceptor's own Counter (attach_refusals), read at scrape time
        self._refusals: Counter[str] = Counter()
        self.rpc_started = PromCounter(
            "petstream_grpc_server_started", "RPCs started", ["grpc_service", "grpc_method"], registry=r
        )
        self.rpc_handled = PromCounter(
            "petstream_grpc_server_handled",
            "RPCs finished, by status code",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "petstream_grpc_server_handling_seconds",
            "RPC duration (a camera's Stream lasts as long as it is connected)",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_StatsCollector(self))
        # the stage children, resolved once: labels() costs a dict lookup and a lock per call
        self._stage = {s: self.stage_latency.labels(s) for s in STAGES}

    # -- wiring -----------------------------------------------------------------------------------------------

    def attach(self, gauges: Callable[[], dict[str, Any]]) -> None:
        """Gauges read from the service at scrape time: active streams, queue depths, rate scale, batches."""
        self._source = gauges

    def behavior_label(self, name: str) -> str:
        return name if name in self.known_behaviors else OTHER

    # -- hooks (event loop) -----------------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        with self._lock:
            self._cameras[session.session_id] = CameraView(session, time.time(), deque(maxlen=LAST_EVENTS), {})
            self._opened[session.device_id if self.per_device else ""] += 1

    def session_closed(self, session: Session) -> None:
        """Fold a departing camera's counters into the totals (under the lock: a scrape never counts it twice)."""
        counts = stats_counts(session.stats)
        with self._lock:
            self._cameras.pop(session.session_id, None)
            key = session.device_id if self.per_device else ""
            self._departed.setdefault(key, Counter()).update(counts)
            self._thumbs.pop(session.session_id, None)

    def frame_scored(self, device_id: str, timings: FrameTimings) -> None:
        """The one place per-frame latencies are observed (Session._score)."""
        stage = self._stage
        stage["decode"].observe(timings.decode_ms / 1e3)
        stage["sample_wait"].observe(timings.sample_wait_ms / 1e3)
        stage["batch_wait"].observe(max(0.0, timings.batch_wait_ms - timings.sample_wait_ms) / 1e3)
        stage["vision"].observe(timings.vision_ms / 1e3)
        stage["text"].observe(timings.text_ms / 1e3)
        self.frame_to_event.observe(timings.total_ms / 1e3)

    def event(self, session: Session, event: Event) -> None:
        labels = (session.device_id,) if self.per_device else ()
        self.events.labels(*labels, self.behavior_label(event.behavior), event.state).inc()
        record = {
            "behavior": event.behavior,
            "state": event.state,
            "confidence": round(event.confidence, 3),
            "pts_s": round(event.pts_us / 1e6, 2),
            "event_id": event.event_id,
            "at": time.time(),
        }
        with self._lock:
            view = self._cameras.get(session.session_id)
            if view is None:
                return
            view.last_events.append(record)
            if event.state == "STARTED":
                view.open_episodes[event.behavior] = record
            else:
                view.open_episodes.pop(event.behavior, None)

    def batch_done(self, keys: Sequence[str], images: Sequence[Any], elapsed_s: float) -> None:
        """One model call finished: its size and time; the newest picture per camera for the operator page."""
        self.batch_size.observe(len(keys))
        self.batch_seconds.observe(elapsed_s)
        now = time.time()
        with self._lock:
            for key, image in zip(keys, images, strict=True):
                if key in self._cameras:  # a camera's stream (not an Ask call)
                    self._thumbs[key] = (image, self._thumbs.get(key, (None, 0, 0.0))[1] + 1, now)

    def attach_refusals(self, refusals: Counter[str]) -> None:
        """Export the auth interceptor's refusals by reason (AuthInterceptor.refusals; reasons are a fixed set)."""
        self._refusals = refusals

    def auth_refused(self, reason: str) -> None:
        """Count a refused call by hand (for a refusal outside AuthInterceptor); `reason` from a fixed set."""
        self._refusals[reason] += 1

    # -- reads (any thread) -----------------------------------------------------------------------------------

    def snapshot(self) -> tuple[list[CameraView], dict[str, Counter[tuple[str, str]]], Counter[str]]:
        with self._lock:
            views = list(self._cameras.values())
            departed = {k: Counter(v) for k, v in self._departed.items()}
            opened = Counter(self._opened)
        return views, departed, opened

    def camera_views(self) -> list[dict[str, Any]]:
        """Events and open episodes per live camera (copies), for the operator page."""
        with self._lock:
            return [
                {
                    "session": v.session,
                    "connected_at": v.connected_at,
                    "last_events": list(v.last_events),
                    "open_episodes": sorted(v.open_episodes),
                }
                for v in self._cameras.values()
            ]

    def thumbnail(self, key: str) -> tuple[Any, int, float] | None:
        with self._lock:
            return self._thumbs.get(key)

    def gauges(self) -> dict[str, Any]:
        return self._source()

    def totals(self) -> Counter[tuple[str, str]]:
        """Every SessionStats counter summed over live and departed cameras."""
        views, departed, _ = self.snapshot()
        total: Counter[tuple[str, str]] = Counter()
        for counts in departed.values():
            total.update(counts)
        for v in views:
            total.update(stats_counts(v.session.stats))
        return total

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return RpcMetricsInterceptor(self)


class _StatsCollector(Collector):
    """Reads SessionStats of live cameras plus departed totals, and the service's gauges, at scrape time."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._m = metrics

    def describe(self) -> list[Metric]:
        return []  # families depend on what is live; no describe-time work

    def collect(self) -> Iterator[Metric]:
        m = self._m
        views, departed, opened = m.snapshot()
        by_device: dict[str, Counter[tuple[str, str]]] = {k: Counter(v) for k, v in departed.items()}
        if not m.per_device:
            by_device.setdefault("", Counter())  # every family present (zeros) before the first camera
        for v in views:
            by_device.setdefault(v.session.device_id if m.per_device else "", Counter()).update(
                stats_counts(v.session.stats)
            )
        device = ["device"] if m.per_device else []
        for kind, (name, doc, label) in _STATS_FAMILIES.items():
            fam = CounterMetricFamily(name.removesuffix("_total"), doc, labels=device + ([label] if label else []))
            for dev, counts in sorted(by_device.items()):
                values = {lv: n for (k, lv), n in counts.items() if k == kind}
                if kind == "dropped":
                    values = {r: 0 for r in DROP_REASONS} | values  # every reason, zeros too
                for lv, n in sorted(values.items()):
                    fam.add_metric(([dev] if m.per_device else []) + ([lv] if label else []), n)
            if not fam.samples and not m.per_device and not label:
                fam.add_metric([], 0)
            yield fam
        fam = CounterMetricFamily("petstream_streams_opened", "camera streams opened", labels=device)
        for dev, n in sorted(opened.items()):
            fam.add_metric([dev] if m.per_device else [], n)
        if not opened and not m.per_device:
            fam.add_metric([], 0)
        yield fam
        g = m.gauges()
        yield _gauge("petstream_active_streams", "camera streams connected now", len(views))
        yield _gauge("petstream_batcher_queued_frames", "sampled frames waiting for the model", g.get("queued", 0))
        outbox = sum(v.session.outbox.qsize() for v in views)
        yield _gauge("petstream_outbox_messages", "messages waiting to be sent to cameras", outbox)
        yield _gauge(
            "petstream_governor_rate_scale_ratio",
            "overload governor's sampling-rate scale (1 = every camera's own rate)",
            g.get("rate_scale", 1.0),
        )
        for name, key, doc in (
            ("petstream_model_batches", "batches", "model calls, by backend"),
            ("petstream_model_frames", "frames", "frames through the model (Ask included), by backend"),
        ):
            fam = CounterMetricFamily(name, doc, labels=["backend"])
            fam.add_metric([m.backend], g.get(key, 0))
            yield fam
        fam = CounterMetricFamily(
            "petstream_auth_refusals", "calls refused by authentication, by reason", labels=["reason"]
        )
        for reason, n in sorted(dict(m._refusals).items()):
            fam.add_metric([reason], n)
        yield fam
        info = GaugeMetricFamily("petstream_build_info", "server build and model", labels=["version", "model", "dtype"])
        info.add_metric([str(g.get("version", "")), str(g.get("model", "")), str(g.get("dtype", ""))], 1)
        yield info


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts RPCs by method and final status code, and times them; the outermost interceptor, so calls that a
    later interceptor (authentication) refuses are counted with their status too."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._m = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full = handler_call_details.method or ""  # "/package.Service/Method"
        service, _, method = full.lstrip("/").rpartition("/")
        if handler is None:  # unknown method: a client-chosen name must not become a label value
            service, method = "unknown", "unknown"
            self._m.rpc_handled.labels(service, method, grpc.StatusCode.UNIMPLEMENTED.name).inc()
            return handler
        return _wrap(handler, self._m, service, method)


def _wrap(handler: grpc.RpcMethodHandler, m: ServerMetrics, service: str, method: str) -> grpc.RpcMethodHandler:
    def start(context: grpc.aio.ServicerContext) -> None:
        m.rpc_started.labels(service, method).inc()
        t0 = time.perf_counter()

        def done(_: object) -> None:
            code = context.code()
            name = code.name if isinstance(code, grpc.StatusCode) else _code_name(code)
            m.rpc_handled.labels(service, method, name).inc()
            m.rpc_seconds.labels(service, method).observe(time.perf_counter() - t0)

        context.add_done_callback(done)

    def wrap_behavior(behavior: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def gen(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start(context)
                async for response in behavior(request, context):
                    yield response

            return gen

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start(context)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return call

    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attr, make in kinds:
        behavior = getattr(handler, attr)
        if behavior is not None:
            return make(  # type: ignore[operator]
                wrap_behavior(behavior),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _code_name(code: object) -> str:
    if code is None:
        return "OK"
    try:
        return grpc.StatusCode(code).name  # type: ignore[call-arg]
    except ValueError:
        for c in grpc.StatusCode:
            if c.value[0] == code:
                return c.name
    return "UNKNOWN"

"""The BehaviorStream service: a camera's Stream (one Session each) and Ask, over one batcher and engine."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc

from inference.types import DEFAULT_QUESTIONS, Engine, VQARequest, VQAResult
from ingest import auth, wire
from ingest.config import ServerConfig
from ingest.images import decode_image
from ingest.limits import DeviceRates, DeviceStreams, LimitExceeded
from ingest.metrics import ServerMetrics
from ingest.readahead import drain_unread
from ingest.session import Session
from ingest.threads import model_pool, name_os_thread
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from streaming.batcher import Batcher, Dropped, Outcome, WorkItem
from streaming.episodes import EpisodeBook
from streaming.governor import RateGovernor
from streaming.store import EventStore

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BehaviorStream"].full_name
MAX_ASK_IMAGE_BYTES = 16 << 20
DRAIN_REASON = "the server is restarting (drain): reconnect with backoff; open episodes continue on the next stream"


class BehaviorStreamService(pb_grpc.BehaviorStreamServicer):
    """Opens one Session per camera stream and shares one batcher (and so one model) among all of them."""

    def __init__(self, engine: Engine, config: ServerConfig, store: EventStore) -> None:
        self.engine = engine
        self.config = config
        self.store = store
        self.episodes = EpisodeBook(store, resume_s=config.episode_resume_s)
        self.sessions: dict[str, Session] = {}
        self._decode_pool = ThreadPoolExecutor(
            config.decode_threads, thread_name_prefix="decode", initializer=name_os_thread, initargs=("ps-decode",)
        )
        # one batch at a time uses all cores of a local engine; a remote tier (Ray) takes several at once
        inflight = config.inflight_batches or max(1, int(getattr(engine, "max_inflight", 1)))
        new_pool = functools.partial(model_pool, inflight, config.model_cpus)
        self.batcher = Batcher(engine.run, config.batch, new_pool(), max_inflight=inflight, new_executor=new_pool)
        self._batcher_task: asyncio.Task[None] | None = None
        self.governor = RateGovernor(max_wait_ms=config.batch.max_wait_ms)
        self._governor_task: asyncio.Task[None] | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self.devices = DeviceStreams(
            config.max_streams_per_device,
            lambda: DeviceRates(config.max_chunks_per_s, config.max_bitrate_bps, config.max_chunk_bytes),
        )
        self._sweep_task: asyncio.Task[None] | None = None
        self.draining: str | None = None  # set on drain: new streams are refused with this reason
        self.metrics: ServerMetrics | None = None
        if config.metrics_port:
            self.metrics = ServerMetrics(
                per_device=config.metrics_per_device,
                behaviors={q.name for q in DEFAULT_QUESTIONS} | set(config.behavior_events),
                backend=str(getattr(getattr(engine, "backend", None), "name", "") or ""),
            )
            self.metrics.attach(self._gauges)
            self.batcher.on_batch = self.metrics.batch_done

    def _gauges(self) -> dict[str, object]:
        """Read at scrape time (from the metrics thread): plain attribute reads, no locks on the loop's state."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version("petstream")
        except PackageNotFoundError:
            release = "dev"
        return {
            "queued": self.batcher.queued(),
            "rate_scale": self.governor.scale,
            "batches": self.batcher.batches_run,
            "frames": self.batcher.frames_run,
            "version": release,
            "model": self.engine.model_name,
            "dtype": getattr(self.engine, "dtype", ""),
        }

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.episodes.start()
        self._batcher_task = loop.create_task(self.batcher.run(), name="batcher")
        if self.config.adaptive_rate:
            self._governor_task = loop.create_task(self._govern(), name="governor")
        if self.config.idle_timeout_s > 0:
            self._idle_task = loop.create_task(self._end_idle_streams(), name="idle-streams")
        self._sweep_task = loop.create_task(self._end_abandoned_episodes(), name="abandoned-episodes")

    async def _end_abandoned_episodes(self, interval_s: float = 1.0) -> None:
        """A camera that did not come back within episode_resume_s: its open episodes end (stored, published)."""
        while True:
            await asyncio.sleep(interval_s)
            for event, state in self.episodes.expire(self.config.rule_for):
                log.info(
                    "camera %s away for over %.0f s: its open %s episode %s ended",
                    event.device_id,
                    self.config.episode_resume_s,
                    event.behavior,
                    event.event_id,
                )
                self.store.append(event, "", (event.behavior, state))

    async def _end_idle_streams(self) -> None:
        """End every stream whose camera sent no chunk for idle_timeout_s (keepalive pings do not count)."""
        timeout = self.config.idle_timeout_s
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            self._end_idle(time.monotonic_ns(), timeout)

    def _end_idle(self, now: int, timeout: float) -> None:
        # in a function of its own: a loop variable of the endless loop above would keep the last session alive
        for session in list(self.sessions.values()):
            idle = session.idle_s(now)
            if idle >= timeout:
                session.fail(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no video chunk for {idle:.1f} s (idle_timeout_s={timeout:g}): stream closed; "
                    "reconnect when there is video to send",
                )

    async def _govern(self, interval_s: float = 1.0) -> None:
        """Under overload, lower every live camera's sampling rate instead of letting latency grow."""
        while True:
            await asyncio.sleep(interval_s)
            waits_ms, service_ms = self.batcher.take_load_sample()
            notify = self.governor.tick(
                waits_ms=waits_ms, elapsed_s=interval_s, service_ms=service_ms, queued=self.batcher.queued()
            )
            self._set_rates(notify)

    def _set_rates(self, notify: bool) -> None:
        # in a function of its own: a loop variable of the endless loop above would keep the last session alive
        for session in self.sessions.values():
            session.set_rate_scale(self.governor.scale, notify=notify)

    async def close(self) -> None:
        self.batcher.close()
        for task in (self._batcher_task, self._governor_task, self._idle_task, self._sweep_task):
            if task is not None:
                task.cancel()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        self.batcher.executor.shutdown(wait=False, cancel_futures=True)  # type: ignore[attr-defined]

    def begin_drain(self, reason: str) -> None:
        """Refuse new streams; every open stream answers what is in flight, then ends with UNAVAILABLE."""
        self.draining = reason
        for session in list(self.sessions.values()):
            session.begin_drain(reason)

    def end_remaining(self, reason: str) -> None:
        """The drain ran out of time: end what is left now (frames still waiting are dropped, counted)."""
        for session in list(self.sessions.values()):
            session.fail(grpc.StatusCode.UNAVAILABLE, reason)

    async def Stream(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.CameraMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ServerMessage]:
        messages = aiter(request_iterator)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty stream: the first message must be 'open'")
        cfg = self.config
        try:
            spec = wire.parse_open(
                first,
                default_fps=cfg.default_sample_fps,
                max_fps=cfg.max_sample_fps,
                default_sampling=cfg.default_sampling,
                default_still_recheck_s=cfg.still_recheck_s,
            )
        except wire.InvalidMessage as exc:
            await refuse(context, messages, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.draining is not None:
            await refuse(context, messages, grpc.StatusCode.UNAVAILABLE, self.draining)
        auth.bind_device(auth.current_identity(), spec.device_id)  # Refused: answered by the AuthInterceptor
        replaced = self.devices.to_replace(spec.device_id)  # one live stream per device: the newest wins
        if len(self.sessions) - len(replaced) >= cfg.max_streams:
            await refuse(
                context,
                messages,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server already holds max_streams={cfg.max_streams} streams; retry later or elsewhere",
            )
        session_id = uuid.uuid4().hex[:12]
        for old in replaced:
            self.sessions[old].fail(
                grpc.StatusCode.ABORTED,
                f"replaced by a newer stream of device {spec.device_id!r} (session {session_id}; "
                f"max_streams_per_device={cfg.max_streams_per_device}): do not reconnect this one",
            )
            self.devices.remove(spec.device_id, old)
        lease = await self.episodes.checkout(spec.device_id, session_id)  # the device's open episodes continue
        session = Session(
            spec,
            session_id,
            batcher=self.batcher,
            decode_executor=self._decode_pool,
            image_size=self.engine.image_size,
            rules=cfg.rule_for,
            max_frame_bytes=cfg.max_frame_bytes,
            warn_interval_s=cfg.warn_interval_s,
            model_name=self.engine.model_name,
            readahead_chunks=cfg.readahead_chunks,
            refresh_waiting=cfg.late_binding,
            readahead_bytes=max(cfg.max_chunk_bytes, cfg.max_frame_bytes),
            max_chunk_bytes=cfg.max_chunk_bytes,
            max_pixels=cfg.max_decoded_pixels,
            rates=self.devices.add(spec.device_id, session_id),
            max_outbox=cfg.max_outbox_messages,
            observer=self.metrics,
            journal=self.store,
            lease=lease,
        )
        self.sessions[session_id] = session
        if self.metrics is not None:
            self.metrics.session_opened(session)
        opened = time.monotonic()
        session.set_rate_scale(self.governor.scale, notify=self.governor.scale < 1.0)
        log.info(
            "camera %s connected (session %s, %s, %.2f fps)",
            spec.device_id,
            session_id,
            spec.codec,
            spec.sample_fps,
            extra={"fields": _open_fields(spec, session_id, context)},
        )
        reader = asyncio.create_task(self._read(session, messages), name=f"read-{session_id}")
        try:
            yield wire.accepted(session_id, spec, session.questions, self.engine.model_name)
            async for msg in session.messages():
                yield msg
            if session.end_status is not None:
                code, details = session.end_status
                log.info("camera %s: stream ended by the server (%s): %s", spec.device_id, code.name, details)
                await session.drain_input()
                resume = session.resume_after_pts_us
                trailer = () if resume is None else ((wire.RESUME_AFTER_PTS_KEY, str(resume)),)
                await context.abort(code, details, trailing_metadata=trailer)
        finally:
            reader.cancel()
            session.close_input()
            del self.sessions[session_id]
            self.devices.remove(spec.device_id, session_id)
            self.batcher.forget(session_id)
            session.close()
            if self.metrics is not None:
                self.metrics.session_closed(session)
            fields: dict[str, object] = {"event": "stream_close", "device_id": spec.device_id, "session_id": session_id}
            fields |= {"duration_s": round(time.monotonic() - opened, 3), "totals": _totals(session)}
            log.info(
                "camera %s disconnected (session %s): %s",
                spec.device_id,
                session_id,
                session.stats,
                extra={"fields": fields},
            )

    async def _read(self, session: Session, messages: AsyncIterator[pb.CameraMessage]) -> None:
        try:
            await session.consume(messages)
        except asyncio.CancelledError:
            raise
        except LimitExceeded as exc:  # e.g. an SPS over max_decoded_pixels: the stream ends naming the limit
            session.fail(exc.code, exc.message)
        except Exception as exc:  # a broken reader ends this camera's stream, never the server
            log.exception("camera %s: reader failed", session.device_id)
            session.warn("INTERNAL", f"stream reader failed: {exc}")
            session.abort()

    async def Ask(self, request: pb.AskRequest, context: grpc.aio.ServicerContext) -> pb.AskResponse:  # noqa: N802
        if not request.image:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image is empty: send one JPEG or PNG")
        if len(request.image) > MAX_ASK_IMAGE_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"image is over {MAX_ASK_IMAGE_BYTES} bytes")
        try:
            questions = wire.parse_questions(list(request.behaviors))
        except wire.InvalidMessage as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        loop = asyncio.get_running_loop()
        try:
            image = await loop.run_in_executor(
                self._decode_pool,
                functools.partial(decode_image, max_pixels=self.config.max_decoded_pixels),
                request.image,
            )
        except LimitExceeded as exc:
            await context.abort(exc.code, exc.message)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        done: asyncio.Future[Outcome] = loop.create_future()
        key = f"ask-{uuid.uuid4().hex[:8]}"
        item = WorkItem(key, VQARequest(key, image, questions), time.monotonic_ns(), done.set_result)
        self.batcher.submit(item)
        outcome = await done
        if isinstance(outcome, VQAResult):
            return pb.AskResponse(p_yes=dict(outcome.p_yes), model=self.engine.model_name)
        if isinstance(outcome, Dropped):
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"request dropped ({outcome.reason})")
        await context.abort(grpc.StatusCode.INTERNAL, f"model failed: {outcome}")
        raise AssertionError("unreachable: abort raises")


async def refuse(
    context: grpc.aio.ServicerContext, messages: AsyncIterator[pb.CameraMessage], code: grpc.StatusCode, details: str
) -> None:
    """End a stream before it opens, with `code` and `details` intact for a camera that keeps writing.

    The camera's messages are read (and discarded) until it pauses (1/4 s), half-closes or 2 s pass: ending the call
    under a client write in flight would turn the status into INTERNAL on grpc's asyncio client (grpc/grpc#36066)."""
    log.info("stream refused (%s): %s", code.name, details)
    await drain_unread(messages)
    await context.abort(code, details)


def _open_fields(spec: wire.StreamSpec, session_id: str, context: grpc.aio.ServicerContext) -> dict[str, object]:
    """Structured fields of the stream-open log line (--log-format json)."""
    return {
        "event": "stream_open",
        "device_id": spec.device_id,
        "session_id": session_id,
        "codec": spec.codec,
        "sampling": spec.sampling,
        "sample_fps": spec.sample_fps,
        "buffer_policy": "WAIT" if spec.wait else "DROP_OLDEST",
        "behaviors": [q.name for q in spec.questions],
        "peer": context.peer(),
    }


def _totals(session: Session) -> dict[str, object]:
    """A departing camera's SessionStats as plain JSON values."""
    from dataclasses import asdict

    return {k: dict(v) if isinstance(v, dict) else v for k, v in asdict(session.stats).items()}

"""One camera stream: its decoder, sampler, event trackers, counters and outbound messages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

import grpc

from inference.types import Question, VQARequest, VQAResult
from ingest import wire
from ingest.decoder import DecodeResult, RawFrame, StreamDecoder
from ingest.limits import DeviceRates, LimitExceeded
from ingest.readahead import ReadAhead
from ingest.session_stats import SessionStats
from protos.petstream.v1 import petstream_pb2 as pb
from streaming import sampler as sampling
from streaming.batcher import Batcher, Dropped, Outcome, WorkItem
from streaming.episodes import EpisodeLease
from streaming.events import BehaviorTracker, EpisodeState, EventRule
from streaming.frames import DecodedFrame, Event, FrameScore, FrameTimings
from streaming.sampler import FrameInfo
from streaming.store import StoredEvent

if TYPE_CHECKING:
    from ingest.metrics import ServerMetrics

log = logging.getLogger(__name__)
_DECODE_BATCH = 32  # most chunks of one camera decoded in one job of the decode pool (fairness among cameras)
#: Most frames one decode job samples before it hands them on (to the batcher, or to WAIT backpressure) and
#: yields the decode pool. With one picture decoded at a time, a stream holds at most the decoder's reference
#: pictures, one late-binding candidate, this many sampled pictures and its batcher queue, whatever a chunk holds.
SAMPLED_PER_JOB = 4


class EventJournal(Protocol):
    """Where an event goes before it is sent (streaming.store.EventStore): the future resolves once it is durable."""

    def append(
        self, event: Event, session_id: str, episode: tuple[str, EpisodeState] | None = None
    ) -> asyncio.Future[StoredEvent]: ...


class _FrameRef(NamedTuple):
    """What a frame's answer needs to know about it (the picture itself has gone to the model)."""

    frame_seq: int
    pts_us: int
    ingest_ns: int
    decoded_ns: int
    queued_ns: int  # handed to the batcher (late binding: when the newer picture took the slot)


@dataclass
class _Decoded:
    """What one decode job hands back to the event loop."""

    result: DecodeResult  # counts and warnings of the job (its pictures went to `sampled` or were released)
    sampled: list[DecodedFrame]
    fresher: tuple[RawFrame, int] | None = None  # (picture, seq) newest not sampled, for a waiting frame
    more: bool = False  # the job stopped at SAMPLED_PER_JOB: its input is not exhausted yet


class Session:
    """All state of one camera stream lives here; the server holds nothing else per camera."""

    def __init__(
        self,
        spec: wire.StreamSpec,
        session_id: str,
        *,
        batcher: Batcher,
        decode_executor: Executor,
        image_size: int,
        rules: Callable[[str], EventRule],
        max_frame_bytes: int,
        warn_interval_s: float = 5.0,
        model_name: str = "",
        readahead_chunks: int = 64,
        readahead_bytes: int = 4 << 20,
        refresh_waiting: bool = True,
        max_chunk_bytes: int = 8 << 20,
        max_pixels: int = 0,
        rates: DeviceRates | None = None,
        max_outbox: int = 256,
        observer: ServerMetrics | None = None,
        journal: EventJournal | None = None,
        lease: EpisodeLease | None = None,
    ) -> None:
        self._max_outbox = max_outbox
        self._journal = journal
        self._lease = lease
        #: episode states of behaviors this stream no longer tracks (kept for the device's next stream)
        self._states_left: dict[str, EpisodeState] = dict(lease.states) if lease is not None else {}
        self._max_chunk_bytes = max_chunk_bytes
        self._rates = rates  # the device's chunk-rate and bitrate budget, shared with its other streams
        self._observer = observer  # metrics hooks: scored frames and events (None: metrics off)
        self._refresh = refresh_waiting
        self._readahead_chunks = readahead_chunks
        self._readahead_bytes = readahead_bytes
        self.model_name = model_name
        self.spec = spec
        self.session_id = session_id
        self.device_id = spec.device_id
        self.questions: tuple[Question, ...] = spec.questions
        self.stats = SessionStats()
        # an event waits in the outbox for its store write (the future) and keeps its place among the messages
        self.outbox: asyncio.Queue[pb.ServerMessage | tuple[asyncio.Future[StoredEvent], pb.ServerMessage] | None]
        self.outbox = asyncio.Queue()
        self._batcher = batcher
        self._executor = decode_executor
        self._image_size = image_size
        self._rules = rules
        self.sampler = sampling.create(spec.sampling, spec.sample_fps, still_recheck_s=spec.still_recheck_s)
        self._decoder = StreamDecoder(
            spec.codec,
            max_frame_bytes=max_frame_bytes,
            decode_mode=self.sampler.decode_mode,
            want_packet=self.sampler.want_packet,
            max_pixels=max_pixels,
            orientation=spec.orientation,
            label=spec.device_id,
        )
        self._counts = DecodeResult()  # what the decoder counted since the last decode job handed it on
        self._trackers = {q.name: self._tracker(q.name) for q in self.questions}
        for name, state in list(self._states_left.items()):  # open episodes of behaviors no longer asked for end
            if name not in self._trackers and state.active:
                gone = BehaviorTracker(self.device_id, name, rules(name), state)
                self._emit(gone.end(state.last_pts_us or 0, state.last_frame_seq), gone)
                self._states_left[name] = gone.snapshot()
        self._pending = 0
        self._input_done = False
        self._finished = False
        self._warn_interval_ns = int(warn_interval_s * 1e9)
        self._last_drop_warning_ns = 0
        self._corrupt_warned = (0, 0)  # (corrupt count reported, when)
        self._last_logged_ns: dict[str, int] = {}  # warning code -> last time it was logged at INFO
        self._last_seen = (0, 0)  # (pts_us, frame_seq) of the newest scored frame
        self._ahead: ReadAhead | None = None
        self._reader: asyncio.Task[None] | None = None
        self._drain_reason: str | None = None
        self._newest_pts: int | None = None  # pts of the newest picture decoded (and sampled or passed over)
        #: set on a drain's UNAVAILABLE: the camera resends its video after this pts (trailing metadata)
        self.resume_after_pts_us: int | None = None
        #: set when the server ends this stream early: the gRPC status code and its reason
        self.end_status: tuple[grpc.StatusCode, str] | None = None

    def _tracker(self, behavior: str) -> BehaviorTracker:
        return BehaviorTracker(self.device_id, behavior, self._rules(behavior), self._states_left.pop(behavior, None))

    # -- input side ---------------------------------------------------------------------------------------

    async def consume(self, messages: AsyncIterator[pb.CameraMessage]) -> None:
        """Read the camera's messages until it half-closes, then flush the decoder.

        A read-ahead task keeps reading while the decoder works; the chunks that piled up meanwhile are decoded
        in one job of the decode pool (in order; other message kinds are handled between them).
        """
        ahead = self._ahead = ReadAhead(
            messages, max_messages=self._readahead_chunks, max_bytes=self._readahead_bytes, max_batch=_DECODE_BATCH
        )
        reader = self._reader = asyncio.create_task(ahead.run(), name=f"readahead-{self.session_id}")
        try:
            async for batch in ahead.batches():
                if self._finished:
                    return  # ended by the server (fail()): nothing more is decoded
                if self._drain_reason is not None:
                    self.stats.chunks_discarded += sum(m.HasField("chunk") for m, _ in batch)
                    break  # draining: what is in flight finishes, nothing new is decoded
                chunks: list[tuple[bytes, int | None, int]] = []
                for msg, arrival_ns in batch:
                    kind = msg.WhichOneof("kind")
                    if kind == "chunk":
                        chunk = msg.chunk
                        if len(chunk.data) > self._max_chunk_bytes:
                            self.fail(
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"chunk seq {chunk.seq} holds {len(chunk.data)} bytes, over the limit "
                                f"max_chunk_bytes={self._max_chunk_bytes}",
                            )
                            return
                        if self._rates is not None:
                            try:
                                self._rates.take(len(chunk.data), arrival_ns)
                            except LimitExceeded as exc:
                                self.fail(exc.code, exc.message)
                                return
                        self.stats.chunks += 1
                        self.stats.bytes += len(chunk.data)
                        chunks.append((chunk.data, chunk.pts_us or None, arrival_ns))
                        continue
                    if chunks:  # keep the order: what came before an update is decoded before it applies
                        await self._decode_all(self._pictures(chunks))
                        chunks = []
                    if kind == "update":
                        self._update(msg.update)
                    elif kind == "open":
                        self.warn("UNEXPECTED_OPEN", "a second 'open' on an open stream was ignored")
                    else:
                        self.warn("EMPTY_MESSAGE", "a CameraMessage with no kind set was ignored")
                if chunks:
                    await self._decode_all(self._pictures(chunks))
        finally:
            if self.end_status is None and self._drain_reason is None:
                reader.cancel()  # else it stays to drain the camera's writes (drain_input), so the status arrives
        await self._decode_all(self._decoder.flush_frames(self._counts))
        self._input_done = True
        self._maybe_finish()

    def _pictures(self, chunks: list[tuple[bytes, int | None, int]]) -> Iterator[RawFrame]:
        """The pictures of `chunks`, decoded one at a time as they are asked for (counts go to self._counts)."""
        for data, pts_us, ingest_ns in chunks:
            yield from self._decoder.frames(data, pts_us, ingest_ns, self._counts)

    async def _decode_all(self, pictures: Iterator[RawFrame]) -> None:
        """Decode and sample `pictures` in jobs of the decode pool, handing each job's sampled frames on before the
        next job starts: a chunk's decoding yields to sampling and backpressure, so memory stays bounded."""
        loop = asyncio.get_running_loop()
        while True:
            decoded = await loop.run_in_executor(self._executor, self._decode_job, pictures)
            await self._accept(decoded)
            if not decoded.more:
                return

    def _decode_job(self, pictures: Iterator[RawFrame]) -> _Decoded:
        """Runs in the decode pool: decode and sample until SAMPLED_PER_JOB frames are sampled or the input ends.

        Each picture is sampled (and scaled, if picked) or released before the next is decoded, so the decoder's
        buffer pool is reused instead of holding a chunk's worth of full-size pictures.
        """
        sampler = self.sampler
        sampled: list[DecodedFrame] = []
        late_binding = self._refresh and not self.spec.wait and self._batcher.queued(self.session_id) > 0
        newest = None  # live cameras: the newest candidate not sampled, while a sampled frame still waits
        more = False
        for raw in pictures:
            seq = self.stats.frames_decoded
            self.stats.frames_decoded += 1
            self._newest_pts = raw.pts_us
            if raw.corrupt:  # concealed damage: not a picture to score, nor a motion reference, nor a late binding
                self.stats.corrupt += 1
                continue
            thumb = None
            if sampler.needs_thumbnail:
                w, h = sampling.THUMB_SIZE
                thumb = raw.to_ndarray(format="gray", width=w, height=h)
            if not raw.candidate or not sampler.should_sample(FrameInfo(raw.pts_us, raw.key_frame, thumb)):
                self.stats.skipped_by_sampler += 1
                if raw.candidate and late_binding:
                    newest = (raw, seq)
                continue
            sampled.append(self._scaled(raw, seq))
            newest = None
            if len(sampled) >= SAMPLED_PER_JOB:
                more = True
                break
        result = self._counts.take()
        self.stats.not_decoded_by_policy += result.not_decoded
        return _Decoded(result, sampled, newest if not sampled else None, more)

    def _scaled(self, raw: RawFrame, seq: int) -> DecodedFrame:
        size = self._image_size
        image = raw.to_ndarray(format="rgb24", width=size, height=size)
        return DecodedFrame(self.device_id, seq, raw.pts_us, raw.ingest_ns, raw.decoded_ns, raw.key_frame, image)

    def _late_request(self, raw: RawFrame, seq: int) -> Callable[[], VQARequest]:
        """A refreshed frame is scaled in the model thread just before its batch runs, and only if it runs."""
        questions = self.questions

        def prepare() -> VQARequest:
            return VQARequest(key=seq, image=self._scaled(raw, seq).image, questions=questions)

        return prepare

    async def _accept(self, decoded: _Decoded) -> None:
        self.stats.skipped_resync += decoded.result.skipped_frames
        for w in decoded.result.warnings:
            self.warn(w.code, w.message)
        self._warn_corrupt()
        if decoded.fresher is not None:
            raw, seq = decoded.fresher
            now = time.monotonic_ns()
            ref = _FrameRef(seq, raw.pts_us, raw.ingest_ns, raw.decoded_ns, now)
            item = WorkItem(self.session_id, self._late_request(raw, seq), now, self._on_done_for(ref))
            if self._batcher.refresh(item):
                self.stats.refreshed += 1
        for frame in decoded.sampled:
            if self.spec.wait:
                await self._batcher.wait_for_room(self.session_id)
            self.stats.frames_sampled += 1
            self._pending += 1
            request = VQARequest(key=frame.frame_seq, image=frame.image, questions=self.questions)
            now = time.monotonic_ns()
            ref = _FrameRef(frame.frame_seq, frame.pts_us, frame.ingest_ns, frame.decoded_ns, now)
            item = WorkItem(self.session_id, request, now, self._on_done_for(ref))
            self._batcher.submit(item)

    def _update(self, update: pb.BehaviorUpdate) -> None:
        try:
            questions = wire.parse_questions(list(update.behaviors))
        except wire.InvalidMessage as exc:
            self.warn("INVALID_UPDATE", f"behavior update ignored: {exc}")
            return
        pts, seq = self._last_seen
        for name in set(self._trackers) - {q.name for q in questions}:
            tracker = self._trackers.pop(name)
            self._emit(tracker.end(pts, seq), tracker)
            self._states_left[name] = tracker.snapshot()
        for q in questions:
            self._trackers.setdefault(q.name, self._tracker(q.name))
        self.questions = questions
        self.send(wire.accepted(self.session_id, self.spec, questions, model=self.model_name))

    # -- output side --------------------------------------------------------------------------------------

    def _on_done_for(self, frame: _FrameRef):  # noqa: ANN202 - a small closure
        def on_done(outcome: Outcome) -> None:
            self._pending -= 1
            if isinstance(outcome, VQAResult):
                self._score(frame, outcome)
            elif isinstance(outcome, Dropped):
                self._dropped(outcome.reason)
            else:
                self.stats.model_errors += 1
                self.warn("MODEL_ERROR", f"the model failed on frame {frame.frame_seq}: {outcome}")
            self._maybe_finish()

        return on_done

    def _score(self, frame: _FrameRef, result: VQAResult) -> None:
        now = time.monotonic_ns()
        t = result.timings
        timings = FrameTimings(
            decode_ms=(frame.decoded_ns - frame.ingest_ns) / 1e6,
            batch_wait_ms=max(0.0, (now - frame.decoded_ns) / 1e6 - (t.vision_s + t.text_s + t.decode_s) * 1e3),
            sample_wait_ms=max(0.0, (frame.queued_ns - frame.decoded_ns) / 1e6),
            vision_ms=t.vision_s * 1e3,
            text_ms=(t.text_s + t.decode_s) * 1e3,
            total_ms=(now - frame.ingest_ns) / 1e6,
        )
        score = FrameScore(
            self.device_id, frame.frame_seq, frame.pts_us, dict(result.p_yes), frame.ingest_ns, timings, result.pool
        )
        self.stats.frames_scored += 1
        if self._observer is not None:
            self._observer.frame_scored(self.device_id, timings)
        self._last_seen = (frame.pts_us, frame.frame_seq)
        if self.spec.want_scores:
            self.send(wire.scores_message(score))
        for name, p in score.p_yes.items():
            tracker = self._trackers.get(name)
            if tracker is not None:
                self._emit(tracker.update(p, frame.pts_us, frame.frame_seq), tracker)

    def _emit(self, event: Event | None, tracker: BehaviorTracker) -> None:
        """Store the event (with its episode's state, in one write), then send it once the write is durable."""
        if event is None:
            return
        self.stats.events += 1
        if self._observer is not None:
            self._observer.event(self, event)
        if self._journal is None:  # a session outside a server (unit tests): nothing to store it in
            if not self._finished:
                self.outbox.put_nowait(wire.event_message(event))
            return
        owner = self._lease is None or self._lease.owner
        stored = self._journal.append(event, self.session_id, (tracker.behavior, tracker.snapshot()) if owner else None)
        if not self._finished:
            self.outbox.put_nowait((stored, wire.event_message(event)))

    def _dropped(self, reason: str) -> None:
        self.stats.dropped[reason] += 1
        now = time.monotonic_ns()
        if reason != "shutdown" and now - self._last_drop_warning_ns >= self._warn_interval_ns:
            self._last_drop_warning_ns = now
            counts = ", ".join(f"{k}={v}" for k, v in sorted(self.stats.dropped.items()))
            self.warn("FRAMES_DROPPED", f"the server is behind; sampled frames dropped so far: {counts}")

    def _warn_corrupt(self, *, final: bool = False) -> None:
        """CORRUPT_DATA at the first damaged picture, then at most once per warning interval while more come, and
        once at the end of the stream for any not yet reported."""
        reported, at_ns = self._corrupt_warned
        count = self.stats.corrupt
        now = time.monotonic_ns()
        if count > reported and (final or reported == 0 or now - at_ns >= self._warn_interval_ns):
            self._corrupt_warned = (count, now)
            self.warn(
                "CORRUPT_DATA",
                f"{count - reported} damaged picture(s) (decoded with concealed errors) not scored; "
                f"{count} so far on this stream",
            )

    def set_rate_scale(self, scale: float, *, notify: bool) -> None:
        """The overload governor's rate scale; replays (WAIT) are slowed by flow control instead."""
        if self.spec.wait or self.sampler.rate_scale == scale:
            return
        self.sampler.rate_scale = scale
        if notify:
            fps = self.spec.sample_fps
            if scale < 1.0:
                self.warn(
                    "RATE_REDUCED", f"server overloaded: looking at {fps * scale:.2f} frames/s instead of {fps:g}"
                )
            else:
                self.warn("RATE_RESTORED", f"load is back to normal: looking at {fps:g} frames/s again")

    def warn(self, code: str, message: str) -> None:
        self.stats.warnings[code] += 1
        # at most one line per code and interval at INFO: a camera sending bad data must not log every frame
        now = time.monotonic_ns()
        quiet = now - self._last_logged_ns.get(code, -self._warn_interval_ns) < self._warn_interval_ns
        if not quiet:
            self._last_logged_ns[code] = now
        log.log(logging.DEBUG if quiet else logging.INFO, "camera %s: %s: %s", self.device_id, code, message)
        self.send(wire.warning_message(code, message))

    def send(self, msg: pb.ServerMessage) -> None:
        """Queue a message for the camera. A camera that does not read its replies fills the outbox: past
        max_outbox_messages scores and warnings are dropped (counted); events and accepted are always queued."""
        if self._finished:
            return
        kind = msg.WhichOneof("kind")
        if self.outbox.qsize() >= self._max_outbox and kind in ("scores", "warning"):
            self.stats.outbox_dropped[kind] += 1
            return
        self.outbox.put_nowait(msg)

    def _maybe_finish(self) -> None:
        if self._input_done and self._pending == 0 and not self._finished:
            self._warn_corrupt(final=True)
            if self._drain_reason is None:
                pts, seq = self._last_seen
                for tracker in self._trackers.values():
                    self._emit(tracker.end(pts, seq), tracker)
            else:  # a restart: open episodes stay open for the camera's next stream
                self.end_status = (grpc.StatusCode.UNAVAILABLE, self._drain_reason)
                self.resume_after_pts_us = self._newest_pts
            self._finished = True
            self.outbox.put_nowait(None)

    def begin_drain(self, reason: str) -> None:
        """The server is going away: decode nothing new, answer the frames in flight, then end the stream with
        UNAVAILABLE and `reason` (the camera reconnects); its open episodes are kept for that next stream."""
        if self._finished or self._drain_reason is not None or self._input_done:
            return  # a camera that already half-closed finishes normally: it is done, not interrupted
        self._drain_reason = reason
        # told first, as a message: a camera that half-closes now gets the status intact (no write in flight)
        self.warn("DRAINING", f"{reason}; stop sending (half-close) and wait for the status")
        if self._ahead is not None:
            self._ahead.stop()
        self._maybe_finish()

    def close(self) -> None:
        """The stream is over (any way): stop reading, and keep the device's episode states for its next stream."""
        self.close_input()
        if self._ahead is not None:
            self.stats.chunks_discarded += self._ahead.discarded
        if self._lease is not None:
            states = dict(self._states_left)
            states.update({name: t.snapshot() for name, t in self._trackers.items()})
            self._lease.release(states)

    def abort(self) -> None:
        """End the stream back to the camera now (after a failure of its reader)."""
        self.fail(grpc.StatusCode.INTERNAL, "the server failed reading this stream")

    def fail(self, code: grpc.StatusCode, details: str) -> None:
        """End the stream now with a gRPC status (a limit hit, an idle timeout); frames still waiting are dropped."""
        if not self._finished:
            self.end_status = (code, details)
            self._finished = True
            self.outbox.put_nowait(None)

    def idle_s(self, now_ns: int) -> float:
        """Seconds the camera has held this stream open without sending a chunk (0 while it is not waited on)."""
        since = self._ahead.idle_since_ns if self._ahead is not None else None
        return 0.0 if since is None else (now_ns - since) / 1e9

    async def drain_input(self) -> None:
        """Before an early status: let a camera that is still writing finish (see ReadAhead.drain)."""
        if self._ahead is not None:
            await self._ahead.drain()
        self.close_input()

    def close_input(self) -> None:
        """Stop reading the camera (the stream is over)."""
        if self._reader is not None:
            self._reader.cancel()

    async def messages(self) -> AsyncIterator[pb.ServerMessage]:
        """The stream back to the camera; ends after the camera half-closed and every frame was answered."""
        while (item := await self.outbox.get()) is not None:
            if isinstance(item, tuple):
                stored, item = item
                try:
                    await stored  # durable before it is sent (a failing store answers at once; see EventStore)
                except Exception:  # noqa: BLE001 - the camera still gets its event
                    log.exception("camera %s: storing an event failed", self.device_id)
            yield item

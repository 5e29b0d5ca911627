"""A simulated camera: streams encoded units over one gRPC bidi stream and collects what comes back."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc

from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.credentials import ClientSecurity, open_channel
from simulators.video import EncodedUnit, WireCodec
from streaming.orientation import IDENTITY, Orientation

_CODECS = {"h264": pb.CODEC_H264, "hevc": pb.CODEC_HEVC, "mjpeg": pb.CODEC_MJPEG}
_SAMPLING = {
    "": pb.SAMPLING_UNSPECIFIED,
    "rate": pb.SAMPLING_RATE,
    "keyframes": pb.SAMPLING_KEYFRAMES,
    "motion": pb.SAMPLING_MOTION,
    "compressed": pb.SAMPLING_COMPRESSED,
}
#: call metadata naming the camera, so an L7 balancer can hash it to one ingest pod (docs/deploy.md, "Balancing")
DEVICE_ID_HEADER = "x-device-id"
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 << 20),  # the server judges chunk sizes (and names its limit)
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.keepalive_time_ms", 30_000),  # cameras sit behind NAT: keep the mapping alive
    ("grpc.keepalive_timeout_ms", 10_000),
]


#: trailing metadata of a draining server's UNAVAILABLE: the newest pts it decoded (docs/protocol.md, "Restarts")
RESUME_AFTER_PTS_KEY = "petstream-resume-after-pts-us"
#: the warning a draining server sends first: half-close and wait for its UNAVAILABLE, then reconnect
DRAINING = "DRAINING"
#: statuses after which a camera reconnects (with backoff): the server restarts (drain), is full, went away, or
#: ended an idle stream; anything else (a bad open, bad credentials) fails the same way again
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


@dataclass(frozen=True)
class Backoff:
    """How a camera reconnects: exponential backoff with full jitter (so a fleet does not reconnect in step)."""

    initial_s: float = 0.5
    max_s: float = 10.0
    multiplier: float = 2.0
    max_attempts: int = 0  # consecutive failed attempts before giving up; 0 = keep trying while there is video
    max_backlog_s: float = 30.0  # video that piled up while away is sent on reconnect, at most this much
    resend_s: float = 10.0  # video kept after sending, to resend what the server did not decode

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_s, self.initial_s * self.multiplier**attempt))

    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC channel options that keep the channel's own reconnecting within this backoff.

        By default gRPC backs a failed connection off up to 120 s, and every channel of the process with the same
        target and options shares that state: after a server restart, a new channel fails at once with the stale
        "Connection refused" while the server is already listening. A channel-local subchannel pool and gRPC's
        backoff capped to ours let a client reconnect as soon as its own backoff says so."""
        return [
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.initial_reconnect_backoff_ms", max(100, int(self.initial_s * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(100, int(self.initial_s * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(100, int(self.max_s * 1000))),
        ]


@dataclass
class CameraReport:
    """Everything one camera sent and received."""

    device_id: str
    units_sent: int = 0
    bytes_sent: int = 0
    accepted: pb.StreamAccepted | None = None
    events: list[pb.BehaviorEvent] = field(default_factory=list)
    scores: list[pb.FrameScores] = field(default_factory=list)
    warnings: list[pb.StreamWarning] = field(default_factory=list)
    truth: dict[int, frozenset[str]] = field(default_factory=dict)  # pts_us -> labels (synthetic cameras)
    error: str | None = None  # gRPC status if the stream failed
    source_error: str | None = None  # the video source failed part-way: the stream was half-closed there
    started_monotonic: float = 0.0  # when the first unit's pts was due
    first_pts_us: int = 0
    speed: float = 1.0
    event_arrivals: list[float] = field(default_factory=list)  # monotonic arrival time of each event
    score_arrivals: list[float] = field(default_factory=list)  # monotonic arrival time of each FrameScores
    connections: int = 0  # streams opened (1 + reconnects)
    stream_errors: list[str] = field(default_factory=list)  # the status each broken stream ended with
    units_skipped: int = 0  # not sent: waiting for a keyframe to resume on, or older than the backlog allows
    reconnect_s: list[float] = field(default_factory=list)  # stream broken -> next stream accepted, each time

    def sent_at(self, pts_us: int) -> float:
        """Monotonic time the unit with this pts was (due to be) sent."""
        return self.started_monotonic + (pts_us - self.first_pts_us) / 1e6 / (self.speed or 1.0)


def _decode_time(unit: EncodedUnit) -> int:
    return unit.pts_us if unit.dts_us is None else unit.dts_us


def _resume_point(exc: grpc.aio.AioRpcError) -> int | None:
    for key, value in exc.trailing_metadata() or ():
        if key == RESUME_AFTER_PTS_KEY:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def format_message(device_id: str, msg: pb.ServerMessage) -> str | None:
    """One printable line per event or warning (scores are not printed)."""
    kind = msg.WhichOneof("kind")
    if kind == "event":
        e = msg.event
        state = pb.EventState.Name(e.state)
        return (
            f"{device_id:<10} t={e.pts_us / 1e6:7.2f}s  {e.behavior:<18} {state:<7} "
            f"conf={e.confidence:.2f}  id={e.event_id}"
        )
    if kind == "warning":
        return f"{device_id:<10} WARNING {msg.warning.code}: {msg.warning.message}"
    if kind == "accepted":
        a = msg.accepted
        return (
            f"{device_id:<10} accepted session={a.session_id} model={a.model} fps={a.sample_fps:g} "
            f"behaviors={[b.name for b in a.behaviors]}"
        )
    return None


async def run_camera(
    target: str,
    device_id: str,
    units: Iterable[EncodedUnit],
    *,
    codec: WireCodec = "h264",
    speed: float = 1.0,
    want_scores: bool = False,
    sample_fps: float = 0.0,
    behaviors: list[tuple[str, str]] | None = None,
    on_message: Callable[[str, pb.ServerMessage], None] | None = None,
    channel: grpc.aio.Channel | None = None,
    open_message: pb.CameraMessage | None = None,
    wait: bool | None = None,
    sampling: str = "",
    still_recheck_s: float = 0.0,
    security: ClientSecurity | None = None,
    orientation: Orientation = IDENTITY,
    reconnect: Backoff | None = None,
) -> CameraReport:
    """Stream `units` (paced to their decode times at `speed`× real time; 0 = as fast as possible) and gather
    replies. A source that raises ends the stream there (half-close), recorded in `source_error`.

    With `reconnect`, a stream the server ends with a retryable status (RETRYABLE: a restart's UNAVAILABLE, ...)
    is opened again after a backoff with jitter, and the video is resent from the keyframe before the server's
    resume point: what piled up meanwhile is sent as fast as the server takes it (up to `max_backlog_s` of it)."""
    report = CameraReport(device_id, speed=speed)
    wait = speed == 0 if wait is None else wait  # replay faster than real time: ask the server not to drop
    own_channel = channel is None
    channel = channel or open_channel(target, security, CHANNEL_OPTIONS + (reconnect or Backoff()).channel_options())
    stub = pb_grpc.BehaviorStreamStub(channel)
    first = open_message or pb.CameraMessage(
        open=pb.StreamOpen(
            device_id=device_id,
            codec=_CODECS[codec],
            behaviors=[pb.Behavior(name=n, question=q) for n, q in behaviors or []],
            want_scores=want_scores,
            sample_fps=sample_fps,
            buffer_policy=pb.WAIT if wait else pb.DROP_OLDEST,
            sampling=_SAMPLING[sampling],
            still_recheck_s=still_recheck_s,
            orientation=pb.Orientation(rotate_degrees=orientation.rotate, flip_horizontal=orientation.flip),
        )
    )

    it = iter(units)
    rendered = isinstance(units, Sequence)  # already encoded: no need to leave the loop for each unit
    clock: dict[str, float] = {}  # the pacing schedule survives reconnects: "start" (monotonic), "first_due"
    resume = [False]  # the next stream starts at a keyframe
    exhausted = [False]
    sent: deque[EncodedUnit] = deque()  # the last resend_s of video sent (reconnect: resend what was not decoded)
    again: deque[EncodedUnit] = deque()  # to send before the next new unit

    def opening() -> pb.CameraMessage:
        """A camera that comes back with video piled up replays it: WAIT, so the server slows it, never drops it.
        Video to resend (from the keyframe before the server's resume point) is always past due: a burst."""
        behind = bool(again) or (bool(clock) and time.monotonic() - clock.get("last_due", 0.0) > 1.0)
        if open_message is not None or wait or not behind:
            return first
        replay = pb.CameraMessage()
        replay.CopyFrom(first)
        replay.open.buffer_policy = pb.WAIT
        return replay

    stream_no = [0]  # which stream is current: a broken stream's generator stops instead of taking video
    pulling = asyncio.Lock()  # the unit source is a plain generator: one pull at a time

    async def next_unit() -> EncodedUnit | None:
        if again:
            return again.popleft()
        async with pulling:  # rendering and encoding (a generator) run off the loop
            try:
                return next(it, None) if rendered else await asyncio.to_thread(next, it, None)
            except Exception as exc:  # a broken source ends the video cleanly, with the reason kept
                report.source_error = f"{type(exc).__name__}: {exc}"
                return None

    def put_back(unit: EncodedUnit) -> None:
        """Into the resend queue at its place in decode order (it was taken before the resend was planned)."""
        order = [_decode_time(u) for u in again]
        at = bisect.bisect_left(order, _decode_time(unit))
        if at == len(order) or again[at] is not unit:
            again.insert(at, unit)

    async def requests(mine: int, halt: asyncio.Event):  # noqa: ANN202
        yield opening()
        seq = 0
        while mine == stream_no[0] and not halt.is_set():
            unit = await next_unit()
            if unit is None:
                exhausted[0] = mine == stream_no[0]
                return
            if not clock:  # B-frames: units come in decode order, their pts are not monotonic; pace by decode time
                clock["first_due"] = _decode_time(unit)
                report.first_pts_us = unit.pts_us
                clock["start"] = report.started_monotonic = time.monotonic()
            report.truth[unit.pts_us] = unit.labels
            due = clock["start"] + (_decode_time(unit) - clock["first_due"]) / 1e6 / speed if speed > 0 else 0.0
            if resume[0]:
                too_old = reconnect is not None and speed > 0 and time.monotonic() - due > reconnect.max_backlog_s
                if not unit.key or too_old:
                    report.units_skipped += 1
                    continue
                resume[0] = False
            if speed > 0:
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(halt.wait(), delay)
            if mine != stream_no[0] or halt.is_set():  # the stream is ending: the next one sends this unit
                put_back(unit)
                return
            clock["last_due"] = due
            seq += 1
            report.units_sent += 1
            report.bytes_sent += len(unit.data)
            if reconnect is not None:
                sent.append(unit)
                while _decode_time(sent[0]) < _decode_time(unit) - reconnect.resend_s * 1e6:
                    sent.popleft()
            yield pb.CameraMessage(chunk=pb.VideoChunk(data=unit.data, seq=seq, pts_us=unit.pts_us))

    def plan_resume(exc: grpc.aio.AioRpcError) -> None:
        """Resend from the keyframe before the first unit the server did not decode (its resume point, or else
        the last unit sent): nothing is skipped, and what it saw already it ignores (by pts)."""
        stream_no[0] += 1  # the broken stream's generator takes no more video
        resume_after = _resume_point(exc)
        units_sent = list(sent)
        first_missing = len(units_sent) - 1
        if resume_after is not None:
            first_missing = next((i for i, u in enumerate(units_sent) if u.pts_us > resume_after), len(units_sent))
        keys = [i for i, u in enumerate(units_sent[: first_missing + 1]) if u.key]
        if not keys:  # nothing to resend from: resume at the next keyframe
            resume[0] = True
            return
        again.extendleft(reversed(units_sent[keys[-1] :]))
        sent.clear()

    rng = random.Random(hash(device_id))
    attempt = 0
    broken_at: float | None = None
    try:
        # percent-encoded: metadata values are ASCII, device ids need not be; the balancer only hashes it
        hashed_id = urllib.parse.quote(device_id, safe="")
        while True:
            report.connections += 1
            try:
                halt = asyncio.Event()  # the server said it is draining: stop writing, so its status arrives intact
                async for msg in stub.Stream(requests(stream_no[0], halt), metadata=((DEVICE_ID_HEADER, hashed_id),)):
                    kind = msg.WhichOneof("kind")
                    if kind == "accepted":
                        report.accepted = msg.accepted
                        attempt = 0
                        if broken_at is not None:
                            report.reconnect_s.append(time.monotonic() - broken_at)
                            broken_at = None
                    elif kind == "event":
                        report.events.append(msg.event)
                        report.event_arrivals.append(time.monotonic())
                    elif kind == "scores":
                        report.scores.append(msg.scores)
                        report.score_arrivals.append(time.monotonic())
                    elif kind == "warning":
                        report.warnings.append(msg.warning)
                        if msg.warning.code == DRAINING and reconnect is not None:
                            halt.set()
                    if on_message is not None:
                        on_message(device_id, msg)
                report.error = None
                return report
            except grpc.aio.AioRpcError as exc:
                report.error = f"{exc.code().name}: {exc.details()}"
                report.stream_errors.append(report.error)
                gave_up = reconnect is None or (reconnect.max_attempts and attempt >= reconnect.max_attempts)
                gave_up = gave_up or report.accepted is None  # never reached a server: say so, do not spin
                if gave_up or exhausted[0] or exc.code() not in RETRYABLE:
                    return report
                plan_resume(exc)
            assert reconnect is not None
            broken_at = broken_at or time.monotonic()
            await asyncio.sleep(reconnect.delay_s(attempt, rng))
            # then wait for the connection itself (gRPC retries it on its own, within this backoff): a stream opened
            # on a channel that is still backing off fails at once, and the next try would be a whole delay away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.channel_ready(), reconnect.max_s)
            attempt += 1
    finally:
        if own_channel:
            await channel.close()

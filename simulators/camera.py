"""A simulated camera: streams encoded units over one gRPC bidi stream and collects what comes back."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
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

    def sent_at(self, pts_us: int) -> float:
        """Monotonic time the unit with this pts was (due to be) sent."""
        return self.started_monotonic + (pts_us - self.first_pts_us) / 1e6 / (self.speed or 1.0)


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
) -> CameraReport:
    """Stream `units` (paced to their decode times at `speed`× real time; 0 = as fast as possible) and gather
    replies. A source that raises ends the stream there (half-close), recorded in `source_error`."""
    report = CameraReport(device_id, speed=speed)
    wait = speed == 0 if wait is None else wait  # replay faster than real time: ask the server not to drop
    own_channel = channel is None
    channel = channel or open_channel(target, security, CHANNEL_OPTIONS)
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

    async def requests():  # noqa: ANN202
        yield first
        start = time.monotonic()
        report.started_monotonic = start
        first_due: int | None = None
        it = iter(units)
        rendered = isinstance(units, Sequence)  # already encoded: no need to leave the loop for each unit
        seq = 0
        while True:
            # rendering and encoding (a generator) run off the loop
            try:
                unit = next(it, None) if rendered else await asyncio.to_thread(next, it, None)
            except Exception as exc:  # a broken source ends this stream cleanly, with the reason kept
                report.source_error = f"{type(exc).__name__}: {exc}"
                return
            if unit is None:
                return
            # B-frames: units come in decode order, their pts are not monotonic; pace by the decode time
            due = unit.pts_us if unit.dts_us is None else unit.dts_us
            if first_due is None:
                first_due = due
                report.first_pts_us = unit.pts_us
                start = report.started_monotonic = time.monotonic()
            if speed > 0:
                delay = start + (due - first_due) / 1e6 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            report.truth[unit.pts_us] = unit.labels
            seq += 1
            report.units_sent += 1
            report.bytes_sent += len(unit.data)
            yield pb.CameraMessage(chunk=pb.VideoChunk(data=unit.data, seq=seq, pts_us=unit.pts_us))

    try:
        # percent-encoded: metadata values are ASCII, device ids need not be; the balancer only hashes it
        hashed_id = urllib.parse.quote(device_id, safe="")
        async for msg in stub.Stream(requests(), metadata=((DEVICE_ID_HEADER, hashed_id),)):
            kind = msg.WhichOneof("kind")
            if kind == "accepted":
                report.accepted = msg.accepted
            elif kind == "event":
                report.events.append(msg.event)
                report.event_arrivals.append(time.monotonic())
            elif kind == "scores":
                report.scores.append(msg.scores)
                report.score_arrivals.append(time.monotonic())
            elif kind == "warning":
                report.warnings.append(msg.warning)
            if on_message is not None:
                on_message(device_id, msg)
    except grpc.aio.AioRpcError as exc:
        report.error = f"{exc.code().name}: {exc.details()}"
    finally:
        if own_channel:
            await channel.close()
    return report

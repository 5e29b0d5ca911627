"""The ingest boundary: validates camera messages into typed specs and turns results into ServerMessages."""

from __future__ import annotations

import math
from dataclasses import dataclass

from inference.types import DEFAULT_QUESTIONS, Question
from ingest.decoder import CodecName
from protos.petstream.v1 import petstream_pb2 as pb
from streaming.frames import Event, FrameScore
from streaming.orientation import IDENTITY, ROTATIONS, Orientation
from streaming.store import StoredEvent

MAX_DEVICE_ID = 128
#: trailing metadata of a drain's UNAVAILABLE: the pts of the newest frame the server decoded; the camera resends
#: its video from the keyframe before the next one (docs/protocol.md, "Restarts")
RESUME_AFTER_PTS_KEY = "petstream-resume-after-pts-us"
MAX_BEHAVIORS = 16
MAX_QUESTION_CHARS = 200

_CODECS: dict[int, CodecName] = {pb.CODEC_H264: "h264", pb.CODEC_HEVC: "hevc", pb.CODEC_MJPEG: "mjpeg"}
_STATES = {"STARTED": pb.STARTED, "ENDED": pb.ENDED}
_SAMPLING = {
    pb.SAMPLING_RATE: "rate",
    pb.SAMPLING_KEYFRAMES: "keyframes",
    pb.SAMPLING_MOTION: "motion",
    pb.SAMPLING_COMPRESSED: "compressed",
}


class InvalidMessage(ValueError):
    """A camera message that cannot be accepted; the text names the field and what is allowed."""


@dataclass(frozen=True)
class StreamSpec:
    """What a camera asked for when it opened its stream, validated, defaults filled in."""

    device_id: str
    codec: CodecName
    questions: tuple[Question, ...]
    want_scores: bool
    sample_fps: float
    wait: bool = False  # buffer policy WAIT (never drop) instead of DROP_OLDEST
    sampling: str = "rate"  # a name in streaming.sampler's registry
    still_recheck_s: float = 20.0
    orientation: Orientation = IDENTITY  # the camera's mounting, applied after any orientation in the stream


def parse_questions(behaviors: list[pb.Behavior] | None) -> tuple[Question, ...]:
    if not behaviors:
        return DEFAULT_QUESTIONS
    if len(behaviors) > MAX_BEHAVIORS:
        raise InvalidMessage(f"behaviors: {len(behaviors)} given, at most {MAX_BEHAVIORS} allowed")
    questions: list[Question] = []
    seen: set[str] = set()
    for i, b in enumerate(behaviors):
        name, text = b.name.strip(), b.question.strip()
        if not name:
            raise InvalidMessage(f"behaviors[{i}].name is empty")
        if name in seen:
            raise InvalidMessage(f"behaviors[{i}].name {name!r} is repeated")
        if not text:
            default = {q.name: q for q in DEFAULT_QUESTIONS}.get(name)
            if default is None:
                raise InvalidMessage(
                    f"behaviors[{i}].question is empty and {name!r} is not a default behavior "
                    f"({[q.name for q in DEFAULT_QUESTIONS]})"
                )
            text = default.text
        if len(text) > MAX_QUESTION_CHARS:
            raise InvalidMessage(f"behaviors[{i}].question is longer than {MAX_QUESTION_CHARS} characters")
        seen.add(name)
        questions.append(Question(name, text))
    return tuple(questions)


def parse_open(
    msg: pb.CameraMessage,
    *,
    default_fps: float,
    max_fps: float,
    default_sampling: str = "rate",
    default_still_recheck_s: float = 20.0,
) -> StreamSpec:
    """Validate the first message of a stream."""
    if msg.WhichOneof("kind") != "open":
        raise InvalidMessage(
            f"the first message of a stream must be 'open' (StreamOpen), got {msg.WhichOneof('kind') or 'nothing'!r}"
        )
    o = msg.open
    device_id = o.device_id.strip()
    if not device_id:
        raise InvalidMessage("open.device_id is empty")
    if len(device_id) > MAX_DEVICE_ID or not device_id.isprintable():
        raise InvalidMessage(f"open.device_id must be at most {MAX_DEVICE_ID} printable characters")
    if o.codec not in _CODECS:
        allowed = [pb.Codec.Name(c) for c in _CODECS]
        raise InvalidMessage(f"open.codec {_codec_name(o.codec)} is not supported; allowed: {allowed}")
    if o.buffer_policy not in (pb.BUFFER_POLICY_UNSPECIFIED, pb.DROP_OLDEST, pb.WAIT):
        raise InvalidMessage(f"open.buffer_policy {o.buffer_policy} is not one of DROP_OLDEST, WAIT")
    if o.sampling != pb.SAMPLING_UNSPECIFIED and o.sampling not in _SAMPLING:
        allowed = [pb.SamplingPolicy.Name(v) for v in _SAMPLING]
        raise InvalidMessage(f"open.sampling {o.sampling} is not supported; allowed: {allowed}")
    recheck = o.still_recheck_s
    if math.isnan(recheck) or recheck < 0:
        raise InvalidMessage(f"open.still_recheck_s {recheck} must be >= 0 (0 = server default)")
    if o.orientation.rotate_degrees not in ROTATIONS:
        raise InvalidMessage(
            f"open.orientation.rotate_degrees {o.orientation.rotate_degrees} is not one of {list(ROTATIONS)} "
            "(degrees clockwise)"
        )
    fps = o.sample_fps
    if math.isnan(fps) or fps < 0 or fps > max_fps:
        raise InvalidMessage(f"open.sample_fps {fps} must be in [0, {max_fps}] (0 = server default)")
    return StreamSpec(
        device_id=device_id,
        codec=_CODECS[o.codec],
        questions=parse_questions(list(o.behaviors)),
        want_scores=o.want_scores,
        sample_fps=fps or default_fps,
        wait=o.buffer_policy == pb.WAIT,
        sampling=_SAMPLING.get(o.sampling, default_sampling),
        still_recheck_s=recheck or default_still_recheck_s,
        orientation=Orientation(o.orientation.rotate_degrees, o.orientation.flip_horizontal),
    )


def _codec_name(value: int) -> str:
    try:
        return pb.Codec.Name(value)
    except ValueError:
        return str(value)


def accepted(session_id: str, spec: StreamSpec, questions: tuple[Question, ...], model: str) -> pb.ServerMessage:
    return pb.ServerMessage(
        accepted=pb.StreamAccepted(
            session_id=session_id,
            behaviors=[pb.Behavior(name=q.name, question=q.text) for q in questions],
            sample_fps=spec.sample_fps,
            model=model,
            orientation=pb.Orientation(rotate_degrees=spec.orientation.rotate, flip_horizontal=spec.orientation.flip),
        )
    )


def behavior_event(e: Event) -> pb.BehaviorEvent:
    return pb.BehaviorEvent(
        device_id=e.device_id,
        behavior=e.behavior,
        state=_STATES[e.state],
        confidence=e.confidence,
        pts_us=e.pts_us,
        frame_seq=e.frame_seq,
        event_id=e.event_id,
        start_pts_us=e.start_pts_us,
        end_pts_us=e.end_pts_us,
    )


def event_message(e: Event) -> pb.ServerMessage:
    return pb.ServerMessage(event=behavior_event(e))


def event_record(r: StoredEvent) -> pb.EventRecord:
    return pb.EventRecord(
        cursor=r.cursor, event=behavior_event(r.event), time_unix_us=r.time_us, session_id=r.session_id
    )


def scores_message(s: FrameScore) -> pb.ServerMessage:
    t = s.timings
    timings = pb.StageTimings(
        decode_ms=t.decode_ms,
        batch_wait_ms=t.batch_wait_ms,
        vision_ms=t.vision_ms,
        text_ms=t.text_ms,
        total_ms=t.total_ms,
    )
    return pb.ServerMessage(
        scores=pb.FrameScores(frame_seq=s.frame_seq, pts_us=s.pts_us, p_yes=dict(s.p_yes), timings=timings, pool=s.pool)
    )


def warning_message(code: str, message: str) -> pb.ServerMessage:
    return pb.ServerMessage(warning=pb.StreamWarning(code=code, message=message))

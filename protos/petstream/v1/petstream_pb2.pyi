from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLING_UNSPECIFIED: _ClassVar[SamplingPolicy]
    SAMPLING_RATE: _ClassVar[SamplingPolicy]
    SAMPLING_KEYFRAMES: _ClassVar[SamplingPolicy]
    SAMPLING_MOTION: _ClassVar[SamplingPolicy]
    SAMPLING_COMPRESSED: _ClassVar[SamplingPolicy]

class BufferPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUFFER_POLICY_UNSPECIFIED: _ClassVar[BufferPolicy]
    DROP_OLDEST: _ClassVar[BufferPolicy]
    WAIT: _ClassVar[BufferPolicy]

class Codec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODEC_UNSPECIFIED: _ClassVar[Codec]
    CODEC_H264: _ClassVar[Codec]
    CODEC_HEVC: _ClassVar[Codec]
    CODEC_MJPEG: _ClassVar[Codec]

class EventState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_STATE_UNSPECIFIED: _ClassVar[EventState]
    STARTED: _ClassVar[EventState]
    ENDED: _ClassVar[EventState]
SAMPLING_UNSPECIFIED: SamplingPolicy
SAMPLING_RATE: SamplingPolicy
SAMPLING_KEYFRAMES: SamplingPolicy
SAMPLING_MOTION: SamplingPolicy
SAMPLING_COMPRESSED: SamplingPolicy
BUFFER_POLICY_UNSPECIFIED: BufferPolicy
DROP_OLDEST: BufferPolicy
WAIT: BufferPolicy
CODEC_UNSPECIFIED: Codec
CODEC_H264: Codec
CODEC_HEVC: Codec
CODEC_MJPEG: Codec
EVENT_STATE_UNSPECIFIED: EventState
STARTED: EventState
ENDED: EventState

class CameraMessage(_message.Message):
    __slots__ = ("open", "chunk", "update")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    open: StreamOpen
    chunk: VideoChunk
    update: BehaviorUpdate
    def __init__(self, open: _Optional[_Union[StreamOpen, _Mapping]] = ..., chunk: _Optional[_Union[VideoChunk, _Mapping]] = ..., update: _Optional[_Union[BehaviorUpdate, _Mapping]] = ...) -> None: ...

class StreamOpen(_message.Message):
    __slots__ = ("device_id", "codec", "behaviors", "want_scores", "sample_fps", "buffer_policy", "sampling", "still_recheck_s", "orientation")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    BEHAVIORS_FIELD_NUMBER: _ClassVar[int]
    WANT_SCORES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FPS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_POLICY_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    STILL_RECHECK_S_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    codec: Codec
    behaviors: _containers.RepeatedCompositeFieldContainer[Behavior]
    want_scores: bool
    sample_fps: float
    buffer_policy: BufferPolicy
    sampling: SamplingPolicy
    still_recheck_s: float
    orientation: Orientation
    def __init__(self, device_id: _Optional[str] = ..., codec: _Optional[_Union[Codec, str]] = ..., behaviors: _Optional[_Iterable[_Union[Behavior, _Mapping]]] = ..., want_scores: _Optional[bool] = ..., sample_fps: _Optional[float] = ..., buffer_policy: _Optional[_Union[BufferPolicy, str]] = ..., sampling: _Optional[_Union[SamplingPolicy, str]] = ..., still_recheck_s: _Optional[float] = ..., orientation: _Optional[_Union[Orientation, _Mapping]] = ...) -> None: ...

class Orientation(_message.Message):
    __slots__ = ("rotate_degrees", "flip_horizontal")
    ROTATE_DEGREES_FIELD_NUMBER: _ClassVar[int]
    FLIP_HORIZONTAL_FIELD_NUMBER: _ClassVar[int]
    rotate_degrees: int
    flip_horizontal: bool
    def __init__(self, rotate_degrees: _Optional[int] = ..., flip_horizontal: _Optional[bool] = ...) -> None: ...

class Behavior(_message.Message):
    __slots__ = ("name", "question")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    question: str
    def __init__(self, name: _Optional[str] = ..., question: _Optional[str] = ...) -> None: ...

class BehaviorUpdate(_message.Message):
    __slots__ = ("behaviors",)
    BEHAVIORS_FIELD_NUMBER: _ClassVar[int]
    behaviors: _containers.RepeatedCompositeFieldContainer[Behavior]
    def __init__(self, behaviors: _Optional[_Iterable[_Union[Behavior, _Mapping]]] = ...) -> None: ...

class VideoChunk(_message.Message):
    __slots__ = ("data", "seq", "pts_us")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PTS_US_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    seq: int
    pts_us: int
    def __init__(self, data: _Optional[bytes] = ..., seq: _Optional[int] = ..., pts_us: _Optional[int] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("accepted", "event", "scores", "warning")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    accepted: StreamAccepted
    event: BehaviorEvent
    scores: FrameScores
    warning: StreamWarning
    def __init__(self, accepted: _Optional[_Union[StreamAccepted, _Mapping]] = ..., event: _Optional[_Union[BehaviorEvent, _Mapping]] = ..., scores: _Optional[_Union[FrameScores, _Mapping]] = ..., warning: _Optional[_Union[StreamWarning, _Mapping]] = ...) -> None: ...

class StreamAccepted(_message.Message):
    __slots__ = ("session_id", "behaviors", "sample_fps", "model", "orientation")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    BEHAVIORS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    behaviors: _containers.RepeatedCompositeFieldContainer[Behavior]
    sample_fps: float
    model: str
    orientation: Orientation
    def __init__(self, session_id: _Optional[str] = ..., behaviors: _Optional[_Iterable[_Union[Behavior, _Mapping]]] = ..., sample_fps: _Optional[float] = ..., model: _Optional[str] = ..., orientation: _Optional[_Union[Orientation, _Mapping]] = ...) -> None: ...

class BehaviorEvent(_message.Message):
    __slots__ = ("device_id", "behavior", "state", "confidence", "pts_us", "frame_seq", "event_id", "start_pts_us", "end_pts_us")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PTS_US_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_PTS_US_FIELD_NUMBER: _ClassVar[int]
    END_PTS_US_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    behavior: str
    state: EventState
    confidence: float
    pts_us: int
    frame_seq: int
    event_id: str
    start_pts_us: int
    end_pts_us: int
    def __init__(self, device_id: _Optional[str] = ..., behavior: _Optional[str] = ..., state: _Optional[_Union[EventState, str]] = ..., confidence: _Optional[float] = ..., pts_us: _Optional[int] = ..., frame_seq: _Optional[int] = ..., event_id: _Optional[str] = ..., start_pts_us: _Optional[int] = ..., end_pts_us: _Optional[int] = ...) -> None: ...

class FrameScores(_message.Message):
    __slots__ = ("frame_seq", "pts_us", "p_yes", "timings", "pool")
    class PYesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    PTS_US_FIELD_NUMBER: _ClassVar[int]
    P_YES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    frame_seq: int
    pts_us: int
    p_yes: _containers.ScalarMap[str, float]
    timings: StageTimings
    pool: str
    def __init__(self, frame_seq: _Optional[int] = ..., pts_us: _Optional[int] = ..., p_yes: _Optional[_Mapping[str, float]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., pool: _Optional[str] = ...) -> None: ...

class SetRouteRequest(_message.Message):
    __slots__ = ("weights",)
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.ScalarMap[str, float]
    def __init__(self, weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetRouteRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RouteStatus(_message.Message):
    __slots__ = ("version", "weights", "pools", "workers", "worker")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    version: int
    weights: _containers.ScalarMap[str, float]
    pools: _containers.RepeatedCompositeFieldContainer[PoolStatus]
    workers: int
    worker: int
    def __init__(self, version: _Optional[int] = ..., weights: _Optional[_Mapping[str, float]] = ..., pools: _Optional[_Iterable[_Union[PoolStatus, _Mapping]]] = ..., workers: _Optional[int] = ..., worker: _Optional[int] = ...) -> None: ...

class PoolStatus(_message.Message):
    __slots__ = ("name", "kind", "backend", "up", "batches", "frames", "errors", "timeouts", "failovers_to", "replicas")
    class ReplicasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    FAILOVERS_TO_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    backend: str
    up: bool
    batches: int
    frames: int
    errors: int
    timeouts: int
    failovers_to: int
    replicas: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., backend: _Optional[str] = ..., up: _Optional[bool] = ..., batches: _Optional[int] = ..., frames: _Optional[int] = ..., errors: _Optional[int] = ..., timeouts: _Optional[int] = ..., failovers_to: _Optional[int] = ..., replicas: _Optional[_Mapping[str, int]] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("decode_ms", "batch_wait_ms", "vision_ms", "text_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    VISION_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    batch_wait_ms: float
    vision_ms: float
    text_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., batch_wait_ms: _Optional[float] = ..., vision_ms: _Optional[float] = ..., text_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class StreamWarning(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AskRequest(_message.Message):
    __slots__ = ("image", "behaviors")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BEHAVIORS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    behaviors: _containers.RepeatedCompositeFieldContainer[Behavior]
    def __init__(self, image: _Optional[bytes] = ..., behaviors: _Optional[_Iterable[_Union[Behavior, _Mapping]]] = ...) -> None: ...

class AskResponse(_message.Message):
    __slots__ = ("p_yes", "model")
    class PYesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    P_YES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    p_yes: _containers.ScalarMap[str, float]
    model: str
    def __init__(self, p_yes: _Optional[_Mapping[str, float]] = ..., model: _Optional[str] = ...) -> None: ...

class EventRecord(_message.Message):
    __slots__ = ("cursor", "event", "time_unix_us", "session_id")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    event: BehaviorEvent
    time_unix_us: int
    session_id: str
    def __init__(self, cursor: _Optional[int] = ..., event: _Optional[_Union[BehaviorEvent, _Mapping]] = ..., time_unix_us: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("device_ids", "after_cursor", "from_latest")
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    FROM_LATEST_FIELD_NUMBER: _ClassVar[int]
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    after_cursor: int
    from_latest: bool
    def __init__(self, device_ids: _Optional[_Iterable[str]] = ..., after_cursor: _Optional[int] = ..., from_latest: _Optional[bool] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("device_ids", "since_unix_us", "until_unix_us", "page_size", "after_cursor")
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    since_unix_us: int
    until_unix_us: int
    page_size: int
    after_cursor: int
    def __init__(self, device_ids: _Optional[_Iterable[str]] = ..., since_unix_us: _Optional[int] = ..., until_unix_us: _Optional[int] = ..., page_size: _Optional[int] = ..., after_cursor: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_cursor")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[EventRecord]
    next_cursor: int
    def __init__(self, events: _Optional[_Iterable[_Union[EventRecord, _Mapping]]] = ..., next_cursor: _Optional[int] = ...) -> None: ...

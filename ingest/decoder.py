"""Per-session PyAV decoder: Annex-B H.264/HEVC bytes split anywhere, or whole JPEGs, in; frames out."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal, cast

import av
import av.logging
import numpy as np
from av.video.codeccontext import VideoCodecContext

from ingest.limits import check_picture_size
from streaming.orientation import IDENTITY, Orientation
from streaming.orientation import of_frame as orientation_of_frame
from streaming.sampler import DecodeMode

CodecName = Literal["h264", "hevc", "mjpeg"]
CODECS: tuple[CodecName, ...] = ("h264", "hevc", "mjpeg")
_US = Fraction(1, 1_000_000)
_DEFAULT_INTERVAL_US = 66_667  # 15 fps, until the stream shows its own cadence
#: swscale threads per conversion. PyAV's default (0 = one per CPU) builds a fresh scaler with its own slice threads
#: for every picture: 2 thread starts per conversion here, and 1.6x slower than one thread for a camera's pictures.
#: Parallelism comes from many cameras, as for decoding.
SCALE_THREADS = 1
_FFMPEG_LOG_INTERVAL_NS = 5_000_000_000  # at most one FFmpeg log line per camera per interval (a summary)

log = logging.getLogger(__name__)
# FFmpeg's errors reach Python; each decoder captures those of its own calls (thread-local) and logs them with its
# camera's id. Only errors: FFmpeg takes the GIL for every message passed up, and errors already were.
av.logging.set_level(av.logging.ERROR)


@dataclass(frozen=True)
class DecodeWarning:
    """Something wrong with a camera's bytes: reported to that camera, never fatal."""

    code: str  # DECODE_ERROR, NOT_ANNEXB, NOT_JPEG, OVERSIZED_FRAME
    message: str


@dataclass(frozen=True, repr=False)
class RawFrame:
    """A decoded picture still in the decoder's pixel format, with its stream metadata."""

    frame: av.VideoFrame
    pts_us: int
    ingest_ns: int
    decoded_ns: int
    key_frame: bool
    candidate: bool = True  # False for frames decoded only to rebuild references (gated decoding)
    corrupt: bool = False  # FFmpeg concealed damage in this picture (AV_FRAME_FLAG_CORRUPT / decode error flags)
    orientation: Orientation = IDENTITY  # how to turn it upright: the stream's own orientation, then the mounting

    def __repr__(self) -> str:
        return f"RawFrame(pts_us={self.pts_us}, key_frame={self.key_frame}, {self.frame.width}x{self.frame.height})"

    def to_ndarray(self, *, format: str, width: int, height: int) -> np.ndarray:
        """The picture upright, `width` x `height`: scaled first, so turning it costs only the small copy."""
        orientation = self.orientation
        w, h = orientation.source_size(width, height)
        picture = self.frame.to_ndarray(format=format, width=w, height=h, interpolation="AREA", threads=SCALE_THREADS)
        return orientation.apply(picture)


@dataclass
class DecodeResult:
    frames: list[RawFrame] = field(default_factory=list)
    warnings: list[DecodeWarning] = field(default_factory=list)
    skipped_frames: int = 0  # packets dropped while resynchronising to a keyframe
    not_decoded: int = 0  # packets the sampling policy chose not to decode (keyframes-only, gating)

    def merge(self, other: DecodeResult) -> None:
        """Append `other` (a later feed of the same stream) to this result."""
        self.frames += other.frames
        self.warnings += other.warnings
        self.skipped_frames += other.skipped_frames
        self.not_decoded += other.not_decoded

    def take(self) -> DecodeResult:
        """Move everything counted so far into a new result and start again from zero (in place)."""
        taken = DecodeResult(self.frames, self.warnings, self.skipped_frames, self.not_decoded)
        self.frames, self.warnings, self.skipped_frames, self.not_decoded = [], [], 0, 0
        return taken


@dataclass
class _Chunk:
    start: int  # byte offset of the chunk in the stream
    end: int
    pts_us: int | None
    ingest_ns: int
    claimed: bool = False  # its pts was given to the first frame starting in it


class StreamDecoder:
    """Decodes one camera's stream. Not thread-safe: one call at a time (the session awaits each)."""

    def __init__(
        self,
        codec: CodecName,
        *,
        max_frame_bytes: int = 4 << 20,
        decode_mode: DecodeMode = "all",
        want_packet: Callable[[int, bool, int], bool] | None = None,
        max_pixels: int = 0,
        orientation: Orientation = IDENTITY,
        label: str = "",
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; allowed: {list(CODECS)}")
        if decode_mode not in ("all", "keyframes", "gated"):
            raise ValueError(f"unknown decode_mode {decode_mode!r}; allowed: ['all', 'keyframes', 'gated']")
        if decode_mode == "gated" and want_packet is None:
            raise ValueError("decode_mode 'gated' needs want_packet")
        self.codec = codec
        self.max_frame_bytes = max_frame_bytes
        self.max_pixels = max_pixels  # > 0: a declared picture over it raises limits.LimitExceeded before decoding
        self.orientation = orientation  # the camera's mounting
        self._stream_orientation = IDENTITY  # from the last display orientation SEI (FFmpeg: a display matrix)
        self.label = label  # the camera's id, for log lines
        self._ffmpeg_unlogged = 0  # FFmpeg messages since the last line logged
        self._ffmpeg_logged_ns = 0
        # MJPEG frames are all keyframes and independent: gating applies per frame, nothing to replay.
        self.decode_mode: DecodeMode = decode_mode
        self._want_packet = want_packet
        self._gop: list[av.Packet] = []  # gated: packets since the keyframe, not yet decoded
        self._gop_bytes = 0
        self._candidates: set[int] = set()  # gated: pts of frames wanted (others only rebuild references)
        self._ctx = self._new_context()
        self._chunks: deque[_Chunk] = deque()
        self._in_bytes = 0  # bytes fed to the parser
        self._out_bytes = 0  # bytes the parser has emitted as packets
        self._need_keyframe = False  # after an error: skip packets until the next keyframe
        self._started = False  # the first 4 bytes were checked for an Annex-B start code
        self._head = b""
        self._origin_ns: int | None = None
        self._last_pts: int | None = None
        self._interval_us = _DEFAULT_INTERVAL_US
        self._ingest_by_pts: dict[int, int] = {}

    def _new_context(self) -> VideoCodecContext:
        ctx = cast(VideoCodecContext, av.CodecContext.create(self.codec, "r"))
        ctx.thread_count = 1  # one decoder per camera; parallelism comes from many cameras
        if self.decode_mode == "keyframes":
            ctx.skip_frame = "NONKEY"  # non-key frames are parsed but never decoded
        if self.max_pixels > 0:  # FFmpeg's own check as a backstop (headroom: it counts aligned, uncropped sizes)
            ctx.options = {"max_pixels": str(self.max_pixels * 5 // 4)}
        return ctx

    def feed(self, data: bytes, pts_us: int | None = None, ingest_ns: int | None = None) -> DecodeResult:
        """Decode what `data` completes, all its pictures in one list (tools and tests; the server uses frames())."""
        result = DecodeResult()
        result.frames = list(self.frames(data, pts_us, ingest_ns, result))
        return result

    def flush(self) -> DecodeResult:
        """Decode everything still buffered (end of stream), in one list."""
        result = DecodeResult()
        result.frames = list(self.flush_frames(result))
        return result

    def frames(
        self, data: bytes, pts_us: int | None, ingest_ns: int | None, result: DecodeResult
    ) -> Iterator[RawFrame]:
        """Decode what `data` completes, yielding each picture as soon as it is decoded; counts and warnings go to
        `result`. `pts_us` applies to the first frame that starts in this chunk.

        A caller that samples and releases each picture before asking for the next keeps this stream's memory to
        the decoder's reference pictures, however much video one chunk holds. Exhaust it before the next call."""
        ingest_ns = time.monotonic_ns() if ingest_ns is None else ingest_ns
        if not data:
            return
        if self._origin_ns is None:
            self._origin_ns = ingest_ns  # times assigned from arrival count from the stream's first bytes
        if self.codec == "mjpeg":
            yield from self._feed_jpeg(data, pts_us, ingest_ns, result)
            return
        if not self._started:
            self._head += data[: 4 - len(self._head)]
            self._started = len(self._head) == 4
            if self._started and not (self._head.startswith(b"\x00\x00\x01") or self._head == b"\x00\x00\x00\x01"):
                result.warnings.append(
                    DecodeWarning("NOT_ANNEXB", "stream does not start with an Annex-B start code (00 00 01)")
                )
                self._need_keyframe = True
        self._chunks.append(_Chunk(self._in_bytes, self._in_bytes + len(data), pts_us, ingest_ns))
        self._in_bytes += len(data)
        try:
            with self._ffmpeg_logs():
                packets = self._ctx.parse(data)  # compressed packets only: bounded by the chunk's own size
        except av.FFmpegError as exc:
            self._reset(result, f"parser failed: {exc}")
            return
        for packet in packets:
            yield from self._decode_packet(packet, result)
        if self._in_bytes - self._out_bytes > self.max_frame_bytes:
            self._reset(
                result,
                f"{self._in_bytes - self._out_bytes} bytes without a frame boundary (limit {self.max_frame_bytes})",
                code="OVERSIZED_FRAME",
            )

    def flush_frames(self, result: DecodeResult) -> Iterator[RawFrame]:
        """Decode everything still buffered (end of stream), one picture at a time, like frames()."""
        if self.codec != "mjpeg":
            try:
                with self._ffmpeg_logs():
                    packets = self._ctx.parse(b"")
            except av.FFmpegError as exc:
                packets = []
                result.warnings.append(DecodeWarning("DECODE_ERROR", f"at end of stream: {exc}"))
            for packet in packets:
                yield from self._decode_packet(packet, result)
        result.not_decoded += len(self._gop)  # gated packets never wanted: counted, not decoded
        self._gop, self._gop_bytes = [], 0
        try:
            with self._ffmpeg_logs():
                remaining = self._ctx.decode(None)
        except av.FFmpegError as exc:
            remaining = []
            result.warnings.append(DecodeWarning("DECODE_ERROR", f"at end of stream: {exc}"))
        for frame in remaining:
            yield self._emit(frame)

    def _feed_jpeg(self, data: bytes, pts_us: int | None, ingest_ns: int, result: DecodeResult) -> Iterator[RawFrame]:
        if not data.startswith(b"\xff\xd8"):
            result.warnings.append(DecodeWarning("NOT_JPEG", "MJPEG chunk does not start with a JPEG SOI marker"))
            return
        if len(data) > self.max_frame_bytes:
            result.warnings.append(
                DecodeWarning("OVERSIZED_FRAME", f"JPEG of {len(data)} bytes (limit {self.max_frame_bytes})")
            )
            return
        packet = av.Packet(data)
        self._stamp(packet, self._assign_pts(pts_us, ingest_ns), ingest_ns)
        packet.is_keyframe = True
        yield from self._decode_packet(packet, result, parsed=False)

    def _decode_packet(self, packet: av.Packet, result: DecodeResult, parsed: bool = True) -> Iterator[RawFrame]:
        if self.max_pixels > 0:
            check_picture_size(self.codec, bytes(packet), self.max_pixels)
        if parsed:
            chunk_pts, ingest_ns = self._locate(packet.size)
            pts_us = self._assign_pts(chunk_pts, ingest_ns)
            if self.decode_mode == "keyframes" and not packet.is_keyframe:  # counted, never stamped or decoded
                if self._need_keyframe:
                    result.skipped_frames += 1
                else:
                    result.not_decoded += 1
                return
            self._stamp(packet, pts_us, ingest_ns)
        if self._need_keyframe:
            if not packet.is_keyframe:
                result.skipped_frames += 1
                return
            self._need_keyframe = False
        if self.decode_mode == "keyframes" and not packet.is_keyframe:  # unparsed input (MJPEG is all keyframes)
            result.not_decoded += 1
            self._ingest_by_pts.pop(_pts(packet), None)
            return
        if self.decode_mode == "gated":
            yield from self._gated(packet, result)
            return
        yield from self._decode_one(packet, result)

    def _gated(self, packet: av.Packet, result: DecodeResult) -> Iterator[RawFrame]:
        """Decode only wanted packets, first replaying the GOP's skipped packets so references are right."""
        assert self._want_packet is not None
        key = bool(packet.is_keyframe)
        if key:
            result.not_decoded += len(self._gop)
            self._gop, self._gop_bytes = [], 0
        if not self._want_packet(packet.size, key, _pts(packet)):
            self._gop.append(packet)
            self._gop_bytes += packet.size
            if self._gop_bytes > 4 * self.max_frame_bytes:  # a huge GOP: give up replaying, wait for a keyframe
                result.not_decoded += len(self._gop)
                self._gop, self._gop_bytes = [], 0
                self._need_keyframe = True
            return
        replay, self._gop, self._gop_bytes = self._gop, [], 0
        for old in replay:
            yield from self._decode_one(old, result)
        if len(self._candidates) > 1024:  # frames that never came out (errors): forget them
            self._candidates.clear()
        self._candidates.add(_pts(packet))
        yield from self._decode_one(packet, result)

    def _decode_one(self, packet: av.Packet, result: DecodeResult) -> Iterator[RawFrame]:
        try:
            with self._ffmpeg_logs():
                frames = self._ctx.decode(packet)
        except av.FFmpegError as exc:
            result.warnings.append(
                DecodeWarning("DECODE_ERROR", f"undecodable data ({exc}); resynchronising at the next keyframe")
            )
            self._need_keyframe = True
            return
        for frame in frames:
            yield self._emit(frame)

    def _emit(self, frame: av.VideoFrame) -> RawFrame:
        pts = frame.pts if frame.pts is not None else (self._last_pts or 0)
        ingest_ns = self._ingest_by_pts.pop(pts, time.monotonic_ns())
        candidate = True
        if self.decode_mode == "gated":
            candidate = pts in self._candidates
            self._candidates.discard(pts)
        return RawFrame(
            frame,
            pts,
            ingest_ns,
            time.monotonic_ns(),
            bool(frame.key_frame),
            candidate,
            corrupt=frame.is_corrupt,
            orientation=self._orient(frame),
        )

    def _orient(self, frame: av.VideoFrame) -> Orientation:
        """A display orientation SEI holds until the next one or the next keyframe (a new coded video sequence);
        FFmpeg attaches it (as a display matrix) only to the picture it came with."""
        found = orientation_of_frame(frame)  # cheap: side data is read only where there is a turn
        if found is not None:
            self._stream_orientation = found
        elif frame.key_frame:
            self._stream_orientation = IDENTITY
        if self._stream_orientation.is_identity:  # nearly always: no new value per frame
            return self.orientation
        return self._stream_orientation.then(self.orientation)

    @contextlib.contextmanager
    def _ffmpeg_logs(self) -> Iterator[None]:
        """Around one FFmpeg call (never across a yield: the capture is per thread): its messages are logged with
        this camera's id, at most one line per interval, the rest counted in it."""
        with av.logging.Capture() as messages:
            yield
        if not messages:
            return
        self._ffmpeg_unlogged += len(messages)
        now = time.monotonic_ns()
        if now - self._ffmpeg_logged_ns < _FFMPEG_LOG_INTERVAL_NS:
            return
        _, name, text = messages[0]
        more = self._ffmpeg_unlogged - 1
        log.warning(
            "camera %s: FFmpeg %s decoder: %s%s",
            self.label or "?",
            name or self.codec,
            text.strip(),
            f" (and {more} more FFmpeg messages since the last line)" if more else "",
        )
        self._ffmpeg_unlogged = 0
        self._ffmpeg_logged_ns = now

    def _stamp(self, packet: av.Packet, pts_us: int, ingest_ns: int) -> None:
        packet.pts = pts_us
        packet.dts = None
        packet.time_base = _US
        self._ingest_by_pts[pts_us] = ingest_ns
        if len(self._ingest_by_pts) > 256:  # frames that never came out (errors): forget the oldest
            self._ingest_by_pts.pop(next(iter(self._ingest_by_pts)))

    def _locate(self, size: int) -> tuple[int | None, int]:
        """The chunk in which a parsed packet starts: its pts if this is the first frame there, and its arrival."""
        start = self._out_bytes
        self._out_bytes += size
        while len(self._chunks) > 1 and self._chunks[0].end <= start:
            self._chunks.popleft()
        chunk = self._chunks[0]
        if chunk.claimed or chunk.pts_us is None:
            return None, chunk.ingest_ns
        chunk.claimed = True
        return chunk.pts_us, chunk.ingest_ns

    def _assign_pts(self, pts_us: int | None, ingest_ns: int) -> int:
        if pts_us is None:
            # No camera time: extrapolate the cadence, never earlier than arrival says.
            arrival = (ingest_ns - (self._origin_ns or ingest_ns)) // 1000
            pts_us = arrival if self._last_pts is None else max(arrival, self._last_pts + self._interval_us)
        elif self._last_pts is not None and 0 < pts_us - self._last_pts < 10_000_000:
            self._interval_us = (3 * self._interval_us + (pts_us - self._last_pts)) // 4
        while pts_us in self._ingest_by_pts:
            pts_us += 1  # two frames claiming one time (a confused camera clock): keep them apart
        self._last_pts = pts_us
        return pts_us

    def _reset(self, result: DecodeResult, why: str, code: str = "DECODE_ERROR") -> None:
        result.warnings.append(DecodeWarning(code, f"{why}; resynchronising at the next keyframe"))
        self._ctx = self._new_context()
        self._chunks.clear()
        self._in_bytes = self._out_bytes = 0
        self._gop, self._gop_bytes = [], 0
        self._need_keyframe = True


def _pts(packet: av.Packet) -> int:
    """Every packet is stamped before decoding (_stamp), so its pts is set."""
    return packet.pts if packet.pts is not None else 0

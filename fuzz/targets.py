"""The fuzz targets: each takes arbitrary bytes and may only fail in the ways the server answers cleanly."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import DecodeError

from ingest import bitstream, wire
from ingest.decoder import StreamDecoder
from ingest.images import decode_image
from ingest.limits import LimitExceeded
from protos.petstream.v1 import petstream_pb2 as pb

MAX_PIXELS = 3840 * 2160  # the server's default max_decoded_pixels


def _decode(codec: str, data: bytes) -> None:
    """Feed `data` split into chunks (the first byte picks the size and decode mode); only limit hits may raise."""
    if not data:
        return
    head, body = data[0], data[1:]
    size = (head % 32 + 1) * 61
    mode = "keyframes" if head & 0x80 else "all"
    decoder = StreamDecoder(codec, max_frame_bytes=1 << 20, decode_mode=mode, max_pixels=MAX_PIXELS)  # type: ignore[arg-type]
    try:
        if codec == "mjpeg":  # one JPEG per chunk: split at every SOI marker
            pieces = [b"\xff\xd8" + p for p in body.split(b"\xff\xd8") if p] or [body]
        else:
            pieces = [body[i : i + size] for i in range(0, len(body), size)]
        for i, piece in enumerate(pieces):
            result = decoder.feed(piece, pts_us=i * 66_667 if head & 0x40 else None)
            for frame in result.frames:
                assert frame.frame.width * frame.frame.height <= MAX_PIXELS * 5 // 4, "picture over the limit decoded"
        decoder.flush()
    except LimitExceeded:
        pass  # the server ends the stream with INVALID_ARGUMENT naming max_decoded_pixels


def decode_h264(data: bytes) -> None:
    _decode("h264", data)


def decode_hevc(data: bytes) -> None:
    _decode("hevc", data)


def decode_mjpeg(data: bytes) -> None:
    _decode("mjpeg", data)


def picture_size(data: bytes) -> None:
    """The SPS/JPEG size reader never raises and never reports a negative size."""
    for codec in ("h264", "hevc", "mjpeg"):
        for w, h in bitstream.declared_sizes(codec, data):
            assert w >= 0 and h >= 0


def camera_message(data: bytes) -> None:
    """StreamOpen / BehaviorUpdate validation: a clear InvalidMessage or a spec that keeps the documented bounds."""
    try:
        msg = pb.CameraMessage.FromString(data)
    except DecodeError:
        return
    try:
        if msg.WhichOneof("kind") == "update":
            questions = wire.parse_questions(list(msg.update.behaviors))
        else:
            spec = wire.parse_open(msg, default_fps=1.0, max_fps=30.0)
            assert 0 < len(spec.device_id) <= wire.MAX_DEVICE_ID and spec.device_id.isprintable()
            assert 0 < spec.sample_fps <= 30.0 and spec.still_recheck_s > 0
            questions = spec.questions
    except wire.InvalidMessage as exc:
        assert str(exc), "an InvalidMessage must say what is wrong"
        return
    assert 0 < len(questions) <= wire.MAX_BEHAVIORS
    assert all(len(q.text) <= wire.MAX_QUESTION_CHARS for q in questions)


def ask_image(data: bytes) -> None:
    """Ask's image decoding: pixels, or ValueError / LimitExceeded; never more pixels than the limit."""
    try:
        image = decode_image(data, max_pixels=1 << 20)
    except (ValueError, LimitExceeded):
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] * image.shape[1] <= 1 << 20


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decode_h264": decode_h264,
    "decode_hevc": decode_hevc,
    "decode_mjpeg": decode_mjpeg,
    "picture_size": picture_size,
    "camera_message": camera_message,
    "ask_image": ask_image,
}

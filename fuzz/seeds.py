"""Seed inputs for the fuzz targets: valid streams made with PyAV, truncated and bit-flipped copies, hostile sizes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from protos.petstream.v1 import petstream_pb2 as pb


class BitWriter:
    """MSB-first bits with Exp-Golomb codes: enough to write a parameter set by hand."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def rbsp(self) -> bytes:
        bits = self.bits + [1] + [0] * ((8 - (len(self.bits) + 1) % 8) % 8)  # rbsp_trailing_bits
        raw = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
        out = bytearray()
        zeros = 0
        for b in raw:  # emulation prevention
            if zeros >= 2 and b <= 3:
                out.append(3)
                zeros = 0
            out.append(b)
            zeros = zeros + 1 if b == 0 else 0
        return bytes(out)


def h264_sps(width: int, height: int) -> bytes:
    """An Annex-B baseline-profile H.264 SPS NAL declaring width x height (multiples of 16)."""
    w = BitWriter().u(8, 66).u(8, 0).u(8, 40).ue(0)  # profile, constraints, level, sps id
    w.ue(0).ue(2).ue(1).u(1, 0)  # log2_max_frame_num-4, poc type 2, one reference frame, no gaps
    w.ue(width // 16 - 1).ue(height // 16 - 1).u(1, 1).u(1, 1).u(1, 0).u(1, 0)  # size, frame_mbs_only, ...
    return b"\x00\x00\x00\x01\x67" + w.rbsp()


def frames(n: int, width: int = 96, height: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = base.copy()
        img[10:30, (i * 4) % (width - 20) : (i * 4) % (width - 20) + 20] = (255, 40, 40)
        out.append(img)
    return out


def annexb(codec: str, n: int = 8, width: int = 96, height: int = 64, gop: int = 4) -> list[bytes]:
    """One access unit per entry, Annex-B (libx264/libx265), or one JPEG per entry (mjpeg)."""
    images = frames(n, width, height)
    if codec == "mjpeg":
        from PIL import Image

        out = []
        for img in images:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=70)
            out.append(buf.getvalue())
        return out
    ctx = cast(VideoCodecContext, av.CodecContext.create({"h264": "libx264", "hevc": "libx265"}[codec], "w"))
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 15)
    ctx.framerate = Fraction(15)
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency"} | (
        {"x264-params": params} if codec == "h264" else {"x265-params": params + ":log-level=none"}
    )
    units = []
    for i, img in enumerate(images):
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts = i
        units += [bytes(p) for p in ctx.encode(f)]
    units += [bytes(p) for p in ctx.encode(None)]
    return units


def variants(data: bytes, seed: int = 0) -> Iterator[bytes]:
    """The valid input, then truncated and bit-flipped copies of it."""
    rng = np.random.default_rng(seed)
    yield data
    for frac in (0.25, 0.5, 0.9):
        yield data[: int(len(data) * frac)]
    for _ in range(3):
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), max(1, len(data) // 200)):
            flipped[pos] ^= 1 << int(rng.integers(0, 8))
        yield bytes(flipped)


def image_seeds() -> list[bytes]:
    from PIL import Image

    out = []
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(frames(1, 48, 32)[0]).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def message_seeds() -> list[bytes]:
    opens = [
        pb.StreamOpen(device_id="cam-1", codec=pb.CODEC_H264),
        pb.StreamOpen(
            device_id="furbo-42",
            codec=pb.CODEC_MJPEG,
            behaviors=[pb.Behavior(name="barking"), pb.Behavior(name="sofa", question="is there a sofa?")],
            want_scores=True,
            sample_fps=2.5,
            buffer_policy=pb.WAIT,
            sampling=pb.SAMPLING_MOTION,
            still_recheck_s=5,
        ),
    ]
    msgs = [pb.CameraMessage(open=o).SerializeToString() for o in opens]
    update = pb.BehaviorUpdate(behaviors=[pb.Behavior(name="sleeping", question="is the dog sleeping?")])
    return msgs + [pb.CameraMessage(update=update).SerializeToString()]


def chunked(units: list[bytes]) -> bytes:
    """Several access units in one fuzz input: the first byte of a decode input picks where chunks split."""
    return b"\x07" + b"".join(units)


def write_corpus(folder: str, target: str) -> int:
    """Write the seed corpus of one target into `folder`; returns how many seeds."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if target in ("decode_h264", "decode_hevc", "decode_mjpeg"):
        codec = target.removeprefix("decode_")
        units = annexb(codec)
        if codec == "mjpeg":
            seeds = [b"\x00" + v for u in units[:2] for v in variants(u)]
        else:
            seeds = list(variants(chunked(units)))
        if codec == "h264":
            seeds.append(chunked([h264_sps(16384, 16384), *units[1:3]]))
    elif target == "picture_size":
        seeds = [h264_sps(640, 368), h264_sps(16384, 16384), *annexb("hevc", 1), *annexb("mjpeg", 1)]
    elif target == "camera_message":
        seeds = [v for m in message_seeds() for v in variants(m)]
    elif target == "ask_image":
        seeds = [v for img in image_seeds() for v in variants(img)]
    else:
        raise ValueError(f"unknown fuzz target {target!r}")
    for i, seed in enumerate(seeds):
        (out / f"seed-{i:03d}").write_bytes(seed)
    return len(seeds)


def bomb_png(width: int = 10_000, height: int = 10_000) -> bytes:
    """A valid grayscale PNG of width x height zeros: a few hundred KB that inflate to width*height bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    rows_per_block = max(1, (1 << 20) // len(row))
    parts = []
    for start in range(0, height, rows_per_block):
        parts.append(z.compress(row * min(rows_per_block, height - start)))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")

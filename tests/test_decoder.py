"""The per-session decoder on real encoded video: arbitrary splits, timestamps, bad bytes and resync."""

from __future__ import annotations

import io

import numpy as np
import pytest
from factories import encode_annexb, moving_square_frames
from PIL import Image

from ingest.decoder import StreamDecoder


def _feed_all(dec: StreamDecoder, chunks):
    frames, warnings, skipped = [], [], 0
    for data, pts in chunks:
        r = dec.feed(data, pts)
        frames += r.frames
        warnings += r.warnings
        skipped += r.skipped_frames
    r = dec.flush()
    return frames + r.frames, warnings + r.warnings, skipped + r.skipped_frames


@pytest.mark.parametrize("codec,name", [("libx264", "h264"), ("libx265", "hevc")])
def test_one_unit_per_chunk_keeps_camera_timestamps(codec, name):
    units = encode_annexb(moving_square_frames(20), codec=codec)
    frames, warnings, _ = _feed_all(StreamDecoder(name), [(d, p) for d, p, _ in units])
    assert not warnings
    assert [f.pts_us for f in frames] == [p for _, p, _ in units]
    assert frames[0].key_frame and frames[0].frame.width == 160


@pytest.mark.parametrize("split", [1, 7, 333, 5000])
def test_stream_split_at_arbitrary_byte_boundaries_decodes_every_frame(split):
    units = encode_annexb(moving_square_frames(20))
    stream = b"".join(d for d, _, _ in units)
    chunks = [(stream[i : i + split], None) for i in range(0, len(stream), split)]
    frames, warnings, _ = _feed_all(StreamDecoder("h264"), chunks)
    assert not warnings and len(frames) == 20
    pts = [f.pts_us for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == 20


def test_pts_applies_to_first_frame_starting_in_chunk():
    units = encode_annexb(moving_square_frames(6))
    # two access units per chunk: the chunk's pts is the first one's; the second is extrapolated
    chunks = [(units[i][0] + units[i + 1][0], 1_000_000 * (i + 1)) for i in range(0, 6, 2)]
    frames, warnings, _ = _feed_all(StreamDecoder("h264"), chunks)
    assert [f.pts_us for f in frames][::2] == [1_000_000, 3_000_000, 5_000_000]


def test_random_bytes_warn_and_decoder_resyncs_at_next_keyframe():
    units = encode_annexb(moving_square_frames(30), gop=10)
    dec = StreamDecoder("h264")
    good_first = [(d, p) for d, p, _ in units[:5]]
    junk = bytearray(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    for pos in (0, 1000, 2000, 3000):  # mis-spliced data: start codes followed by junk slices
        junk[pos : pos + 5] = b"\x00\x00\x00\x01\x65"
    garbage = [(bytes(junk), None)]
    rest = [(d, p) for d, p, _ in units[5:]]
    frames, warnings, skipped = _feed_all(dec, good_first + garbage + rest)
    assert warnings, "corrupt data must produce a warning"
    assert all(w.code == "DECODE_ERROR" for w in warnings) and skipped > 0
    pts = [f.pts_us for f in frames]
    assert pts[:5] == [p for _, p in good_first]
    assert units[10][1] in pts and units[29][1] in pts  # keyframes 10 and 20 and everything after decode


def test_stream_of_garbage_warns_not_annexb_and_bounds_its_buffer():
    dec = StreamDecoder("h264", max_frame_bytes=10_000)
    rng = np.random.default_rng(0)
    codes = set()
    for _ in range(10):
        r = dec.feed(rng.integers(1, 256, 3000, dtype=np.uint8).tobytes())
        codes |= {w.code for w in r.warnings}
        assert not r.frames
    assert "NOT_ANNEXB" in codes and "OVERSIZED_FRAME" in codes


def test_mjpeg_chunks_decode_and_non_jpeg_is_refused():
    buf = io.BytesIO()
    Image.fromarray(moving_square_frames(1)[0]).save(buf, format="JPEG")
    dec = StreamDecoder("mjpeg")
    r = dec.feed(buf.getvalue(), 5_000)
    assert len(r.frames) == 1 and r.frames[0].pts_us == 5_000 and not r.warnings
    r = dec.feed(b"not a jpeg", 6_000)
    assert not r.frames and r.warnings[0].code == "NOT_JPEG"


def test_unknown_codec_lists_allowed():
    with pytest.raises(ValueError, match="allowed"):
        StreamDecoder("vp9")  # type: ignore[arg-type]

"""Orientation: a camera's mounting (StreamOpen), an orientation in the stream (SEI) and a clip's display matrix
all turn the picture upright before the model sees it; checked on what the real tiny BLIP is really given."""

from __future__ import annotations

import asyncio
import io
import itertools
import subprocess
import sys

import av
import numpy as np
import pytest
from factories import RecordingEngine, encode_annexb, lopsided_frames, serving, write_clip
from test_server import _raw_stream

from ingest.config import ServerConfig
from protos.petstream.v1 import petstream_pb2 as pb
from simulators.camera import run_camera
from simulators.video import EncodedUnit
from streaming.orientation import ROTATIONS, Orientation, from_display_matrix

PETSTREAM = [sys.executable, "-m", "petstream.cli"]
ALL = [Orientation(r, f) for r in ROTATIONS for f in (False, True)]


def test_composition_is_applying_one_after_the_other():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    for a, b in itertools.product(ALL, ALL):
        assert np.array_equal(a.then(b).apply(img), b.apply(a.apply(img))), (a, b)
    assert len({o.apply(img).tobytes() + bytes(o.apply(img).shape) for o in ALL}) == 8
    with pytest.raises(ValueError, match=r"rotate: 45 is not one of \[0, 90, 180, 270\]"):
        Orientation(45)


@pytest.mark.parametrize("degrees,hflip", [(d, f) for d in (0, 90, 180, 270) for f in (False, True)])
def test_display_matrix_written_by_ffmpeg_is_read_as_players_show_it(tmp_path, degrees, hflip):
    """FFmpeg's display rotation means: turn counterclockwise by `degrees`, then mirror if `hflip`."""
    path = str(tmp_path / "one.mp4")
    write_clip(path, lopsided_frames(1, 32, 16), "libx264", display_rotation=(degrees, hflip))
    with av.open(path) as container:
        frame = next(container.decode(video=0))
    side_data = frame.side_data.get("DISPLAYMATRIX")
    picture = frame.to_ndarray(format="rgb24")
    if side_data is None:  # MP4 leaves an identity matrix out
        assert (degrees, hflip) == (0, False)
        return
    matrix = np.frombuffer(bytes(side_data), np.int32)
    expected = np.rot90(picture, k=degrees // 90)
    if hflip:
        expected = expected[:, ::-1]
    assert np.array_equal(from_display_matrix(matrix).apply(picture), expected)


def _pictures(engine: RecordingEngine, address: str, units: list[EncodedUnit], **kwargs: object) -> list[np.ndarray]:
    engine.pictures.clear()
    report = asyncio.run(run_camera(address, "cam", units, speed=0, sample_fps=5, want_scores=True, **kwargs))
    assert report.error is None and len(engine.pictures) == len(report.scores) > 0
    return list(engine.pictures)


def test_mounting_in_stream_open_and_orientation_sei_in_the_stream(tiny_engine):
    engine = RecordingEngine(tiny_engine)
    plain = [EncodedUnit(d, p, k) for d, p, k in encode_annexb(lopsided_frames(30), gop=10)]
    # the same stream with an H.264 display orientation SEI ("turn 90 degrees anticlockwise to display") in band
    with av.open(io.BytesIO(b"".join(u.data for u in plain)), format="h264") as raw:
        stream = raw.streams.video[0]
        bsf = av.bitstream.BitStreamFilterContext("h264_metadata=display_orientation=insert:rotate=90", stream)
        data = [bytes(out) for packet in raw.demux(stream) for out in bsf.filter(packet if packet.size else None)]
    tagged = [EncodedUnit(d, u.pts_us, u.key) for d, u in zip(data, plain, strict=True)]
    with serving(engine, ServerConfig(port=0)) as (address, _):
        upright = _pictures(engine, address, plain)
        mounted = _pictures(engine, address, plain, orientation=Orientation(90, True))
        from_sei = _pictures(engine, address, tagged)
        sei_then_mount = _pictures(engine, address, tagged, orientation=Orientation(90))
    # the server scales first and turns the small picture: the same pixels, turned, and nothing else
    assert all(np.array_equal(m, np.rot90(u, k=-1)[:, ::-1]) for m, u in zip(mounted, upright, strict=True))
    assert all(np.array_equal(s, np.rot90(u, k=1)) for s, u in zip(from_sei, upright, strict=True))
    assert all(np.array_equal(s, u) for s, u in zip(sei_then_mount, upright, strict=True))  # 90 ccw, then 90 cw


def test_open_with_a_bad_rotation_is_refused_and_a_good_one_is_echoed(tiny_engine):
    with serving(tiny_engine, ServerConfig(port=0)) as (address, _):
        bad = pb.StreamOpen(device_id="cam", codec=pb.CODEC_H264, orientation=pb.Orientation(rotate_degrees=45))
        got, err = asyncio.run(_raw_stream(address, [pb.CameraMessage(open=bad)]))
        assert err is not None and "open.orientation.rotate_degrees 45 is not one of [0, 90, 180, 270]" in err.details()
        good = pb.StreamOpen(
            device_id="cam", codec=pb.CODEC_H264, orientation=pb.Orientation(rotate_degrees=270, flip_horizontal=True)
        )
        got, err = asyncio.run(_raw_stream(address, [pb.CameraMessage(open=good)]))
        assert err is None and got[0].accepted.orientation == good.orientation


def test_synthetic_camera_rotate_and_flip_flags(tiny_engine):
    engine = RecordingEngine(tiny_engine)
    argv = ["camera", "--seconds", "2", "--speed", "0", "--width", "96", "--height", "64", "--sample-fps", "2"]
    with serving(engine, ServerConfig(port=0)) as (address, _):
        runs = []
        for extra in ([], ["--rotate", "270", "--flip"]):
            engine.pictures.clear()
            out = subprocess.run(
                [*PETSTREAM, *argv, "--target", address, *extra], capture_output=True, text=True, timeout=120
            )
            assert out.returncode == 0, out.stdout + out.stderr
            runs.append(list(engine.pictures))
    upright, mounted = runs
    assert len(upright) == len(mounted) == 4
    assert all(np.array_equal(m, np.rot90(u, k=1)[:, ::-1]) for m, u in zip(mounted, upright, strict=True))


def test_phone_clip_with_display_rotation_reaches_the_model_upright(tiny_engine, tmp_path):
    """A phone held sideways records the scene turned; the file's display matrix says how to turn it back."""
    scene = lopsided_frames(30)
    upright_clip = write_clip(str(tmp_path / "upright.mp4"), scene, "libx264")
    sideways = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in scene]  # what the sensor saw: turned clockwise
    phone_clip = write_clip(str(tmp_path / "phone.mp4"), sideways, "libx264", display_rotation=(90, False))
    engine = RecordingEngine(tiny_engine)
    with serving(engine, ServerConfig(port=0)) as (address, _):
        runs = []
        for clip in (upright_clip, phone_clip):
            engine.pictures.clear()
            out = subprocess.run(
                [*PETSTREAM, "camera", "--target", address, "--clip", clip, "--speed", "0", "--sample-fps", "5"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            runs.append([p.astype(np.float32) for p in engine.pictures])
    assert "display orientation rotate 270" in out.stdout  # 90 counterclockwise = 270 clockwise
    reference, seen = runs
    assert len(seen) == len(reference) == 10
    to_upright = np.mean([np.abs(s - r).mean() for s, r in zip(seen, reference, strict=True)])
    to_sideways = np.mean([np.abs(s - np.rot90(r, k=-1)).mean() for s, r in zip(seen, reference, strict=True)])
    assert to_upright < 4.0 and to_sideways > 5 * to_upright, (to_upright, to_sideways)


def _jpegs(frames: list[np.ndarray], exif_orientation: int | None) -> list[EncodedUnit]:
    from PIL import Image

    units = []
    for i, rgb in enumerate(frames):
        out = io.BytesIO()
        exif = Image.Exif()
        if exif_orientation is not None:
            exif[0x0112] = exif_orientation
        Image.fromarray(rgb).save(out, format="JPEG", quality=90, exif=exif.tobytes())
        units.append(EncodedUnit(out.getvalue(), round(i * 1e6 / 15), True))
    return units


@pytest.mark.parametrize("exif,turn", [(6, -1), (8, 1), (3, 2)])  # EXIF "rotate 90 CW / 90 CCW / 180 to display"
def test_mjpeg_camera_with_exif_orientation(tiny_engine, exif, turn):
    engine = RecordingEngine(tiny_engine)
    frames = lopsided_frames(10)
    with serving(engine, ServerConfig(port=0)) as (address, _):
        upright = _pictures(engine, address, _jpegs(frames, None), codec="mjpeg")
        tagged = _pictures(engine, address, _jpegs(frames, exif), codec="mjpeg")
    assert all(np.array_equal(t, np.rot90(u, k=turn)) for t, u in zip(tagged, upright, strict=True))

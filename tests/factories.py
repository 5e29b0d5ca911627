"""Factory helpers for tests: real encoded video, a real server on a free port, fake engines for layers above."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from fractions import Fraction

import av
import numpy as np

from inference.types import Engine, StageTimings, VQARequest, VQAResult


def moving_square_frames(n: int, width: int = 160, height: int = 120, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        img = base.copy()
        x = (i * 5) % (width - 20)
        img[height // 3 : height // 3 + 20, x : x + 20] = (255, 40, 40)
        frames.append(img)
    return frames


def lopsided_frames(n: int, width: int = 96, height: int = 64) -> list[np.ndarray]:
    """Smooth and lopsided (bright left, a bar along the top, a square moving right): every turn of it looks
    different, and it compresses well (small keyframes, so a cut file still holds several frames)."""
    x = np.linspace(255, 30, width, dtype=np.float32)
    base = np.repeat(np.repeat(x[None, :, None], height, 0), 3, 2).astype(np.uint8)
    base[: height // 6, :, :] = (20, 200, 20)
    frames = []
    for i in range(n):
        img = base.copy()
        s = height // 4
        x0 = (i * 3) % (width - s)
        img[height // 2 : height // 2 + s, x0 : x0 + s] = (230, 30, 30)
        frames.append(img)
    return frames


def encode_annexb(
    frames: Sequence[np.ndarray], *, codec: str = "libx264", fps: int = 15, gop: int = 10
) -> list[tuple[bytes, int, bool]]:
    """Encode RGB frames to an Annex-B elementary stream: one (bytes, pts_us, keyframe) per access unit."""
    h, w = frames[0].shape[:2]
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    ctx.time_base = Fraction(1, 1_000_000)
    ctx.framerate = Fraction(fps)
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency"} | (
        {"x264-params": params} if codec == "libx264" else {"x265-params": params + ":log-level=none"}
    )
    out = []
    for i, img in enumerate(frames):
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts = round(i * 1e6 / fps)
        f.time_base = ctx.time_base
        out += [(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in ctx.encode(f)]
    out += [(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in ctx.encode(None)]
    return out


def write_clip(
    path: str,
    frames: Sequence[np.ndarray],
    codec: str,
    fps: int = 15,
    *,
    display_rotation: tuple[float, bool] | None = None,
    options: dict[str, str] | None = None,
) -> str:
    """Write a recorded clip in a real container (mp4, webm, mkv...) with PyAV. libx264 uses its defaults, so
    B-frames are in. `display_rotation` (degrees counterclockwise, hflip) writes a display matrix as phones do;
    `options` go to the muxer (e.g. movflags)."""
    h, w = frames[0].shape[:2]
    with av.open(path, "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if display_rotation is not None:
            stream.set_display_rotation(display_rotation[0], hflip=display_rotation[1])
        for img in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(p)
        for p in stream.encode(None):
            container.mux(p)
    return path


class RecordingEngine(Engine):
    """The real engine, keeping a copy of every picture it is asked about: what the model really saw."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.model_name = engine.model_name
        self.image_size = engine.image_size
        self.batch_sizes = engine.batch_sizes
        self.pictures: list[np.ndarray] = []

    def run(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        self.pictures += [r.image.copy() for r in requests]
        return self.engine.run(requests)


class FakeEngine(Engine):
    """For tests of the layers above inference only: p_yes from the mean red level, optional delay."""

    model_name = "fake"
    image_size = 32

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.batches: list[list[object]] = []

    def run(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        if self.fail:
            raise RuntimeError("fake engine failure")
        time.sleep(self.delay_s)
        self.batches.append([r.key for r in requests])
        return [
            VQAResult(
                r.key,
                {q.name: float(r.image[..., 0].mean() / 255) for q in r.questions},
                StageTimings(batch_size=len(requests)),
            )
            for r in requests
        ]


@contextlib.contextmanager
def serving(engine: Engine, config: object, **options: object) -> Iterator[tuple[str, object]]:
    """A real grpc.aio server on a free port, in its own thread and event loop; yields ('host:port', server).
    `options` go to PetstreamServer (e.g. access=...)."""
    import dataclasses
    import shutil
    import tempfile

    from ingest.config import default_data_dir
    from ingest.server import PetstreamServer

    scratch = None
    if config.data_dir == default_data_dir():  # type: ignore[attr-defined]
        scratch = tempfile.mkdtemp(prefix="petstream-test-")  # tests never share (or leave) an event store
        config = dataclasses.replace(config, data_dir=scratch)  # type: ignore[type-var]
    loop = asyncio.new_event_loop()
    server = PetstreamServer(engine, config, **options)  # type: ignore[arg-type]
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "server did not start"
    try:
        yield f"127.0.0.1:{server.port}", server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0.5), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def running_server(engine: Engine, **config: object) -> Iterator[str]:
    """serving() with a ServerConfig built from keyword fields (port 0); yields 'host:port'."""
    from ingest.config import ServerConfig

    with serving(engine, ServerConfig(port=0, **config)) as (address, _):  # type: ignore[arg-type]
        yield address


def free_port() -> int:
    """A TCP port free on loopback right now (for the metrics port, which takes no 0)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int, path: str = "/metrics") -> str:
    """GET a path of a server's metrics port."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode()


def square_units(seconds: float, *, width: int = 64, height: int = 48, fps: int = 15, gop: int = 15) -> list:
    """A moving-square H.264 stream as simulators.video.EncodedUnit values (what run_camera sends)."""
    from simulators.video import EncodedUnit

    frames = moving_square_frames(round(seconds * fps), width=width, height=height)
    return [EncodedUnit(data, pts, key) for data, pts, key in encode_annexb(frames, fps=fps, gop=gop)]


async def cameras_with_sessions(server: object, cameras: Sequence, key=None) -> tuple[list, dict]:  # noqa: ANN001
    """Run the camera coroutines; returns their reports and each camera's server Session (kept from the server's
    table while it streams: it leaves the table at disconnect), keyed by device id or by `key(session)`."""
    sessions: dict = {}
    done = asyncio.Event()
    key = key or (lambda s: s.device_id)

    async def watch() -> None:
        while not done.is_set():
            for s in list(server.service.sessions.values()):  # type: ignore[attr-defined]
                sessions.setdefault(key(s), s)
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    reports = list(await asyncio.gather(*cameras))
    done.set()
    await watcher
    return reports, sessions


def side_by_side(engines_and_configs: dict, scenario) -> dict:  # noqa: ANN001
    """One real server per key (engine, config), all at once; `scenario(target, server)` is a coroutine run
    against each at the same time (so a slow spell of the machine hits every variant). Returns key -> result."""
    with contextlib.ExitStack() as stack:
        running = {k: stack.enter_context(serving(e, c)) for k, (e, c) in engines_and_configs.items()}

        async def all_of() -> list:
            return await asyncio.gather(*(scenario(target, server) for target, server in running.values()))

        return dict(zip(running, asyncio.run(all_of()), strict=True))


def blink_units(seconds: float, *, on_s: float = 1.0, off_s: float = 1.0, fps: int = 10, gop: int = 5) -> list:
    """H.264 that alternates red (on) and black (off) pictures: FakeEngine's p_yes follows the red, so every `on`
    stretch is one episode (STARTED, then ENDED in the `off` after it) at any sampling rate of 2/s or more."""
    from simulators.video import EncodedUnit

    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    black = np.zeros((48, 64, 3), np.uint8)
    period = on_s + off_s
    frames = [red if (i / fps) % period < on_s else black for i in range(round(seconds * fps))]
    labels = [frozenset({"barking"}) if f is red else frozenset() for f in frames]
    units = encode_annexb(frames, fps=fps, gop=gop)
    return [EncodedUnit(d, p, k, labels[round(p * fps / 1e6)]) for d, p, k in units]

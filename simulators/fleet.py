"""Run several simulated cameras at once, optionally against a server started as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protos.petstream.v1 import petstream_pb2 as pb
from simulators.camera import Backoff, CameraReport, run_camera
from simulators.credentials import ClientSecurity
from simulators.video import WireCodec, synthetic_units
from streaming.orientation import IDENTITY, Orientation


@dataclass(frozen=True)
class SyntheticCameraSpec:
    """One synthetic camera of a fleet."""

    device_id: str
    seed: int
    width: int = 640
    height: int = 360
    fps: float = 15.0
    gop: int = 30
    seconds: float | None = 60.0
    codec: WireCodec = "h264"
    still_fraction: float = 0.5


def fleet_specs(count: int, *, prefix: str = "cam", seed: int = 1, **kwargs: object) -> list[SyntheticCameraSpec]:
    return [SyntheticCameraSpec(f"{prefix}-{i + 1}", seed + i, **kwargs) for i in range(count)]  # type: ignore[arg-type]


def _units(spec: SyntheticCameraSpec) -> Iterator:
    from simulators.timeline import Timeline

    timeline = Timeline.scripted(
        spec.seed, duration_s=max(spec.seconds or 120.0, 60.0), still_fraction=spec.still_fraction
    )
    return synthetic_units(
        spec.seed,
        width=spec.width,
        height=spec.height,
        fps=spec.fps,
        gop=spec.gop,
        duration_s=spec.seconds,
        codec=spec.codec,
        timeline=timeline,
    )


async def run_fleet(
    target: str,
    specs: list[SyntheticCameraSpec],
    *,
    speed: float = 1.0,
    want_scores: bool = False,
    sample_fps: float = 0.0,
    on_message: Callable[[str, pb.ServerMessage], None] | None = None,
    security: ClientSecurity | Callable[[str], ClientSecurity] | None = None,
    sampling: str = "",
    orientation: Orientation = IDENTITY,
    reconnect: Backoff | None = None,
) -> list[CameraReport]:
    """Run every camera of `specs` at once; `security` is one for all, or a function of the device id."""
    tasks = [
        run_camera(
            target,
            s.device_id,
            _units(s),
            codec=s.codec,
            speed=speed,
            want_scores=want_scores,
            sample_fps=sample_fps,
            on_message=on_message,
            security=security(s.device_id) if callable(security) else security,
            sampling=sampling,
            orientation=orientation,
            reconnect=reconnect,
        )
        for s in specs
    ]
    return list(await asyncio.gather(*tasks))


def _last_line(path: str) -> str:
    """The server's last log line (its error, when it did not start), without the timestamp and logger."""
    try:
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    last = lines[-1] if lines else ""
    return last.split(": ", 1)[1] if " ERROR " in last and ": " in last else last


@contextlib.contextmanager
def server_process(
    args: list[str], *, log_path: str | None = None, timeout_s: float = 300.0, module: str = "petstream.cli serve"
) -> Iterator[str]:
    """Start `petstream serve --port 0 ARGS` (or another `python -m MODULE` printing the same "petstream serving on"
    line, e.g. the naive baseline server) as a subprocess and yield its address once it listens (a first start may
    build and cache compiled stages, hence the generous timeout)."""
    with server_subprocess(args, log_path=log_path, timeout_s=timeout_s, module=module) as (address, _):
        yield address


@contextlib.contextmanager
def server_subprocess(
    args: list[str], *, log_path: str | None = None, timeout_s: float = 120.0, module: str = "petstream.cli serve"
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """server_process() that also yields the process (its pid: memory, signals)."""
    scratch = None
    if module.endswith("serve") and not any(a == "--data-dir" or a.startswith("--data-dir=") for a in args):
        scratch = tempfile.mkdtemp(prefix="petstream-data-")  # a run of its own: no episodes resumed from another
        args = [*args, "--data-dir", scratch]
    cmd = [sys.executable, "-m", *module.split(), "--port", "0", *args]
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        deadline = time.monotonic() + timeout_s
        address = None
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("petstream serving on "):
                address = line.split()[3]
                break
        if address is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)  # it closed its output: let it finish, so its exit code and last log line are there
            why = _last_line(log_path) if log_path else ""
            raise RuntimeError(
                f"the server did not start (exit code {proc.poll()})"
                + (f": {why}" if why else "")
                + f"; its log: {log_path or 'not kept'}"
            )
        yield address, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            log.close()  # type: ignore[union-attr]
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

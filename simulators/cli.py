"""`petstream camera`, `petstream demo` and `petstream golden`: registered by the simulators layer."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile

from simulators.credentials import add_arguments as add_security_arguments

CAMERA_EPILOG = """\
examples:
  petstream camera                                        # one synthetic camera, 60 s, against 127.0.0.1:50051
  petstream camera --count 4 --seconds 0                  # four synthetic cameras, forever
  petstream camera --rotate 180 --sampling motion         # a camera mounted upside down, motion-gated
  petstream camera --clip phone.mp4 --speed 0 --scores    # replay a recording as fast as the server takes it
  petstream camera --clip dashcam.mkv --video-track 1     # the second video track instead of the main one

Clips: any container PyAV opens (mp4, mov, mkv, webm, avi...). H.264/HEVC are passed through as Annex-B, other
codecs transcoded to H.264. The track's display rotation (phones) is sent as the stream's orientation; a damaged
file is replayed as far as it can be read, with one line saying what was wrong and where."""

DEMO_EPILOG = """\
example:
  petstream demo --seconds 30 --speed 2      # half a minute of video at twice real time"""

GOLDEN_EPILOG = """\
example:
  petstream golden --seconds 120 --cameras 3 --json bench/results/golden_events.json --quiet"""

SAMPLING = ("rate", "keyframes", "motion", "compressed")


def _address(text: str) -> str:
    """host:port (a bracketed IPv6 host is fine); a gRPC target like dns:///name:port passes through."""
    if "://" in text or text.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address like 127.0.0.1:50051 (host:port)")
    return text


def _non_negative(kind: type) -> object:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
        return value

    parse.__name__ = kind.__name__
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    cam = sub.add_parser(
        "camera",
        help="stream synthetic or recorded video to a server and print the events it sends back",
        description="Act as one or more cameras: stream a synthetic scene (or a recorded clip) to a petstream "
        "server and print the behavior events and warnings it sends back.",
        epilog=CAMERA_EPILOG,
    )
    cam.add_argument("--target", default="127.0.0.1:50051", type=_address, metavar="HOST:PORT", help="server address")
    cam.add_argument("--clip", metavar="PATH", help="replay this recorded file instead of a synthetic scene")
    cam.add_argument(
        "--video-track",
        type=_non_negative(int),
        metavar="N",
        help="with --clip: replay video track N (0 = the first) (default: the main track, as FFmpeg chooses it)",
    )
    cam.add_argument("--count", type=int, default=1, metavar="N", help="synthetic cameras to run at once")
    cam.add_argument(
        "--device-id", default="cam", metavar="ID", help="device id (with --count N: a prefix, -1..-N appended)"
    )
    cam.add_argument("--seed", type=int, default=1, metavar="N", help="scene and script seed of the first camera")
    cam.add_argument("--width", type=int, default=640, metavar="PX", help="synthetic picture width")
    cam.add_argument("--height", type=int, default=360, metavar="PX", help="synthetic picture height")
    cam.add_argument("--fps", type=float, default=15.0, metavar="FPS", help="synthetic frames per second")
    cam.add_argument("--gop", type=int, default=30, metavar="FRAMES", help="synthetic: frames between keyframes")
    cam.add_argument("--codec", choices=["h264", "hevc", "mjpeg"], default="h264", help="synthetic: what to encode")
    cam.add_argument(
        "--seconds", type=float, default=60.0, metavar="S", help="synthetic: video length to stream (0 = forever)"
    )
    cam.add_argument(
        "--speed",
        type=_non_negative(float),
        default=1.0,
        metavar="X",
        help="pace relative to real time; 0 = as fast as the server takes it (and nothing is dropped)",
    )
    cam.add_argument(
        "--sample-fps",
        type=_non_negative(float),
        default=0.0,
        metavar="FPS",
        help="frames per second of video the server should look at (0 = the server's default)",
    )
    cam.add_argument(
        "--sampling",
        choices=SAMPLING,
        help="which frames the server looks at: rate, keyframes, motion or compressed (default: the server's)",
    )
    cam.add_argument(
        "--rotate",
        type=int,
        choices=(0, 90, 180, 270),
        default=0,
        metavar="DEG",
        help="the camera's mounting: the server turns the picture clockwise by DEG (0, 90, 180, 270) before the "
        "model sees it; with --clip, after the clip's own display rotation",
    )
    cam.add_argument("--flip", action="store_true", help="the server mirrors the picture left-right (after --rotate)")
    cam.add_argument("--scores", action="store_true", help="also ask for and print the model's scores per frame")
    cam.add_argument(
        "--no-reconnect",
        action="store_true",
        help="stop when the server ends the stream, not reconnect with backoff and jitter (default: reconnect)",
    )
    add_security_arguments(cam)
    cam.set_defaults(func=_camera)

    demo = sub.add_parser(
        "demo",
        help="start a server and three synthetic cameras; print the events",
        description="Start a server subprocess and stream three scripted synthetic cameras to it; print every "
        "event, then score the events against the cameras' scripts.",
        epilog=DEMO_EPILOG,
    )
    _session_args(demo, seconds=90.0)
    demo.set_defaults(func=_demo)

    golden = sub.add_parser(
        "golden",
        help="measure events against the cameras' scripts through a real server (JSON out)",
        description="The demo as a measurement: per behavior, precision, recall and onset delay of the events "
        "against the scripted episodes of every camera.",
        epilog=GOLDEN_EPILOG,
    )
    _session_args(golden, seconds=120.0)
    golden.add_argument("--json", metavar="PATH", help="write the scores here (default: print only)")
    golden.add_argument("--quiet", action="store_true", help="do not print each event")
    golden.set_defaults(func=_golden)
    from simulators.admin import register as register_admin  # `petstream admin`: the operator's client

    register_admin(sub)

    cal = sub.add_parser(
        "calibration",
        help="write calibration frames for int8 compilation: simulator scenes through H.264 (.npz)",
        description="Random simulator scenes, encoded like a camera (H.264, x264 veryfast, 1 Mbit/s) and decoded "
        "with PyAV, squashed to the model's input size: the real frames `petstream compile --backend openvino "
        "--dtype int8 --calibration FILE` calibrates on. The shipped default set was made with the defaults.",
        epilog="example:\n  petstream calibration --frames 40 --seed 20261201 --out frames.npz",
    )
    cal.add_argument("--out", required=True, metavar="PATH", help="the .npz to write")
    cal.add_argument("--frames", type=int, default=40, metavar="N", help="how many frames")
    cal.add_argument("--seed", type=int, default=20261201, metavar="N", help="scene seed (recorded in the file)")
    cal.add_argument("--size", type=int, default=384, metavar="PX", help="square size the frames are stored at")
    cal.set_defaults(func=_calibration)

    from simulators import events_cli

    events_cli.register(sub)


def _session_args(p: argparse.ArgumentParser, seconds: float) -> None:
    p.add_argument("--seconds", type=float, default=seconds, metavar="S", help="video length each camera streams")
    p.add_argument("--cameras", type=int, default=3, metavar="N", help="synthetic cameras")
    p.add_argument("--model", default="sim-tiny", metavar="MODEL", help="the server's model (see `serve --model`)")
    p.add_argument("--seed", type=int, default=1, metavar="N", help="scene and script seed of the first camera")
    p.add_argument("--width", type=int, default=640, metavar="PX", help="picture width")
    p.add_argument("--height", type=int, default=360, metavar="PX", help="picture height")
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="pace relative to real time")
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `petstream serve` (repeatable; e.g. --server-arg=--sampling --server-arg=motion)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="run over mutual TLS with a throwaway CA and one certificate per camera (default: plaintext on loopback)",
    )


def _print_message(device_id: str, msg) -> None:  # noqa: ANN001
    from simulators.camera import format_message

    line = format_message(device_id, msg)
    if line:
        print(line, flush=True)


def _camera(args: argparse.Namespace) -> int:
    from simulators.camera import Backoff, format_message
    from simulators.credentials import from_args
    from simulators.fleet import fleet_specs, run_fleet
    from streaming.orientation import Orientation

    try:
        security = from_args(args)
    except (ValueError, OSError) as exc:
        print(f"petstream camera: {exc}", file=sys.stderr)
        return 2

    def on_message(device_id: str, msg) -> None:  # noqa: ANN001
        line = format_message(device_id, msg)
        if line is None and args.scores and msg.WhichOneof("kind") == "scores":
            s = msg.scores
            line = f"{device_id:<10} t={s.pts_us / 1e6:7.2f}s  scores " + " ".join(
                f"{k}={v:.2f}" for k, v in sorted(s.p_yes.items())
            )
        if line:
            print(line, flush=True)

    mount = Orientation(args.rotate, args.flip)
    if args.clip:
        return _replay_clip(args, mount, on_message, security)
    if args.video_track is not None:
        print("petstream camera: --video-track needs --clip", file=sys.stderr)
        return 2
    specs = fleet_specs(
        args.count,
        prefix=args.device_id,
        seed=args.seed,
        width=args.width,
        height=args.height,
        fps=args.fps,
        gop=args.gop,
        seconds=args.seconds or None,
        codec=args.codec,
    )
    if args.count == 1:
        specs = [specs[0].__class__(**{**specs[0].__dict__, "device_id": args.device_id})]
    reports = asyncio.run(
        run_fleet(
            args.target,
            specs,
            speed=args.speed,
            want_scores=args.scores,
            sample_fps=args.sample_fps,
            on_message=on_message,
            sampling=args.sampling or "",
            orientation=mount,
            security=security,
            reconnect=None if args.no_reconnect else Backoff(),
        )
    )
    for r in reports:
        print(_report_line(r))
    return 1 if any(r.error or r.source_error for r in reports) else 0


def _replay_clip(args: argparse.Namespace, mount, on_message, security) -> int:  # noqa: ANN001
    """Replay a recorded clip; exit 0 when something was sent and the server took it, whatever the damage."""
    from simulators.camera import Backoff, run_camera
    from simulators.clip import ClipError, ClipReader

    try:
        reader = ClipReader(args.clip, track=args.video_track)
    except ClipError as exc:
        print(f"petstream camera: {exc}", file=sys.stderr)
        return 2
    print(reader.info.describe(), flush=True)
    from petstream.progress import bar

    progress = bar(desc=f"replaying {args.clip}", unit="frame")  # on a terminal only; quiet in pipes and CI

    def counted(units):  # noqa: ANN001, ANN202
        for unit in units:
            progress.update(1)
            yield unit

    report = asyncio.run(
        run_camera(
            args.target,
            args.device_id,
            counted(reader.units()),
            codec=reader.info.codec,
            speed=args.speed,
            want_scores=args.scores,
            sample_fps=args.sample_fps,
            on_message=on_message,
            sampling=args.sampling or "",
            orientation=reader.info.orientation.then(mount),
            security=security,
            reconnect=None if args.no_reconnect else Backoff(),
        )
    )
    progress.close()
    print(_report_line(report))
    summary = reader.summary()
    if summary:
        print(f"petstream camera: {summary}", file=sys.stderr)
    if report.source_error:
        print(f"petstream camera: {args.clip}: reading stopped: {report.source_error}", file=sys.stderr)
    if report.units_sent == 0 and not report.error:
        print(f"petstream camera: {args.clip}: nothing in it could be sent", file=sys.stderr)
        return 1
    return 1 if report.error else 0


def _report_line(r) -> str:  # noqa: ANN001
    return (
        f"{r.device_id}: sent {r.units_sent} frames ({r.bytes_sent} B), {len(r.events)} events, "
        f"{len(r.scores)} scores, {len(r.warnings)} warnings" + (f", error {r.error}" if r.error else "")
    )


def run_session(args: argparse.Namespace, *, print_events: bool) -> dict:
    """Server subprocess + scripted synthetic cameras; returns the golden-event scores as a dict."""
    from simulators.fleet import fleet_specs, run_fleet, server_process
    from simulators.golden import format_table, merge_scores, score_camera
    from simulators.timeline import BEHAVIORS

    log_path = tempfile.NamedTemporaryFile(prefix="petstream-server-", suffix=".log", delete=False).name
    print(f"starting server (model {args.model}); its log: {log_path}", flush=True)
    specs = fleet_specs(args.cameras, seed=args.seed, width=args.width, height=args.height, seconds=args.seconds)
    with tempfile.TemporaryDirectory(prefix="petstream-pki-") as pki:
        server_args, security = _session_security(args.tls, pki, [s.device_id for s in specs])
        with server_process(["--model", args.model, *server_args, *args.server_arg], log_path=log_path) as address:
            print(f"server listening on {address}; streaming {args.cameras} cameras for {args.seconds:g} s", flush=True)
            reports = asyncio.run(
                run_fleet(
                    address,
                    specs,
                    speed=args.speed,
                    want_scores=True,
                    on_message=_print_message if print_events else None,
                    security=security,
                )
            )
    behaviors = list(BEHAVIORS)
    per_camera = [score_camera(r, behaviors) for r in reports]
    merged = merge_scores(per_camera)
    print("\nevents vs the cameras' scripts (all cameras):\n" + format_table(merged), flush=True)
    errors = [f"{r.device_id}: {r.error}" for r in reports if r.error]
    for e in errors:
        print("camera failed:", e, file=sys.stderr)
    return {
        "model": args.model,
        "cameras": args.cameras,
        "seconds": args.seconds,
        "frames_scored": sum(len(r.scores) for r in reports),
        "events": sum(len(r.events) for r in reports),
        "errors": errors,
        "per_behavior": {b: s.as_dict() for b, s in merged.items()},
        "per_camera": {
            r.device_id: {b: s.as_dict() for b, s in sc.items()} for r, sc in zip(reports, per_camera, strict=True)
        },
    }


def _session_security(tls: bool, pki: str, devices: list[str]):  # noqa: ANN202
    """Server arguments and each camera's credentials: plaintext on loopback, or mTLS with throwaway certificates."""
    from simulators.credentials import ClientSecurity

    if not tls:
        print(
            "security: this demo runs WITHOUT TLS (plaintext on loopback, no credential check); "
            "--tls runs it over mutual TLS with throwaway certificates",
            flush=True,
        )
        return [], None
    # `petstream certs` (the server side's tool) makes the CA, so this client layer does not import the server's code
    cmd = [sys.executable, "-m", "petstream.cli", "certs", "--out", pki, *(a for d in devices for a in ("--device", d))]
    subprocess.run(cmd, check=True, capture_output=True)
    print(f"security: mutual TLS; throwaway CA and certificates in {pki} (deleted afterwards)", flush=True)
    server_args = ["--tls-cert", f"{pki}/server.pem", "--tls-key", f"{pki}/server.key", "--client-ca", f"{pki}/ca.pem"]
    return server_args, lambda d: ClientSecurity(ca=f"{pki}/ca.pem", cert=f"{pki}/{d}.pem", key=f"{pki}/{d}.key")


def _demo(args: argparse.Namespace) -> int:
    try:
        result = run_session(args, print_events=True)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:  # the server did not start (a bad --model or --server-arg): say why in one line
        print(f"petstream demo: {exc}", file=sys.stderr)
        return 2
    return 1 if result["errors"] else 0


def _calibration(args: argparse.Namespace) -> int:
    from simulators.calibration import write_calibration

    if args.frames < 1 or args.size < 8:
        print("petstream calibration: --frames must be >= 1 and --size >= 8", file=sys.stderr)
        return 2
    path = write_calibration(args.out, args.frames, seed=args.seed, size=args.size)
    print(f"wrote {args.frames} frames ({args.size}x{args.size}, seed {args.seed}) to {path}")
    return 0


def _golden(args: argparse.Namespace) -> int:
    try:
        result = run_session(args, print_events=not args.quiet)
    except RuntimeError as exc:
        print(f"petstream golden: {exc}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 1 if result["errors"] else 0

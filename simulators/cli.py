"""`petstream camera`, `petstream demo` and `petstream golden`: registered by the simulators layer."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile

from simulators.credentials import add_arguments as add_security_arguments


def register(sub: argparse._SubParsersAction) -> None:
    cam = sub.add_parser("camera", help="stream synthetic or recorded video to a server and print events")
    cam.add_argument("--target", default="127.0.0.1:50051", help="server address host:port")
    cam.add_argument("--clip", help="a recorded file in any container PyAV opens (mp4, mkv, avi, webm, ...)")
    cam.add_argument("--count", type=int, default=1, help="synthetic cameras to run at once")
    cam.add_argument("--device-id", default="cam", help="device id (with --count N: prefix, -1..-N appended)")
    cam.add_argument("--seed", type=int, default=1, help="scene and script seed of the first camera")
    cam.add_argument("--width", type=int, default=640)
    cam.add_argument("--height", type=int, default=360)
    cam.add_argument("--fps", type=float, default=15.0)
    cam.add_argument("--gop", type=int, default=30, help="frames between keyframes")
    cam.add_argument("--codec", choices=["h264", "hevc", "mjpeg"], default="h264")
    cam.add_argument("--seconds", type=float, default=60.0, help="video length to stream (0 = forever)")
    cam.add_argument("--speed", type=float, default=1.0, help="pace relative to real time; 0 = as fast as possible")
    cam.add_argument("--sample-fps", type=float, default=0.0, help="frames/s the server should look at (0 = default)")
    cam.add_argument("--scores", action="store_true", help="also ask for and print FrameScores")
    add_security_arguments(cam)
    cam.set_defaults(func=_camera)

    demo = sub.add_parser("demo", help="start a server and three synthetic cameras; print events")
    _session_args(demo, seconds=90.0)
    demo.set_defaults(func=_demo)

    golden = sub.add_parser("golden", help="scripted session through a real server; events vs script as JSON")
    _session_args(golden, seconds=120.0)
    golden.add_argument("--json", help="write the scores here")
    golden.add_argument("--quiet", action="store_true", help="do not print each event")
    golden.set_defaults(func=_golden)


def _session_args(p: argparse.ArgumentParser, seconds: float) -> None:
    p.add_argument("--seconds", type=float, default=seconds, help="video length each camera streams")
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--model", default="sim-tiny")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--speed", type=float, default=1.0, help="pace relative to real time")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument for `petstream serve`")
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
    from simulators.camera import format_message, run_camera
    from simulators.credentials import from_args
    from simulators.fleet import fleet_specs, run_fleet
    from simulators.video import clip_units

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

    if args.clip:
        codec, units = clip_units(args.clip)
        reports = [
            asyncio.run(
                run_camera(
                    args.target,
                    args.device_id,
                    units,
                    codec=codec,
                    speed=args.speed,
                    want_scores=args.scores,
                    sample_fps=args.sample_fps,
                    on_message=on_message,
                    security=security,
                )
            )
        ]
    else:
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
                security=security,
            )
        )
    failed = [r for r in reports if r.error]
    for r in reports:
        print(
            f"{r.device_id}: sent {r.units_sent} frames ({r.bytes_sent} B), {len(r.events)} events, "
            f"{len(r.scores)} scores, {len(r.warnings)} warnings" + (f", error {r.error}" if r.error else "")
        )
    return 1 if failed else 0


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
    return 1 if result["errors"] else 0


def _golden(args: argparse.Namespace) -> int:
    result = run_session(args, print_events=not args.quiet)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 1 if result["errors"] else 0

"""`petstream events watch|list`: the product backend's side of the Events service, printing one JSON line per event."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from protos.petstream.v1 import petstream_pb2 as pb
from simulators import credentials


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "events",
        help="read a server's stored events: follow them (watch) or query history (list)",
        description="The product backend's side of the Events service: one JSON line per stored event. Against "
        "a server with TLS, pass --ca and a credential (--token, or --cert/--key) allowed to read the devices.",
        epilog="examples:\n  petstream events watch --after-cursor 0\n  petstream events list --device cam-1",
    )
    ev_sub = ev.add_subparsers(dest="events", required=True, metavar="ACTION")
    actions = (
        ("watch", "follow the events from a cursor, reconnecting with backoff and resuming after the last one"),
        ("list", "stored events by device and time range, every page"),
    )
    for name, text in actions:
        p = ev_sub.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + ".", epilog=f"example:\n  {EXAMPLES[name]}"
        )
        p.add_argument(
            "--target", default="127.0.0.1:50051", metavar="HOST:PORT", help="server address (default: %(default)s)"
        )
        p.add_argument(
            "--device", action="append", default=[], metavar="ID", help="a device id, repeatable (default: all allowed)"
        )
        if name == "watch":
            p.add_argument(
                "--after-cursor", type=int, default=0, metavar="N", help="resume after this cursor (default: 0 = all)"
            )
            p.add_argument("--from-latest", action="store_true", help="only events stored from now on (default: off)")
            p.set_defaults(func=_watch)
        else:
            p.add_argument(
                "--since-unix-us", type=int, default=0, metavar="US", help="from this time (default: 0 = the oldest)"
            )
            p.add_argument(
                "--until-unix-us", type=int, default=0, metavar="US", help="before this time (default: 0 = now)"
            )
            p.set_defaults(func=_list)
        credentials.add_arguments(p)


EXAMPLES = {
    "watch": "petstream events watch --target 127.0.0.1:50051 --after-cursor 1234",
    "list": "petstream events list --device cam-1 --since-unix-us 1767225600000000",
}


def record_json(r: pb.EventRecord) -> str:
    e = r.event
    return json.dumps(
        {
            "cursor": r.cursor,
            "time_unix_us": r.time_unix_us,
            "session_id": r.session_id,
            "event_id": e.event_id,
            "state": pb.EventState.Name(e.state),
            "device_id": e.device_id,
            "behavior": e.behavior,
            "confidence": round(e.confidence, 4),
            "pts_us": e.pts_us,
            "start_pts_us": e.start_pts_us,
            "end_pts_us": e.end_pts_us,
        }
    )


def _watch(args: argparse.Namespace) -> int:
    from simulators.subscriber import watch_events

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        report = await watch_events(
            args.target,
            after_cursor=args.after_cursor,
            from_latest=args.from_latest,
            device_ids=args.device,
            stop=stop,
            on_record=lambda r: print(record_json(r), flush=True),
            security=credentials.from_args(args),
        )
        if report.error:
            print(f"gave up: {report.error} (resume with --after-cursor {report.cursor})")
            return 1
        return 0

    return asyncio.run(run())


def _list(args: argparse.Namespace) -> int:
    from simulators.subscriber import list_events

    records = asyncio.run(
        list_events(
            args.target,
            device_ids=args.device,
            since_unix_us=args.since_unix_us,
            until_unix_us=args.until_unix_us,
            security=credentials.from_args(args),
        )
    )
    for r in records:
        print(record_json(r))
    return 0

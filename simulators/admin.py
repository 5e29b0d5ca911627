"""`petstream admin route`: read or change a server's route over backend pools (the Admin service), as an operator."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import grpc

from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.credentials import ClientSecurity, add_arguments, from_args, open_channel


def register(sub: argparse._SubParsersAction) -> None:
    adm = sub.add_parser(
        "admin",
        help="operator calls to a running server (needs an admin identity off loopback)",
        description="Operator calls to a running server's Admin service. Off loopback they need an admin "
        "identity: a token from `petstream token issue --role admin` or a certificate with an admin role SAN.",
        epilog="examples:\n  petstream admin route --target 127.0.0.1:50051\n"
        "  petstream admin route --target ingest:50051 --ca ca.pem --token-file ops.token --weights cpu-int8=0,cuda=1",
    )
    adm_sub = adm.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    route = adm_sub.add_parser(
        "route",
        help="show the route over backend pools, or change it live with --weights (no stream ends)",
        description="Without --weights: print the route and each pool's counters. With --weights: set them; "
        "pools not named get weight 0 (standby, used only when the weighted pools fail). No stream ends.",
        epilog="examples:\n  petstream admin route --target 127.0.0.1:50051 --json\n"
        "  petstream admin route --target 127.0.0.1:50051 --weights cpu-int8=1,cuda=0",
    )
    route.add_argument(
        "--target", default="127.0.0.1:50051", metavar="HOST:PORT", help="server address (default: %(default)s)"
    )
    route.add_argument(
        "--weights",
        metavar="POOL=W,...",
        help="POOL=WEIGHT[,POOL=WEIGHT...], e.g. cpu-int8=1,cuda=0 (default: none = only show)",
    )
    route.add_argument("--json", action="store_true", help="print the status as JSON (default: a table)")
    add_arguments(route)
    route.set_defaults(func=_route)


async def set_route(target: str, weights: dict[str, float] | None, security: ClientSecurity | None) -> pb.RouteStatus:
    """SetRoute (weights given) or GetRoute; raises grpc.aio.AioRpcError with the server's reason."""
    async with open_channel(target, security) as channel:
        stub = pb_grpc.AdminStub(channel)
        if weights is None:
            return await stub.GetRoute(pb.GetRouteRequest(), timeout=30)
        return await stub.SetRoute(pb.SetRouteRequest(weights=weights), timeout=30)


def status_dict(s: pb.RouteStatus) -> dict[str, object]:
    return {
        "version": s.version,
        "workers": s.workers,
        "worker": s.worker,
        "weights": dict(s.weights),
        "pools": {
            p.name: {
                "kind": p.kind,
                "backend": p.backend,
                "up": p.up,
                "batches": p.batches,
                "frames": p.frames,
                "errors": p.errors,
                "timeouts": p.timeouts,
                "failovers_to": p.failovers_to,
                "replicas": dict(p.replicas),
            }
            for p in s.pools
        },
    }


def _route(args: argparse.Namespace) -> int:
    from inference.pools import parse_weights

    try:
        weights = parse_weights(args.weights) if args.weights else None
        security = from_args(args)
    except (ValueError, OSError) as exc:
        print(f"petstream admin route: {exc}", file=sys.stderr)
        return 2
    try:
        status = asyncio.run(set_route(args.target, weights, security))
    except grpc.aio.AioRpcError as exc:
        print(f"petstream admin route: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    d = status_dict(status)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"route v{d['version']} (answered by worker {d['worker']} of {d['workers']}; counters are that worker's)")
    head = ("pool", "weight", "kind", "up", "batches", "frames", "errors", "timeouts")
    print("{:<14} {:>6} {:<6} {:<5} {:>8} {:>8} {:>6} {:>8}".format(*head))
    for name, p in d["pools"].items():  # type: ignore[attr-defined]
        w = d["weights"].get(name, 0.0)  # type: ignore[attr-defined]
        print(
            f"{name:<14} {w:>6g} {p['kind']:<6} {str(p['up']):<5} {p['batches']:>8} {p['frames']:>8} "
            f"{p['errors']:>6} {p['timeouts']:>8}  {p['replicas'] or ''}"
        )
    return 0

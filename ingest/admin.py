"""The Admin service (live routing over backend pools) and the route file every `serve --workers` process follows.

SetRoute changes the weights of this process's router at once; with several ingest processes it also writes the
shared route file, which the other workers poll (every 0.25 s), so every process routes the same way within a
fraction of a second, whichever worker the admin call landed on. No stream is touched: the batcher keeps its
queues, and the next batch simply goes where the new weights say.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from inference.router import Router
from ingest import auth
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["Admin"].full_name


class RouteFile:
    """A JSON file {"version": n, "weights": {...}} shared by the workers; written atomically under a lock."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.seen = -1

    def read(self) -> tuple[int, dict[str, float]] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return int(data["version"]), {str(k): float(v) for k, v in data["weights"].items()}

    def write(self, weights: dict[str, float]) -> int:
        """Publish new weights; returns the shared version (one more than any worker published)."""
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            version = (current[0] if current else 0) + 1
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": version, "weights": weights}))
            tmp.replace(self.path)
        self.seen = version
        return version

    async def follow(self, apply: Callable[[dict[str, float]], object], interval_s: float = 0.25) -> None:
        """Apply every version another worker publishes (the task runs until cancelled)."""
        while True:
            current = self.read()
            if current is not None and current[0] > self.seen:
                self.seen = current[0]
                try:
                    apply(current[1])
                except ValueError as exc:  # a bad file never takes the server down
                    log.error("route file %s v%d ignored: %s", self.path, current[0], exc)
            await asyncio.sleep(interval_s)


class AdminService(pb_grpc.AdminServicer):
    """SetRoute / GetRoute: needs an admin identity (auth.require_admin), checked before anything else."""

    def __init__(
        self,
        router: Router,
        *,
        route_file: RouteFile | None = None,
        workers: int = 1,
        replicas: Callable[[], dict[str, dict[str, int]]] | None = None,
    ) -> None:
        self.router = router
        self.route_file = route_file
        self.workers = workers
        self._replicas = replicas
        self.worker = int(os.environ.get("PETSTREAM_WORKER_INDEX", "0"))  # set by `serve --workers`

    async def SetRoute(self, request: pb.SetRouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteStatus:  # noqa: N802
        auth.require_admin(auth.current_identity())  # Refused: answered (and counted) by the AuthInterceptor
        weights = dict(request.weights)
        try:
            self.router.set_weights(weights)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.route_file is not None:
            self.route_file.write(self.router.weights())
        identity = auth.current_identity()
        log.info("route changed by %s: %s", identity.subject, self.router.weights())
        return await self._status()

    async def GetRoute(self, request: pb.GetRouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteStatus:  # noqa: N802
        auth.require_admin(auth.current_identity())
        return await self._status()

    async def _status(self) -> pb.RouteStatus:
        snap = self.router.snapshot()
        replicas: dict[str, dict[str, int]] = {}
        if self._replicas is not None:
            try:
                replicas = await asyncio.get_running_loop().run_in_executor(None, self._replicas)
            except Exception as exc:  # noqa: BLE001 - status without replica counts beats no status
                log.warning("replica counts unavailable: %s", exc)
        version = self.route_file.seen if self.route_file is not None else snap["version"]
        pools: dict[str, dict[str, Any]] = snap["pools"]  # type: ignore[assignment]
        return pb.RouteStatus(
            version=int(version),  # type: ignore[call-overload]
            weights={name: float(p["weight"]) for name, p in pools.items()},
            workers=self.workers,
            worker=self.worker,
            pools=[
                pb.PoolStatus(
                    name=name,
                    kind=str(p["kind"]),
                    backend=str(p["backend"]),
                    up=bool(p["up"]),
                    batches=int(p["batches"]),
                    frames=int(p["frames"]),
                    errors=int(p["errors"]),
                    timeouts=int(p["timeouts"]),
                    failovers_to=int(p["failovers_to"]),
                    replicas=replicas.get(name, {}),
                )
                for name, p in pools.items()
            ],
        )


def add_admin(server: grpc.aio.Server, service: AdminService) -> None:
    pb_grpc.add_AdminServicer_to_server(service, server)

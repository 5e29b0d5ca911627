"""The grpc.aio server: BehaviorStream (Stream, Ask), Events (WatchEvents, ListEvents), health and reflection."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from inference.router import Router
from inference.types import Engine
from ingest import auth, runtime, transport
from ingest.access import AccessPolicy, by_identity
from ingest.admin import ADMIN_SERVICE, AdminService, RouteFile, add_admin
from ingest.config import ServerConfig
from ingest.events_service import SERVICE_NAME as EVENTS_SERVICE
from ingest.events_service import EventsService, wait_for_watchers
from ingest.operator import OperatorHttp
from ingest.stream_service import DRAIN_REASON, SERVICE_NAME, BehaviorStreamService
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from streaming.sinks import SinkPump, create_sink
from streaming.store import EventStore, StoreStatus

__all__ = ["DRAIN_REASON", "PetstreamServer"]

log = logging.getLogger(__name__)


class PetstreamServer:
    """A running server: gRPC on a port, the service, health and reflection (and Admin over a pool Router)."""

    def __init__(
        self,
        engine: Engine,
        config: ServerConfig,
        *,
        access: AccessPolicy = by_identity,
        replicas: Callable[[], dict[str, dict[str, int]]] | None = None,
    ) -> None:
        self.config = config
        self.store = EventStore(
            config.data_dir, sync=config.store_sync, retention_s=config.event_retention_days * 86400
        )
        self.service = BehaviorStreamService(engine, config, self.store)
        self.events = EventsService(self.store, access)
        self.sinks = [SinkPump(self.store, create_sink(config.sink))] if config.sink else []
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.auth = auth.AuthInterceptor(transport.authenticator(config.security))  # .refusals: counts by reason
        if self.service.metrics is not None:
            self.service.metrics.attach_refusals(self.auth.refusals)  # petstream_auth_refusals_total{reason}
        self._http: OperatorHttp | None = None
        self.metrics_port = 0  # bound port of /metrics and the operator page (0: off)
        self.admin: AdminService | None = None
        self._route_task: asyncio.Task[None] | None = None
        metrics = getattr(self.service, "metrics", None)  # the Prometheus registry, when metrics are on
        if isinstance(engine, Router) and metrics is not None:
            from ingest.pool_metrics import RouterCollector

            metrics.registry.register(RouterCollector(engine))  # petstream_pool_* and petstream_route_*
        if isinstance(engine, Router):  # live routing over backend pools (docs/deploy.md)
            route_file = RouteFile(config.route_file) if config.route_file else None
            self.admin = AdminService(engine, route_file=route_file, workers=config.workers, replicas=replicas)

    async def start(self) -> int:
        cfg = self.config
        if cfg.ingest_cpus:  # before gRPC and the pools start their threads: they inherit this thread's cores
            os.sched_setaffinity(0, cfg.ingest_cpus)
        await self.store.open()  # first: a restarted server waits here until its draining predecessor let go
        self.store.on_health_change = self._store_health
        options = [
            ("grpc.max_receive_message_length", cfg.max_receive_message_bytes),
            ("grpc.max_send_message_length", 4 << 20),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 1),
        ]
        if cfg.max_connection_age_s > 0:  # graceful ageing: GOAWAY, then the grace period for open streams
            options += [
                ("grpc.max_connection_age_ms", int(cfg.max_connection_age_s * 1e3)),
                ("grpc.max_connection_age_grace_ms", int(cfg.max_connection_age_grace_s * 1e3)),
            ]
        metrics = self.service.metrics
        # the metrics interceptor first (outermost): it sees the final status of every call, the refusals of the
        # auth interceptor after it included
        interceptors = [*([metrics.interceptor()] if metrics is not None else []), self.auth]
        server = grpc.aio.server(options=options, interceptors=interceptors)  # never compress video
        pb_grpc.add_BehaviorStreamServicer_to_server(self.service, server)
        pb_grpc.add_EventsServicer_to_server(self.events, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names: tuple[str, ...] = (
            SERVICE_NAME,
            EVENTS_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        if self.admin is not None:
            add_admin(server, self.admin)
            names += (ADMIN_SERVICE,)
        reflection.enable_server_reflection(names, server)
        credentials = transport.server_credentials(cfg.security)
        address = f"{cfg.host}:{cfg.port}"
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        if self.port == 0:
            raise RuntimeError(f"could not bind {address}")
        log.info("%s", transport.describe(cfg.security, f"{cfg.host}:{self.port}"))
        if metrics is not None:  # before anything runs: a taken metrics port fails the start with its name
            self._http = OperatorHttp(metrics, self.service, cfg.host, cfg.metrics_port)
            self.metrics_port = self._http.start()
        await self.service.start()
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(pump.run(), name=f"sink-{pump.sink.name}") for pump in self.sinks]
        if cfg.stats_interval_s > 0:
            self._tasks.append(loop.create_task(runtime.log_every(cfg.stats_interval_s, self.runtime_stats)))
        await server.start()
        if self.admin is not None and self.admin.route_file is not None:
            router, route_file = self.admin.router, self.admin.route_file
            self._route_task = asyncio.get_running_loop().create_task(
                route_file.follow(router.set_weights), name="route-file"
            )
        for name in ("", SERVICE_NAME, EVENTS_SERVICE):
            await _set_health(self.health, name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        return self.port

    def runtime_stats(self) -> dict[str, object]:
        """What the soak and the runtime log line report, beyond the process's own figures."""
        store = self.store.status()
        return {
            "streams": len(self.service.sessions),
            "subscribers": self.events.watchers,
            "episodes_away": self.service.episodes.away,
            "store_writable": store.writable,
            "store_backlog": store.backlog,
            "events_stored": store.events_stored,
            "sink_lag": sum(p.lag for p in self.sinks),
            "batches_timed_out": self.service.batcher.timed_out_batches,
        }

    def _store_health(self, status: StoreStatus) -> None:
        """A full disk or a read-only store: Events reports NOT_SERVING (cameras keep streaming), and back."""
        codes = health_pb2.HealthCheckResponse
        state = codes.SERVING if status.writable else codes.NOT_SERVING
        if self.service.draining is None:
            asyncio.ensure_future(_set_health(self.health, EVENTS_SERVICE, state))

    async def drain(self, timeout_s: float | None = None, reason: str = DRAIN_REASON) -> dict[str, object]:
        """SIGTERM: NOT_SERVING, no new streams, frames in flight answered and their events stored and delivered,
        then every stream ends with UNAVAILABLE and `reason`, and subscribers after their last event."""
        loop = asyncio.get_running_loop()
        timeout = self.config.drain_timeout_s if timeout_s is None else timeout_s
        started = loop.time()
        deadline = started + timeout
        streams, watchers = len(self.service.sessions), self.events.watchers
        log.info("draining: %d camera streams, %d event subscribers (at most %.1f s)", streams, watchers, timeout)
        for name in ("", SERVICE_NAME, EVENTS_SERVICE):
            await _set_health(self.health, name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.events.refuse_new(reason)
        self.service.begin_drain(reason)
        while self.service.sessions and loop.time() < deadline:
            await asyncio.sleep(0.02)
        forced = len(self.service.sessions)
        if forced:
            log.warning("drain: %d streams still busy after %.1f s; ending them now", forced, timeout)
            self.service.end_remaining(reason)
            while self.service.sessions and loop.time() < deadline + 3.0:  # a camera still writing: see refuse()
                await asyncio.sleep(0.02)
        streams_s = loop.time() - started
        stored = await self.store.flush()
        delivered = [await p.flush(max(0.5, deadline - loop.time())) for p in self.sinks]
        self.events.close_watchers("the server is shutting down")
        await wait_for_watchers(self.events, 2.0)
        summary: dict[str, object] = {
            "streams": streams,
            "streams_forced": forced,
            "streams_s": round(streams_s, 3),
            "events_stored": stored,
            "sinks_caught_up": all(delivered),
            "subscribers": watchers,
            "drain_s": round(loop.time() - started, 3),
            "last_cursor": self.store.last_cursor,
        }
        log.info("drained: %s", summary)
        return summary

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def stop(self, grace: float = 2.0) -> None:
        for name in ("", SERVICE_NAME, EVENTS_SERVICE):
            await _set_health(self.health, name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._route_task is not None:
            self._route_task.cancel()
        if self._server is not None:
            await self._server.stop(grace)
        await self.service.close()
        if self._http is not None:
            self._http.stop()
        for task in self._tasks:
            task.cancel()
        for pump in self.sinks:
            await pump.stop()
        await self.store.close()


async def _set_health(servicer: object, service: str, status: int) -> None:
    result = servicer.set(service, status)  # type: ignore[attr-defined]
    if asyncio.iscoroutine(result):
        await result

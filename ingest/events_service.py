"""The Events service: WatchEvents (the stored events by cursor, then live) and ListEvents (history by query)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from ingest import wire
from ingest.access import AccessDenied, AccessPolicy, Allowed, devices_to_read, everyone
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from streaming.store import EventStore

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Events"].full_name
WATCH_PAGE = 500  # events read from the store per step of a subscriber catching up
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class EventsService(pb_grpc.EventsServicer):
    """Reads the event store for the product's backend; `access` decides which devices a caller may read."""

    def __init__(self, store: EventStore, access: AccessPolicy = everyone) -> None:
        self.store = store
        self.access = access
        self.watchers = 0  # subscribers connected now
        self._refusing: str | None = None  # set while draining: new subscriptions are refused with this reason
        self._closing: str | None = None  # set at the end of a drain: caught-up subscribers end with this reason

    def refuse_new(self, reason: str) -> None:
        self._refusing = reason

    def close_watchers(self, reason: str) -> None:
        """End every subscriber once it has everything stored so far (call after the last event was stored)."""
        self._closing = reason
        self.store.wake()

    async def _devices(self, requested: list[str], context: grpc.aio.ServicerContext) -> Allowed:
        try:
            return devices_to_read(requested, self.access(context))
        except AccessDenied as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable: abort raises")

    async def WatchEvents(  # noqa: N802 - gRPC method name
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EventRecord]:
        if self._refusing is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self._refusing)
        devices = await self._devices(list(request.device_ids), context)
        store = self.store
        delivered = store.last_cursor if request.from_latest else request.after_cursor
        scanned = delivered
        self.watchers += 1
        try:
            while True:
                try:
                    records, scanned = await store.read_after(scanned, devices, WATCH_PAGE)
                except Exception as exc:  # noqa: BLE001 - an unreadable disk ends this call, not the server
                    log.exception("WatchEvents: reading the store failed")
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        f"the event store cannot be read now ({exc}); reconnect with after_cursor={delivered}",
                    )
                for record in records:
                    yield wire.event_record(record)
                    delivered = record.cursor
                if len(records) >= WATCH_PAGE:
                    continue  # catching up: read on without waiting
                if self._closing is not None and scanned >= store.last_cursor:
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        f"{self._closing}; reconnect with after_cursor={delivered} (the cursor of the last event "
                        "you handled): nothing is lost",
                    )
                await store.wait_beyond(scanned)
        finally:
            self.watchers -= 1

    async def ListEvents(  # noqa: N802 - gRPC method name
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        devices = await self._devices(list(request.device_ids), context)
        size = request.page_size or DEFAULT_PAGE_SIZE
        if size > MAX_PAGE_SIZE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size {size}: at most {MAX_PAGE_SIZE}")
        since, until = request.since_unix_us, request.until_unix_us
        if since < 0 or until < 0 or (until and until <= since):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"time range [{since}, {until}) is empty or negative: until_unix_us must be after since_unix_us "
                "(0 = open)",
            )
        try:
            records = await self.store.query(
                devices, since_us=since, until_us=until, after_cursor=request.after_cursor, limit=size + 1
            )
        except Exception as exc:  # noqa: BLE001 - a failing disk answers this call, it does not take the server
            log.exception("ListEvents failed")
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the event store cannot be read now: {exc}")
        more = len(records) > size
        page = records[:size]
        return pb.ListEventsResponse(
            events=[wire.event_record(r) for r in page], next_cursor=page[-1].cursor if more else 0
        )


async def wait_for_watchers(service: EventsService, timeout_s: float) -> None:
    """After close_watchers(): give subscribers up to `timeout_s` to read the last events and go."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while service.watchers and loop.time() < deadline:
        await asyncio.sleep(0.02)

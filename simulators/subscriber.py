"""A backend-side subscriber: WatchEvents from a cursor, reconnecting with backoff and resuming after its cursor."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import RETRYABLE, Backoff
from simulators.credentials import ClientSecurity, open_channel

SUBSCRIBER_BACKOFF = Backoff(initial_s=0.2, max_s=2.0)


@dataclass
class WatchReport:
    """Everything one subscriber received, in order, across its reconnects."""

    records: list[pb.EventRecord] = field(default_factory=list)
    cursor: int = 0  # the cursor of the last record handled: where a reconnect resumes
    connections: int = 0
    stream_errors: list[str] = field(default_factory=list)
    error: str | None = None  # set when it gave up

    def keys(self) -> list[str]:
        """(event_id/STATE) of every record, in arrival order: a repeated key is a duplicate delivery."""
        return [f"{r.event.event_id}/{pb.EventState.Name(r.event.state)}" for r in self.records]


async def watch_events(
    target: str,
    *,
    after_cursor: int = 0,
    from_latest: bool = False,
    device_ids: Sequence[str] = (),
    reconnect: Backoff | None = SUBSCRIBER_BACKOFF,
    stop: asyncio.Event | None = None,
    on_record: Callable[[pb.EventRecord], None] | None = None,
    channel_options: Sequence[tuple[str, object]] = (),
    security: ClientSecurity | None = None,
) -> WatchReport:
    """Follow the server's event log from `after_cursor` (or from now: `from_latest`, until a first event arrives)
    until `stop` is set or the stream fails for good; reconnects resume after the last event handled."""
    report = WatchReport(cursor=after_cursor)
    stop = stop or asyncio.Event()
    rng = random.Random(time.monotonic_ns())
    attempt = 0
    options = (reconnect or SUBSCRIBER_BACKOFF).channel_options() + list(channel_options)
    async with open_channel(target, security, options) as channel:
        stub = pb_grpc.EventsStub(channel)
        while not stop.is_set():
            report.connections += 1
            request = pb.WatchEventsRequest(
                after_cursor=report.cursor, device_ids=list(device_ids), from_latest=from_latest and not report.records
            )
            call = stub.WatchEvents(request)
            stopper = asyncio.ensure_future(stop.wait())
            stopper.add_done_callback(_cancel(call))
            try:
                async for record in call:
                    attempt = 0
                    report.records.append(record)
                    report.cursor = record.cursor
                    if on_record is not None:
                        on_record(record)
                return report  # the server ended the stream with OK (it does not, today)
            except asyncio.CancelledError:
                if stop.is_set():  # our own cancel (grpc's asyncio call raises CancelledError for it)
                    return report
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED and stop.is_set():
                    return report
                report.error = f"{exc.code().name}: {exc.details()}"
                report.stream_errors.append(report.error)
                if reconnect is None or exc.code() not in RETRYABLE:
                    return report
                if reconnect.max_attempts and attempt >= reconnect.max_attempts:
                    return report
            finally:
                stopper.cancel()
            try:
                await asyncio.wait_for(stop.wait(), reconnect.delay_s(attempt, rng))
            except TimeoutError:
                pass
            attempt += 1
        report.error = None
    return report


def _cancel(call: grpc.aio.UnaryStreamCall) -> Callable[[object], None]:
    return lambda _: call.cancel()


async def list_events(
    target: str,
    *,
    device_ids: Sequence[str] = (),
    since_unix_us: int = 0,
    until_unix_us: int = 0,
    page_size: int = 0,
    security: ClientSecurity | None = None,
    connect_timeout_s: float = 30.0,
) -> list[pb.EventRecord]:
    """Every stored event in the range, following the pages; waits up to `connect_timeout_s` for a server that is
    (re)starting instead of failing at once."""
    out: list[pb.EventRecord] = []
    async with open_channel(target, security, SUBSCRIBER_BACKOFF.channel_options()) as channel:
        stub = pb_grpc.EventsStub(channel)
        cursor = 0
        while True:
            page = await stub.ListEvents(
                pb.ListEventsRequest(
                    device_ids=list(device_ids),
                    since_unix_us=since_unix_us,
                    until_unix_us=until_unix_us,
                    page_size=page_size,
                    after_cursor=cursor,
                ),
                wait_for_ready=True,
                timeout=connect_timeout_s,
            )
            out.extend(page.events)
            if not page.next_cursor:
                return out
            cursor = page.next_cursor

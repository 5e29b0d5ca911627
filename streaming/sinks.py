"""Event sinks: the stored events delivered to a message broker, each sink from its own cursor, at least once.

A sink only publishes; the pump reads the store after the sink's cursor, publishes in order, and moves the cursor
(kept in the store) only once the broker acknowledged. A broker that is down just makes the pump wait and retry:
the events wait in the store, and a restart of either side resumes from the cursor.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import logging
import random
from collections.abc import Sequence
from urllib.parse import urlsplit

from streaming.store import EventStore, StoredEvent

log = logging.getLogger(__name__)

#: URL scheme -> "module:Class" of the sink (imported only when configured: a broker client is an optional extra)
SINKS: dict[str, str] = {"nats": "streaming.nats_sink:NatsJetStreamSink"}


class EventSink(abc.ABC):
    """One broker destination. `name` keys its cursor in the store, so keep it stable across restarts."""

    name: str = "sink"

    @abc.abstractmethod
    async def connect(self) -> None:
        """(Re)connect; raises if the broker cannot be reached."""

    @abc.abstractmethod
    async def publish(self, records: Sequence[StoredEvent]) -> None:
        """Publish in order; return only once the broker acknowledged every record, else raise."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""


def create_sink(url: str) -> EventSink:
    """A sink from its URL (e.g. nats://127.0.0.1:4222); the scheme picks the kind."""
    scheme = urlsplit(url).scheme
    if scheme not in SINKS:
        raise ValueError(f"sink {url!r}: scheme {scheme or '(none)'!r} is not one of {sorted(SINKS)}")
    module, _, cls = SINKS[scheme].partition(":")
    try:
        sink_class = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ValueError(f"sink {url!r} needs a broker client that is not installed: {exc}") from None
    sink: EventSink = sink_class(url)
    return sink


class SinkPump:
    """Moves events from the store to one sink, from the sink's own cursor, retrying with backoff."""

    def __init__(
        self,
        store: EventStore,
        sink: EventSink,
        *,
        batch: int = 256,
        backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.store = store
        self.sink = sink
        self.batch = batch
        self.backoff_s = backoff_s
        self.cursor = 0  # the last event the broker acknowledged
        self.published = 0  # since start (a re-published event after a failure counts again)
        self.failures = 0  # publish or connect attempts that failed
        self.connected = False
        self._stopped = False

    @property
    def lag(self) -> int:
        """Events stored but not yet acknowledged by the broker."""
        return max(0, self.store.last_cursor - self.cursor)

    async def run(self) -> None:
        self.cursor = await self.store.sink_cursor(self.sink.name)
        log.info("sink %s: delivering from cursor %d (%d waiting)", self.sink.name, self.cursor, self.lag)
        attempt = 0
        while not self._stopped:
            try:
                if not self.connected:
                    await self.sink.connect()
                    self.connected = True
                    if attempt:
                        log.warning("sink %s: broker reachable again; replaying %d events", self.sink.name, self.lag)
                records, _ = await self.store.read_after(self.cursor, None, self.batch)
                if not records:
                    await self.store.wait_beyond(self.cursor, timeout=1.0)
                    continue
                await self.sink.publish(records)
                self.cursor = records[-1].cursor
                self.published += len(records)
                self.store.save_cursor(self.sink.name, self.cursor)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broker outage must never reach the cameras
                self.failures += 1
                if self.connected or attempt == 0:
                    log.warning(
                        "sink %s: broker unreachable (%s: %s); %d events wait in the store, retrying",
                        self.sink.name,
                        type(exc).__name__,
                        exc,
                        self.lag,
                    )
                self.connected = False
                try:
                    await self.sink.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass
                low, high = self.backoff_s
                await asyncio.sleep(random.uniform(low, min(high, low * 2**attempt)))  # full jitter
                attempt += 1

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged everything stored so far (a drain); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        target = self.store.last_cursor
        while self.cursor < target:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        self._stopped = True
        await self.sink.close()

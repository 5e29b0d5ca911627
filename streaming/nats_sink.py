"""The NATS JetStream sink: each stored event published to a durable stream, de-duplicated by its key.

Layout: stream `PETSTREAM_EVENTS` (file storage) holds subjects `petstream.events.<device>.<behavior>.<state>`
(state `started` / `ended`; device and behavior escaped to subject tokens, see `subject_token`). The payload is the
event as JSON; header `Nats-Msg-Id` is `<event_id>/<STATE>`, so JetStream drops a re-publish (after a broker or
server restart) within its duplicate window, and consumers de-duplicate on the same key beyond it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from streaming.sinks import EventSink
from streaming.store import StoredEvent

DEFAULT_STREAM = "PETSTREAM_EVENTS"
DEFAULT_PREFIX = "petstream.events"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def subject_token(text: str) -> str:
    """One subject token for any text: bytes outside [A-Za-z0-9_-] become %XX (so '.', '*', '>' and spaces are
    safe and the mapping is reversible with urllib.parse.unquote)."""
    return "".join(ch if ch in _SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text) or "%00"


def subject(prefix: str, record: StoredEvent) -> str:
    e = record.event
    return f"{prefix}.{subject_token(e.device_id)}.{subject_token(e.behavior)}.{e.state.lower()}"


def payload(record: StoredEvent) -> bytes:
    e = record.event
    return json.dumps(
        {
            "event_id": e.event_id,
            "state": e.state,
            "device_id": e.device_id,
            "behavior": e.behavior,
            "confidence": round(e.confidence, 6),
            "pts_us": e.pts_us,
            "frame_seq": e.frame_seq,
            "start_pts_us": e.start_pts_us,
            "end_pts_us": e.end_pts_us,
            "time_unix_us": record.time_us,
            "session_id": record.session_id,
            "cursor": record.cursor,
        },
        separators=(",", ":"),
    ).encode()


class NatsJetStreamSink(EventSink):
    """nats://host:port[?stream=NAME&prefix=SUBJECT.PREFIX&duplicate_window_s=120&max_age_days=30]"""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"stream", "prefix", "duplicate_window_s", "max_age_days", "ack_timeout_s"}
        if unknown:
            raise ValueError(
                f"sink {url!r}: unknown option(s) {sorted(unknown)}; allowed: stream, prefix, duplicate_window_s, "
                "max_age_days, ack_timeout_s"
            )
        self.server = f"nats://{parts.netloc or '127.0.0.1:4222'}"
        self.stream = query.get("stream", DEFAULT_STREAM)
        self.prefix = query.get("prefix", DEFAULT_PREFIX)
        self.duplicate_window_s = float(query.get("duplicate_window_s", 120))
        self.max_age_days = float(query.get("max_age_days", 30))
        self.ack_timeout_s = float(query.get("ack_timeout_s", 5))
        self.name = f"nats:{self.stream}"
        self._nc: Any = None
        self._js: Any = None

    async def connect(self) -> None:
        import nats
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        # no client-side reconnect: the pump owns retrying, from its cursor, so nothing hides in a client buffer
        self._nc = await nats.connect(
            self.server, allow_reconnect=False, connect_timeout=2, name="petstream-event-sink", error_cb=_quiet
        )
        self._js = self._nc.jetstream(timeout=self.ack_timeout_s)
        try:
            await self._js.stream_info(self.stream)  # an operator-made stream is used as it is
        except NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.prefix}.>"],
                    storage=StorageType.FILE,
                    duplicate_window=self.duplicate_window_s,
                    max_age=self.max_age_days * 86400 if self.max_age_days else None,
                )
            )

    async def publish(self, records: Sequence[StoredEvent]) -> None:
        if self._js is None:
            raise ConnectionError("not connected")
        js = self._js
        # one connection keeps them in order on the wire; all acks are awaited before the cursor moves
        await asyncio.gather(
            *(
                js.publish(
                    subject(self.prefix, r),
                    payload(r),
                    timeout=self.ack_timeout_s,
                    stream=self.stream,
                    headers={"Nats-Msg-Id": r.key, "Content-Type": "application/json"},
                )
                for r in records
            )
        )

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            await nc.close()


async def _quiet(exc: Exception) -> None:
    """nats-py reports connection errors here as well as raising them; the pump logs them once per outage."""

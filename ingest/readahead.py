"""Reads a camera's messages ahead of its decoder (bounded), so reading and decoding overlap and batch."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from protos.petstream.v1 import petstream_pb2 as pb


def message_bytes(msg: pb.CameraMessage) -> int:
    """What a message costs the read-ahead budget: its video bytes (other kinds are small)."""
    return len(msg.chunk.data) if msg.HasField("chunk") else 64


class ReadAhead:
    """A bounded buffer between the gRPC stream and the decoder.

    `run()` reads messages while the decoder works and stops reading (so gRPC flow control pushes back on the
    camera) once `max_messages` or `max_bytes` are buffered. `batches()` hands the decoder everything
    buffered, up to `max_batch` messages at a time, in arrival order: one decode job per batch instead of one
    per chunk. An error of the stream is raised from `batches()` after what arrived before it.
    `idle_since_ns` tells how long the camera has kept the stream open without sending a chunk, and `drain()`
    lets a camera that is still writing finish before the stream ends with a status.
    """

    def __init__(
        self, messages: AsyncIterator[pb.CameraMessage], *, max_messages: int, max_bytes: int, max_batch: int
    ) -> None:
        if min(max_messages, max_bytes, max_batch) < 1:
            raise ValueError("ReadAhead limits must be >= 1")
        self._messages = messages
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self._buffer: deque[tuple[pb.CameraMessage, int, int]] = deque()  # (message, bytes, arrival ns)
        self._bytes = 0
        self._done = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._draining = False
        self._stopped = False
        self.discarded = 0  # chunks read but never handed on (drain, stop): counted by the session
        self._last_arrival_ns = time.monotonic_ns()
        #: monotonic time since which the camera has sent no chunk while this reader waited for it; None while the
        #: reader is not waiting on the camera (buffer full: flow control holds the camera back) or has finished
        self.idle_since_ns: int | None = self._last_arrival_ns

    def _full(self) -> bool:
        return len(self._buffer) >= self.max_messages or self._bytes >= self.max_bytes

    async def run(self) -> None:
        """Read until the camera half-closes or the stream fails; never raises (the error goes to batches())."""
        try:
            async for msg in self._messages:
                now = self._last_arrival_ns = time.monotonic_ns()
                if self._draining:
                    self.discarded += msg.HasField("chunk")
                    continue  # the stream is ending: what still arrives is only let through, not kept
                if msg.HasField("chunk"):
                    self.idle_since_ns = now
                size = message_bytes(msg)
                self._buffer.append((msg, size, now))
                self._bytes += size
                self._ready.set()
                if self._full():
                    self.idle_since_ns = None
                    while self._full() and not self._draining:
                        self._room.clear()
                        await self._room.wait()
                    self.idle_since_ns = time.monotonic_ns()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which reports it
            self._error = exc
        finally:
            self._done = True
            self.idle_since_ns = None
            self._ready.set()

    async def drain(self, *, quiet_s: float = 0.25, max_s: float = 2.0) -> None:
        """Discard what is buffered and what still arrives until the camera half-closes, pauses for `quiet_s`, or
        `max_s` pass, so that the status the stream then ends with reaches it. The pause is long (a quarter second)
        because a busy client stalls between writes: a camera that merely stalled would be hit mid-write.

        Why: grpc's asyncio client reports INTERNAL ("Internal error from Core") instead of the server's status when
        one of its writes is in flight as the status arrives (grpc/grpc#36066); a camera that writes chunks right
        after a refused open would lose the reason. `run()` must be running."""
        self._draining = True
        self.discarded += sum(msg.HasField("chunk") for msg, _, _ in self._buffer)
        self._buffer.clear()
        self._bytes = 0
        self._room.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        while not self._done:
            now = loop.time()
            quiet_at = now + quiet_s - (time.monotonic_ns() - self._last_arrival_ns) / 1e9
            if now >= deadline or now >= quiet_at:
                return
            await asyncio.sleep(min(quiet_at, deadline) - now)

    def stop(self) -> int:
        """Hand out nothing more (a draining server): batches() ends; what is buffered is discarded, and what still
        arrives is read and discarded so the camera is not held back. Returns the chunks discarded now."""
        discarded = sum(msg.HasField("chunk") for msg, _, _ in self._buffer)
        self.discarded += discarded
        self._stopped = self._draining = True
        self._buffer.clear()
        self._bytes = 0
        self._room.set()
        self._ready.set()
        return discarded

    async def batches(self) -> AsyncIterator[list[tuple[pb.CameraMessage, int]]]:
        """(message, arrival ns) of what is buffered, oldest first, `max_batch` at most; ends when the stream does."""
        while not self._stopped:
            while not self._buffer and not self._done and not self._stopped:
                self._ready.clear()
                await self._ready.wait()
            if not self._buffer:
                if self._error is not None:
                    raise self._error
                return
            batch: list[tuple[pb.CameraMessage, int]] = []
            while self._buffer and len(batch) < self.max_batch:
                msg, size, arrival_ns = self._buffer.popleft()
                self._bytes -= size
                batch.append((msg, arrival_ns))
            self._room.set()
            yield batch


async def drain_unread(messages: AsyncIterator[Any], name: str = "refused-stream") -> None:
    """Before ending a call with a status, read (and discard) what the client is still writing until it pauses
    (1/4 s), half-closes or 2 s pass: an aio client with a write in flight would see INTERNAL instead of the status
    (grpc/grpc#36066)."""
    ahead = ReadAhead(messages, max_messages=1, max_bytes=1, max_batch=1)
    reader = asyncio.create_task(ahead.run(), name=name)
    try:
        await ahead.drain()
    finally:
        reader.cancel()

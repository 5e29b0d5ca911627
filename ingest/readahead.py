"""Reads a camera's messages ahead of its decoder (bounded), so reading and decoding overlap and batch."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator

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

    def _full(self) -> bool:
        return len(self._buffer) >= self.max_messages or self._bytes >= self.max_bytes

    async def run(self) -> None:
        """Read until the camera half-closes or the stream fails; never raises (the error goes to batches())."""
        try:
            async for msg in self._messages:
                size = message_bytes(msg)
                self._buffer.append((msg, size, time.monotonic_ns()))
                self._bytes += size
                self._ready.set()
                while self._full():
                    self._room.clear()
                    await self._room.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which reports it
            self._error = exc
        finally:
            self._done = True
            self._ready.set()

    async def batches(self) -> AsyncIterator[list[tuple[pb.CameraMessage, int]]]:
        """(message, arrival ns) of what is buffered, oldest first, `max_batch` at most; ends when the stream does."""
        while True:
            while not self._buffer and not self._done:
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

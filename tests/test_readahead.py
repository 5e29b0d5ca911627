"""ReadAhead: order kept, batches bounded, reading bounded, and a stream error surfaces after what came before it."""

from __future__ import annotations

import asyncio

import pytest

from ingest.readahead import ReadAhead
from protos.petstream.v1 import petstream_pb2 as pb


def chunk(i: int, size: int = 10) -> pb.CameraMessage:
    return pb.CameraMessage(chunk=pb.VideoChunk(data=bytes([i % 256]) * size, seq=i))


async def source(n: int, pulled: list[int], fail_after: int | None = None, size: int = 10):  # noqa: ANN201
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise ConnectionError("camera went away")
        pulled.append(i)
        yield chunk(i, size)


def test_batches_keep_order_and_respect_max_batch() -> None:
    async def main() -> list[list[int]]:
        pulled: list[int] = []
        ahead = ReadAhead(source(20, pulled), max_messages=64, max_bytes=1 << 20, max_batch=6)
        task = asyncio.create_task(ahead.run())
        await asyncio.sleep(0.05)  # let the reader get everything before the consumer starts
        out = [[m.chunk.seq for m, _ in batch] async for batch in ahead.batches()]
        await task
        return out

    batches = asyncio.run(main())
    assert [s for b in batches for s in b] == list(range(20))
    assert max(len(b) for b in batches) == 6
    assert len(batches) == 4  # 6 + 6 + 6 + 2: what piled up is handed over in few jobs


def test_reading_stops_at_the_message_limit_until_the_consumer_takes() -> None:
    async def main() -> tuple[int, int]:
        pulled: list[int] = []
        ahead = ReadAhead(source(50, pulled), max_messages=5, max_bytes=1 << 20, max_batch=50)
        task = asyncio.create_task(ahead.run())
        await asyncio.sleep(0.05)
        before = len(pulled)
        seen = sum([len(batch) async for batch in ahead.batches()])
        await task
        return before, seen

    before, seen = asyncio.run(main())
    assert before == 5  # flow control: the camera is not read further while 5 messages wait
    assert seen == 50


def test_reading_stops_at_the_byte_limit() -> None:
    async def main() -> int:
        pulled: list[int] = []
        ahead = ReadAhead(source(50, pulled, size=1000), max_messages=100, max_bytes=3000, max_batch=50)
        task = asyncio.create_task(ahead.run())
        await asyncio.sleep(0.05)
        task.cancel()
        return len(pulled)

    assert asyncio.run(main()) == 3


def test_a_stream_error_is_raised_after_the_messages_before_it() -> None:
    async def main() -> list[int]:
        pulled: list[int] = []
        ahead = ReadAhead(source(10, pulled, fail_after=3), max_messages=64, max_bytes=1 << 20, max_batch=2)
        task = asyncio.create_task(ahead.run())
        got: list[int] = []
        with pytest.raises(ConnectionError, match="camera went away"):
            async for batch in ahead.batches():
                got += [m.chunk.seq for m, _ in batch]
        await task
        return got

    assert asyncio.run(main()) == [0, 1, 2]


def test_limits_are_validated() -> None:
    async def empty():  # noqa: ANN202
        return
        yield

    with pytest.raises(ValueError, match=">= 1"):
        ReadAhead(empty(), max_messages=0, max_bytes=1, max_batch=1)


def test_idle_clock_counts_only_time_waiting_for_the_camera_and_restarts_at_each_chunk() -> None:
    async def main() -> tuple[bool, bool, bool, bool]:
        gate = asyncio.Event()

        async def camera():  # noqa: ANN202
            yield chunk(1)
            await gate.wait()
            yield pb.CameraMessage(update=pb.BehaviorUpdate())  # not a chunk: the idle clock keeps running
            await asyncio.sleep(3600)

        ahead = ReadAhead(camera(), max_messages=8, max_bytes=1 << 20, max_batch=8)
        task = asyncio.create_task(ahead.run())
        await asyncio.sleep(0.05)
        first = ahead.idle_since_ns
        gate.set()
        await asyncio.sleep(0.05)
        kept = ahead.idle_since_ns == first
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return first is not None, kept, ahead.idle_since_ns is None, ahead._done

    waiting, kept, cleared, done = asyncio.run(main())
    assert waiting and kept and cleared and done


def test_a_full_buffer_is_not_idle_time() -> None:
    async def main() -> object:
        ahead = ReadAhead(source(50, []), max_messages=2, max_bytes=1 << 20, max_batch=50)
        task = asyncio.create_task(ahead.run())
        await asyncio.sleep(0.05)  # blocked on room: flow control is holding the camera back
        since = ahead.idle_since_ns
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return since

    assert asyncio.run(main()) is None


def test_drain_discards_what_arrives_and_returns_once_the_camera_pauses() -> None:
    async def main() -> tuple[int, float, list]:
        pulled: list[int] = []

        async def burst_then_pause():  # noqa: ANN202
            async for m in source(30, pulled):
                yield m
            await asyncio.sleep(3600)

        ahead = ReadAhead(burst_then_pause(), max_messages=4, max_bytes=1 << 20, max_batch=4)
        task = asyncio.create_task(ahead.run())
        await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ahead.drain(quiet_s=0.05, max_s=5.0)
        took = loop.time() - start
        left = list(ahead._buffer)
        task.cancel()
        return len(pulled), took, left

    pulled, took, left = asyncio.run(main())
    assert pulled == 30, "everything the camera wrote was read (so none of its writes is left in flight)"
    assert took < 2.0 and left == [], "returned at the pause, nothing kept"

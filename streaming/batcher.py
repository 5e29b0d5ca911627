"""The cross-camera batcher: one bounded queue per stream, fair batches, max size and max wait."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from inference.types import VQARequest, VQAResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPolicy:
    """How batches are formed. Every field has a default; validated on creation."""

    max_batch: int = 8  # most frames in one model call
    max_wait_ms: float = 50.0  # the oldest queued frame waits at most this long for company
    per_device_queue: int = 4  # frames queued per stream (camera); live policy: a full queue drops its oldest
    stale_ms: float = 10_000.0  # frames queued longer than this are dropped, not run
    deadline_s: float = 30.0  # a model call that takes longer fails its frames (and only them); 0 = no deadline

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"BatchPolicy.max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"BatchPolicy.max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.per_device_queue < 1:
            raise ValueError(f"BatchPolicy.per_device_queue must be >= 1, got {self.per_device_queue}")
        if self.stale_ms <= 0:
            raise ValueError(f"BatchPolicy.stale_ms must be > 0, got {self.stale_ms}")
        if self.deadline_s < 0:
            raise ValueError(f"BatchPolicy.deadline_s must be >= 0 (0 = none), got {self.deadline_s}")


@dataclass(frozen=True)
class Dropped:
    """Outcome of a work item that never reached the model, with the reason."""

    reason: str  # "backpressure" (queue full, oldest dropped), "stale", "shutdown"


class BatchTimeout(TimeoutError):
    """The model did not answer a batch within BatchPolicy.deadline_s: each of its frames fails with this."""


Outcome = VQAResult | Dropped | BaseException
#: most model threads left behind in a hung call before later batches stop getting a fresh thread
MAX_STUCK_THREADS = 4


@dataclass(frozen=True)
class WorkItem:
    """One frame waiting for the model; `on_done` is called on the event loop with its outcome.

    `stream` names the queue: one per camera stream (its session id), never the device id, because two streams of
    one device (a camera reconnecting before its old stream is declared dead) are two independent streams.
    `request` may be a function that builds it: it is then called in the model's executor just before the batch
    runs (a late-bound picture is scaled only if the model gets to it)."""

    stream: str
    request: VQARequest | Callable[[], VQARequest]
    enqueued_ns: int
    on_done: Callable[[Outcome], None]


def plan_batch(queues: Mapping[str, Sequence[WorkItem]], max_batch: int, start: int = 0) -> list[str]:
    """Pick the next batch fairly: round-robin over streams (from `start` in queue order), oldest first.

    Returns the stream key of each item to take, in batch order; a pure function of the queue state.
    """
    streams = [k for k in queues if queues[k]]
    if not streams:
        return []
    start %= len(streams)
    order = streams[start:] + streams[:start]
    taken = dict.fromkeys(order, 0)
    plan: list[str] = []
    while len(plan) < max_batch:
        progressed = False
        for stream in order:
            if len(plan) == max_batch:
                break
            if taken[stream] < len(queues[stream]):
                taken[stream] += 1
                plan.append(stream)
                progressed = True
        if not progressed:
            break
    return plan


class Batcher:
    """Collects frames from all streams and runs them through `run_batch` in an executor, one batch at a time."""

    def __init__(
        self,
        run_batch: Callable[[list[VQARequest]], list[VQAResult]],
        policy: BatchPolicy,
        executor: Executor,
        max_inflight: int = 1,
        new_executor: Callable[[], Executor] | None = None,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"Batcher.max_inflight must be >= 1, got {max_inflight}")
        self.policy = policy
        self._run_batch = run_batch
        # batches on the model at once: 1 for a local engine; a remote tier with several replicas takes more.
        # Outcomes are still delivered in batch order, so a camera sees its frames answered in order.
        self.max_inflight = max_inflight
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot = asyncio.Event()
        self._next_seq = 0
        self._deliver_seq = 0
        self._finished: dict[int, tuple[list[WorkItem], list[VQAResult] | BaseException]] = {}
        self.executor = executor  # where model calls run; replaced when a call hangs past the deadline
        self._new_executor = new_executor
        self.failed_batches = 0  # the engine raised
        self.timed_out_batches = 0  # the engine did not answer within the deadline
        self.stuck_threads = 0  # model threads still inside a call that timed out
        self._queues: dict[str, deque[WorkItem]] = {}
        self._wake = asyncio.Event()
        self._space = asyncio.Event()  # replaced after each batch: set wakes everyone waiting for room
        self._cursor = 0
        self._closed = False
        self.batches_run = 0
        self.frames_run = 0
        self.dropped_total = 0  # frames dropped for backpressure or staleness, all cameras
        self._waits_ms: list[float] = []  # queue wait of each batch's oldest frame since take_load_sample()
        self.service_ms = 0.0  # moving average of one model call's wall time
        #: metrics hook, once per model call: (streams, the pictures the model looked at, seconds)
        self.on_batch: Callable[[list[str], list[object], float], None] | None = None

    def submit(self, item: WorkItem) -> None:
        """Queue a frame; a full stream queue drops (and reports) its oldest frame instead of blocking."""
        if self._closed:
            item.on_done(Dropped("shutdown"))
            return
        queue = self._queues.setdefault(item.stream, deque())
        if len(queue) >= self.policy.per_device_queue:
            self.dropped_total += 1
            queue.popleft().on_done(Dropped("backpressure"))
        queue.append(item)
        self._wake.set()

    def refresh(self, item: WorkItem) -> bool:
        """Give this stream's newest waiting frame a fresher picture (late binding); False if none is waiting.

        The slot keeps its place and queue time (batching and staleness do not move); only the picture and its
        callback change, so a live camera's frame is as new as possible when the model gets to it. The replaced
        frame's callback is never called: the slot is answered once, through the new one.
        """
        queue = self._queues.get(item.stream)
        if not queue or self._closed:
            return False
        queue[-1] = WorkItem(item.stream, item.request, queue[-1].enqueued_ns, item.on_done)
        return True

    async def wait_for_room(self, stream: str) -> None:
        """For the WAIT policy (recorded clips): return once this stream's queue has room."""
        while not self._closed and len(self._queues.get(stream, ())) >= self.policy.per_device_queue:
            await self._space.wait()

    def take_load_sample(self) -> tuple[list[float], float]:
        """(queue wait of each batch's oldest frame since the last call, batch service ms) for the governor."""
        waits, self._waits_ms = self._waits_ms, []
        return waits, self.service_ms

    def queued(self, stream: str | None = None) -> int:
        if stream is not None:
            return len(self._queues.get(stream, ()))
        return sum(len(q) for q in self._queues.values())

    def forget(self, stream: str) -> None:
        """Drop a departed stream's queue (its items are reported as shutdown)."""
        for item in self._queues.pop(stream, ()):
            item.on_done(Dropped("shutdown"))

    async def run(self) -> None:
        """Form and run batches until close(); model work happens in the executor, never on the loop."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self.queued() and not self._closed:
                await self._wait_for_company()
                # several batches in flight: a free slot first, and frames keep queueing (and being refreshed)
                # while every slot is busy
                while self.max_inflight > 1 and len(self._tasks) >= self.max_inflight and not self._closed:
                    self._slot.clear()
                    await self._slot.wait()
                batch = self._take_batch()
                if batch and self.max_inflight == 1:
                    await self._run(loop, batch, self._take_seq())
                elif batch:
                    task = loop.create_task(self._run(loop, batch, self._take_seq()), name="model-batch")
                    self._tasks.add(task)
                    task.add_done_callback(self._task_done)
                del batch  # idle from here on: the last batch's pictures and callbacks are not kept alive

    async def _wait_for_company(self) -> None:
        policy = self.policy
        oldest = min(q[0].enqueued_ns for q in self._queues.values() if q)
        deadline = oldest + policy.max_wait_ms * 1e6
        while self.queued() < policy.max_batch and not self._closed:
            remaining = (deadline - time.monotonic_ns()) / 1e9
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[WorkItem]:
        now = time.monotonic_ns()
        stale_before = now - self.policy.stale_ms * 1e6
        for queue in self._queues.values():
            while queue and queue[0].enqueued_ns < stale_before:
                self.dropped_total += 1
                queue.popleft().on_done(Dropped("stale"))
        plan = plan_batch(self._queues, self.policy.max_batch, self._cursor)
        self._cursor += 1
        batch = [self._queues[stream].popleft() for stream in plan]
        if batch and len(self._waits_ms) < 10_000:
            self._waits_ms.append((now - min(i.enqueued_ns for i in batch)) / 1e6)
        for stream in [k for k, q in self._queues.items() if not q]:
            del self._queues[stream]
        self._space.set()
        self._space = asyncio.Event()
        return batch

    def _take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq - 1

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot.set()
        self._wake.set()

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[WorkItem], seq: int) -> None:
        started = time.monotonic_ns()
        outcome: list[VQAResult] | BaseException
        call = loop.run_in_executor(self.executor, self._run_prepared, [i.request for i in batch])
        deadline = self.policy.deadline_s or None
        try:
            requests, results = await asyncio.wait_for(asyncio.shield(call), deadline)
            if len(results) != len(batch):
                raise RuntimeError(f"engine returned {len(results)} results for {len(batch)} requests")
            outcome = results
        except TimeoutError as exc:
            if call.done():  # the engine's own timeout (a remote tier's, say), not the deadline: a failed batch
                self.failed_batches += 1
                log.error("model batch of %d failed: %r", len(batch), exc)
                outcome = exc
            else:
                self._abandon(call)
                outcome = BatchTimeout(
                    f"the model did not answer its batch of {len(batch)} frames within the deadline of {deadline:g} s"
                )
                log.error("%s; the frames of that batch fail, later batches go on", outcome)
        except Exception as exc:  # the engine failing must not kill the batcher: report to each camera
            self.failed_batches += 1
            log.exception("model batch of %d failed", len(batch))
            outcome = exc
        else:
            elapsed_ms = (time.monotonic_ns() - started) / 1e6
            self.service_ms = elapsed_ms if not self.batches_run else 0.8 * self.service_ms + 0.2 * elapsed_ms
            self.batches_run += 1
            self.frames_run += len(batch)
            if self.on_batch is not None:
                self.on_batch([i.stream for i in batch], [r.image for r in requests], elapsed_ms / 1e3)
        self._finished[seq] = (batch, outcome)
        while self._deliver_seq in self._finished:  # in batch order, whatever order they finished in
            done, out = self._finished.pop(self._deliver_seq)
            self._deliver_seq += 1
            if isinstance(out, BaseException):
                for item in done:
                    item.on_done(out)
            else:
                for item, result in zip(done, out, strict=True):
                    item.on_done(result)

    def _abandon(self, call: asyncio.Future[tuple[list[VQARequest], list[VQAResult]]]) -> None:
        """A call hung past its deadline: leave its thread to it and run later batches on a fresh one.

        The engine's contract is one caller at a time, but a hung call never returns to let the next one in; a
        fresh thread at least keeps every other camera scored. A late answer of the hung call is discarded."""
        self.timed_out_batches += 1
        if self._new_executor is None or self.stuck_threads >= MAX_STUCK_THREADS:
            log.error("model call hung; %d model threads already stuck: later batches wait for it", self.stuck_threads)
            return
        self.stuck_threads += 1
        stuck = self.executor
        self.executor = self._new_executor()

        def returned(_: object) -> None:
            if not call.cancelled():
                call.exception()  # retrieved, so asyncio does not warn about it; the answer is discarded
            self.stuck_threads -= 1
            stuck.shutdown(wait=False)
            log.warning("a model call that hung past its deadline returned; its answer was discarded")

        call.add_done_callback(returned)

    def _run_prepared(
        self, requests: list[VQARequest | Callable[[], VQARequest]]
    ) -> tuple[list[VQARequest], list[VQAResult]]:
        prepared = [r if isinstance(r, VQARequest) else r() for r in requests]
        return prepared, self._run_batch(prepared)

    def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for stream in list(self._queues):
            self.forget(stream)
        self._wake.set()
        self._space.set()

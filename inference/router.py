"""The pool router: an Engine that sends each batch to one backend pool by weight and fails over to another.

A batch goes to exactly one pool that answers it: the weighted choice first (smooth weighted round-robin, so
weights 3:1 give exactly 3 of every 4 batches), then, if that pool errors, times out or is behind, the other
weighted pools, then the standby pools (weight 0). A late answer from a pool that timed out is discarded, so
a frame is never scored twice. Weights change at runtime (`set_weights`) without touching any stream.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from inference.pools import PoolSpec, check_weights
from inference.types import Engine, VQARequest, VQAResult

log = logging.getLogger(__name__)
#: why a batch left its chosen pool (label values of the failover counter)
FAILOVER_REASONS = ("error", "timeout", "behind", "down")


class PoolsUnavailable(RuntimeError):
    """No pool answered a batch; the message says what each pool did."""


@dataclass
class PoolState:
    """One pool's live counters (guarded by the router's lock)."""

    spec: PoolSpec
    engine: Engine
    weight: float = 0.0
    batches: int = 0
    frames: int = 0
    errors: int = 0
    timeouts: int = 0
    behind: int = 0
    inflight: int = 0
    service_ms: float = 0.0  # moving average of the pool's answered batches
    down_until: float = 0.0  # monotonic: after an error or timeout the pool rests until then
    last_done: float = 0.0  # monotonic: when its last batch was answered
    last_ms: float = 0.0  # how long that batch took
    last_error: str = ""
    failovers_to: int = 0  # batches this pool answered for another one
    current: float = 0.0  # smooth weighted round-robin state
    executor: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def capacity(self) -> int:
        return max(1, int(getattr(self.engine, "max_inflight", 1)))


class Router(Engine):
    """Routes batches over named pools; itself an Engine, so the batcher and every camera see no difference."""

    def __init__(
        self,
        pools: Mapping[str, tuple[PoolSpec, Engine]],
        weights: Mapping[str, float] | None = None,
        *,
        cooldown_s: float = 5.0,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        if not pools:
            raise ValueError("a router needs at least one pool")
        self._lock = threading.Lock()
        self._pools = {name: PoolState(spec, engine) for name, (spec, engine) in pools.items()}
        sizes = {name: p.engine.image_size for name, p in self._pools.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"pools must share one image size (frames are scaled once, in ingest), got {sizes}")
        first = next(iter(self._pools.values())).engine
        self.model_name = first.model_name
        self.image_size = first.image_size
        self.batch_sizes = first.batch_sizes
        self.max_inflight = max(p.capacity for p in self._pools.values())
        self.cooldown_s = cooldown_s
        self._init = thread_initializer
        self.version = 0
        self.failovers: dict[tuple[str, str], int] = {}  # (from pool, reason) -> batches
        self.switches = 0
        self.set_weights(weights or {name: 1.0 for name in list(self._pools)[:1]})

    # -- weights ----------------------------------------------------------------------------------------------

    @property
    def pool_names(self) -> list[str]:
        return list(self._pools)

    def weights(self) -> dict[str, float]:
        with self._lock:
            return {name: p.weight for name, p in self._pools.items()}

    def set_weights(self, weights: Mapping[str, float]) -> int:
        """Take new weights (unknown pools or all-zero refused: ValueError); returns the new route version."""
        full = check_weights(weights, set(self._pools))
        with self._lock:
            changed = any(self._pools[n].weight != w for n, w in full.items())
            for name, w in full.items():
                pool = self._pools[name]
                pool.weight = w
                pool.current = 0.0
            self.version += 1
            if changed and self.version > 1:
                self.switches += 1
            version = self.version
        log.info("route v%d: %s", version, ", ".join(f"{n}={w:g}" for n, w in full.items()))
        return version

    # -- running a batch --------------------------------------------------------------------------------------

    def run(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        if not requests:
            return []
        chosen, order = self._plan()
        notes: list[str] = []
        for name in order:
            pool = self._pools[name]
            reason = self._skip_reason(pool, last_resort=name == order[-1])
            if reason is not None:
                self._failed_over(name, reason)
                notes.append(f"{name}: {reason}")
                continue
            try:
                results = self._call(pool, requests)
            except FutureTimeout:
                self._record_failure(pool, "timeout", f"no answer in {pool.spec.timeout_s:g} s")
                notes.append(f"{name}: timeout after {pool.spec.timeout_s:g} s")
                continue
            except Exception as exc:  # noqa: BLE001 - any pool failure fails over; the last one is raised
                self._record_failure(pool, "error", f"{type(exc).__name__}: {exc}")
                notes.append(f"{name}: {type(exc).__name__}: {exc}")
                log.warning("pool %s failed a batch of %d: %s", name, len(requests), exc)
                continue
            if len(results) != len(requests):
                self._record_failure(pool, "error", f"{len(results)} results for {len(requests)} requests")
                notes.append(f"{name}: returned {len(results)} results for {len(requests)} requests")
                continue
            if name != chosen:
                with self._lock:
                    pool.failovers_to += 1
            return [dataclasses.replace(r, pool=name) for r in results]
        raise PoolsUnavailable("no pool answered the batch: " + "; ".join(notes))

    def _plan(self) -> tuple[str, list[str]]:
        """The weighted choice (smooth weighted round-robin over pools that are up), then the failover order."""
        now = time.monotonic()
        with self._lock:
            live = [p for p in self._pools.values() if p.weight > 0 and p.down_until <= now]
            weighted = live or [p for p in self._pools.values() if p.weight > 0]
            total = sum(p.weight for p in weighted)
            for p in weighted:
                p.current += p.weight
            best = max(weighted, key=lambda p: p.current)
            best.current -= total
            chosen = best.spec.name
            rest = sorted(
                (p for p in self._pools.values() if p.spec.name != chosen),
                key=lambda p: (p.down_until > now, -p.weight),  # up before down, heavier first, standby last
            )
        return chosen, [chosen, *(p.spec.name for p in rest)]

    def _skip_reason(self, pool: PoolState, *, last_resort: bool) -> str | None:
        """Why a pool is passed over for this batch (None: try it). The last candidate is always tried."""
        if last_resort:
            return None
        with self._lock:
            if pool.down_until > time.monotonic():
                return "down"
            if pool.inflight >= pool.capacity:
                return "behind"  # e.g. a local engine still busy with a batch that timed out
            # slow lately: passed over until the cooldown since its last batch is over, then probed again
            recent = time.monotonic() - pool.last_done < self.cooldown_s
            if pool.spec.behind_ms and pool.batches and pool.last_ms > pool.spec.behind_ms and recent:
                return "behind"
        return None

    def _call(self, pool: PoolState, requests: Sequence[VQARequest]) -> list[VQAResult]:
        started = time.monotonic()
        with self._lock:
            pool.inflight += 1
        try:
            run_with_timeout = getattr(pool.engine, "run_with_timeout", None)
            if run_with_timeout is not None:  # remote pools time out natively (and cancel the request)
                results = list(run_with_timeout(requests, pool.spec.timeout_s))
            else:
                future = self._local_executor(pool).submit(pool.engine.run, list(requests))
                results = self._await(pool, future)
        except BaseException:
            with self._lock:
                pool.inflight -= 1
            raise
        elapsed_ms = (time.monotonic() - started) * 1e3
        with self._lock:
            pool.inflight -= 1
            pool.batches += 1
            pool.frames += len(requests)
            pool.service_ms = elapsed_ms if pool.batches == 1 else 0.8 * pool.service_ms + 0.2 * elapsed_ms
            pool.down_until = 0.0
            pool.last_done = time.monotonic()
            pool.last_ms = elapsed_ms
        return results

    def _await(self, pool: PoolState, future: Future[list[VQAResult]]) -> list[VQAResult]:
        try:
            return future.result(timeout=pool.spec.timeout_s)
        except FutureTimeout:
            # the engine thread finishes the batch later; its answer is dropped, and until then the pool's one
            # engine is busy, so it stays `inflight` (behind) without being counted twice
            with self._lock:
                pool.inflight += 1
            future.add_done_callback(lambda _f: self._release(pool))
            raise

    def _release(self, pool: PoolState) -> None:
        with self._lock:
            pool.inflight -= 1

    def _local_executor(self, pool: PoolState) -> ThreadPoolExecutor:
        with self._lock:
            if pool.executor is None:  # created from the model thread: inherits its CPU affinity
                pool.executor = ThreadPoolExecutor(
                    1, thread_name_prefix=f"pool-{pool.spec.name}", initializer=self._init
                )
            return pool.executor

    def _record_failure(self, pool: PoolState, reason: str, detail: str) -> None:
        with self._lock:
            if reason == "timeout":
                pool.timeouts += 1
            else:
                pool.errors += 1
            pool.last_error = detail
            pool.down_until = time.monotonic() + self.cooldown_s
            key = (pool.spec.name, reason)
            self.failovers[key] = self.failovers.get(key, 0) + 1

    def _failed_over(self, name: str, reason: str) -> None:
        with self._lock:
            if reason == "behind":
                self._pools[name].behind += 1
            key = (name, reason)
            self.failovers[key] = self.failovers.get(key, 0) + 1

    # -- state for the admin RPC and metrics ------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Weights, version and each pool's counters (plain values: JSON, metrics, the admin RPC)."""
        now = time.monotonic()
        with self._lock:
            pools = {
                name: {
                    "weight": p.weight,
                    "up": p.down_until <= now,
                    "backend": p.spec.backend,
                    "dtype": p.spec.dtype,
                    "kind": getattr(p.engine, "kind", "local"),
                    "batches": p.batches,
                    "frames": p.frames,
                    "errors": p.errors,
                    "timeouts": p.timeouts,
                    "behind": p.behind,
                    "inflight": p.inflight,
                    "failovers_to": p.failovers_to,
                    "service_ms": round(p.service_ms, 3),
                    "last_error": p.last_error,
                }
                for name, p in self._pools.items()
            }
            failovers = {f"{a}:{r}": n for (a, r), n in sorted(self.failovers.items())}
            return {"version": self.version, "switches": self.switches, "pools": pools, "failovers": failovers}

    def close(self) -> None:
        for pool in self._pools.values():
            if pool.executor is not None:
                pool.executor.shutdown(wait=False, cancel_futures=True)
            pool.engine.close()

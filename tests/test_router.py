"""Unit tests of the pool router (weights, failover, timeouts) and the in-order batcher, with fake engines."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from factories import FakeEngine

from inference.pools import Autoscaling, PoolSpec, check_weights, parse_weights
from inference.router import PoolsUnavailable, Router
from inference.types import DEFAULT_QUESTIONS, VQARequest
from ingest.config import ServerConfig
from streaming.batcher import Batcher, BatchPolicy, WorkItem


def _requests(n: int, start: int = 0) -> list[VQARequest]:
    img = np.zeros((8, 8, 3), np.uint8)
    return [VQARequest(start + i, img, DEFAULT_QUESTIONS) for i in range(n)]


class Flaky(FakeEngine):
    """Fails while `failing` is set; counts the batches it really answered."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s=delay_s)
        self.failing = False

    def run(self, requests):  # noqa: ANN001, ANN201
        if self.failing:
            raise RuntimeError("replica died")
        return super().run(requests)


def _router(weights: dict[str, float], **specs: PoolSpec) -> tuple[Router, dict[str, Flaky]]:
    engines = {name: Flaky() for name in specs}
    router = Router({n: (s, engines[n]) for n, s in specs.items()}, weights, cooldown_s=0.2)
    return router, engines


def test_weights_split_batches_exactly_and_tag_every_result_with_its_pool():
    router, engines = _router({"a": 3, "b": 1}, a=PoolSpec("a"), b=PoolSpec("b"))
    served = [router.run(_requests(2, 2 * i)) for i in range(8)]
    pools = [r[0].pool for r in served]
    assert pools.count("a") == 6 and pools.count("b") == 2  # smooth weighted round-robin: exact, interleaved
    assert all(len({r.pool for r in batch}) == 1 for batch in served)
    assert sum(len(b) for b in engines["a"].batches) == 12 and sum(len(b) for b in engines["b"].batches) == 4
    snap = router.snapshot()
    assert snap["pools"]["a"]["frames"] == 12 and snap["pools"]["b"]["batches"] == 2  # type: ignore[index]


def test_switching_weights_moves_the_next_batch_and_counts_a_switch():
    router, _ = _router({"a": 1}, a=PoolSpec("a"), b=PoolSpec("b"))
    assert {r.pool for r in router.run(_requests(3))} == {"a"}
    version = router.set_weights({"a": 0, "b": 1})
    assert version == 2 and router.switches == 1
    assert {r.pool for r in router.run(_requests(3))} == {"b"}
    assert router.weights() == {"a": 0.0, "b": 1.0}


@pytest.mark.parametrize(
    "weights,needle",
    [({"c": 1}, "unknown pool"), ({"a": 0, "b": 0}, "at least one pool"), ({"a": -1, "b": 1}, ">= 0")],
)
def test_bad_weights_are_refused_naming_the_problem(weights, needle):
    router, _ = _router({"a": 1}, a=PoolSpec("a"), b=PoolSpec("b"))
    with pytest.raises(ValueError, match=needle):
        router.set_weights(weights)
    assert router.weights() == {"a": 1.0, "b": 0.0}  # unchanged


def test_a_failing_pool_fails_over_to_the_standby_and_rests_then_is_tried_again():
    router, engines = _router({"a": 1}, a=PoolSpec("a"), b=PoolSpec("b"))
    engines["a"].failing = True
    out = router.run(_requests(4))
    assert [r.key for r in out] == [0, 1, 2, 3] and {r.pool for r in out} == {"b"}
    snap = router.snapshot()
    assert snap["pools"]["a"]["errors"] == 1 and not snap["pools"]["a"]["up"]  # type: ignore[index]
    assert snap["pools"]["b"]["failovers_to"] == 1 and snap["failovers"] == {"a:error": 1}  # type: ignore[index]
    out = router.run(_requests(1))  # while a rests, b serves without trying a again
    assert out[0].pool == "b" and router.snapshot()["pools"]["a"]["errors"] == 1  # type: ignore[index]
    engines["a"].failing = False
    time.sleep(0.25)  # the cooldown is over: a is tried (and answers) again
    assert router.run(_requests(1))[0].pool == "a"


def test_a_pool_that_times_out_fails_over_and_its_late_answer_is_never_used():
    slow = PoolSpec("slow", timeout_s=0.1)
    engines = {"slow": Flaky(delay_s=0.4), "fast": Flaky()}
    router = Router({"slow": (slow, engines["slow"]), "fast": (PoolSpec("fast"), engines["fast"])}, {"slow": 1})
    out = router.run(_requests(2))
    assert {r.pool for r in out} == {"fast"}
    snap = router.snapshot()
    assert snap["pools"]["slow"]["timeouts"] == 1 and snap["pools"]["slow"]["inflight"] == 1  # type: ignore[index]
    time.sleep(0.5)  # the slow engine finished the batch nobody waits for any more
    assert router.snapshot()["pools"]["slow"]["inflight"] == 0  # type: ignore[index]
    assert sum(len(b) for b in engines["fast"].batches) == 2


def test_a_pool_whose_batches_got_slower_than_behind_ms_is_passed_over():
    engines = {"a": Flaky(delay_s=0.08), "b": Flaky()}
    specs = {"a": PoolSpec("a", behind_ms=40), "b": PoolSpec("b")}
    router = Router({n: (specs[n], engines[n]) for n in specs}, {"a": 1}, cooldown_s=0.3)
    assert router.run(_requests(1))[0].pool == "a"  # its first batch shows it is slow ...
    assert router.run(_requests(1))[0].pool == "b"  # ... so the next goes to the standby, counted as behind
    snap = router.snapshot()
    assert snap["pools"]["a"]["behind"] == 1 and snap["failovers"] == {"a:behind": 1}  # type: ignore[index]
    engines["a"].delay_s = 0.0
    time.sleep(0.35)  # after the cooldown a is probed again, and (fast now) keeps its batches
    assert [router.run(_requests(1))[0].pool for _ in range(3)] == ["a"] * 3


def test_all_pools_failing_raises_saying_what_each_did():
    router, engines = _router({"a": 1, "b": 1}, a=PoolSpec("a"), b=PoolSpec("b"))
    for e in engines.values():
        e.failing = True
    with pytest.raises(PoolsUnavailable, match="a: RuntimeError: replica died.*b: RuntimeError"):
        router.run(_requests(1))


def test_parse_and_check_weights():
    assert parse_weights("cpu-int8=1, cuda=0") == {"cpu-int8": 1.0, "cuda": 0.0}
    with pytest.raises(ValueError, match="POOL=WEIGHT"):
        parse_weights("cpu-int8")
    with pytest.raises(ValueError, match="not a number"):
        parse_weights("cuda=x")
    assert check_weights({"a": 2}, {"a", "b"}) == {"a": 2.0, "b": 0.0}


def test_pool_and_server_config_validate_with_named_fields():
    with pytest.raises(ValueError, match="pool name"):
        PoolSpec("CPU_1")
    with pytest.raises(ValueError, match="min_replicas"):
        Autoscaling(min_replicas=3, max_replicas=2)
    spec = PoolSpec.from_dict(
        {"name": "neuron", "backend": "neuron", "neuron_cores": 2, "autoscaling": {"max_replicas": 4}}
    )
    assert spec.ray_actor_options() == {"num_cpus": 1.0, "num_gpus": 0.0, "resources": {"neuron_cores": 2}}
    with pytest.raises(ValueError, match="inference"):
        ServerConfig(inference="k8s")
    with pytest.raises(ValueError, match="unknown pool"):
        ServerConfig(pools=(PoolSpec("a"),), route={"b": 1})
    cfg = ServerConfig.load(
        None, env={}, pools=[{"name": "cpu-int8", "dtype": "int8"}], ingest_cpus="0", model_cpus=[1]
    )
    assert cfg.backend_pools[0].dtype == "int8" and cfg.ingest_cpus == (0,) and cfg.model_cpus == (1,)
    assert ServerConfig(backend="cpu", dtype="int8").backend_pools[0].name == "cpu-int8"


def test_batcher_with_several_batches_in_flight_delivers_in_batch_order():
    """Batches that finish out of order (a slow first one) still reach the cameras in the order they formed."""
    delays = iter([0.3, 0.0, 0.0])
    lock = threading.Lock()

    def run_batch(requests):  # noqa: ANN001, ANN202
        with lock:
            delay = next(delays, 0.0)
        time.sleep(delay)
        return FakeEngine().run(requests)

    async def scenario() -> list[object]:
        pool = ThreadPoolExecutor(3)
        batcher = Batcher(run_batch, BatchPolicy(max_batch=1, max_wait_ms=0), pool, max_inflight=3)
        task = asyncio.create_task(batcher.run())
        done: list[object] = []
        for r in _requests(3):
            batcher.submit(WorkItem(f"s{r.key}", r, time.monotonic_ns(), lambda o: done.append(o.key)))
            await asyncio.sleep(0.02)  # each forms its own batch
        while len(done) < 3:
            await asyncio.sleep(0.02)
        batcher.close()
        task.cancel()
        pool.shutdown()
        return done

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_the_gpu_checks_router_script_runs_with_a_cpu_primary(tmp_path) -> None:  # noqa: ANN001
    """bench/gpu_check.sh runs it with the cuda pool; here the same script, the primary pool on the CPU."""
    import json

    from bench.gpu_router_check import main

    out = tmp_path / "router.json"
    assert main(str(out), "tiny", "cpu") == 0
    checks = json.loads(out.read_text())
    assert checks["ok"] and checks["failed_over_to_cpu"] and checks["fidelity_ok"]

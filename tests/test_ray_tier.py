"""The Ray Serve inference tier on a local Ray instance (marked `ray`; CI runs it): same FrameScores as the local
engine, Serve autoscaling up under load and down when idle, and live switching and failover while 10 cameras
stream. One Ray instance and two pools (the real tiny BLIP) for the whole module: about a minute."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest
from factories import cameras_with_sessions, serving, square_units
from test_live_routing import check_every_frame_scored_once, pool_runs

from inference.pools import Autoscaling, PoolSpec
from inference.router import Router
from inference.types import DEFAULT_QUESTIONS, VQARequest
from ingest.config import ServerConfig
from simulators.admin import set_route
from simulators.camera import run_camera

if os.environ.get("CI"):  # CI installs the [ray] extra: a missing Ray must fail there, not skip
    import ray  # noqa: F401
else:
    pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]
BATCH_SIZES = (1, 2, 4, 8)
# small replicas: a 2-core machine runs three of them next to ingest (logical CPUs, one torch thread each)
POOL_A = PoolSpec(
    "pool-a",
    dtype="fp32",
    num_cpus=0.5,
    threads=1,
    timeout_s=3.0,
    autoscaling=Autoscaling(
        min_replicas=1, max_replicas=2, target_ongoing_requests=1, upscale_delay_s=0.5, downscale_delay_s=2.0
    ),
)
POOL_B = PoolSpec("pool-b", dtype="fp32", num_cpus=0.5, threads=1, timeout_s=10.0)


@pytest.fixture(scope="module")
def ray_pools():
    from inference import ray_tier

    t0 = time.monotonic()
    ray_tier.connect(None, num_cpus=4)
    pools = ray_tier.connect_pools([POOL_A, POOL_B], "tiny", BATCH_SIZES, deploy=True)
    print(f"local Ray instance and two pools up in {time.monotonic() - t0:.1f} s")
    yield pools
    ray_tier.shutdown()


def _wait_for(predicate, timeout_s: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def test_frames_through_the_ray_tier_get_the_local_engines_scores(ray_pools, tiny_engine) -> None:
    spec, remote = ray_pools["pool-a"]
    units = square_units(4.0)

    def scores(engine) -> dict:  # noqa: ANN001
        router = Router({spec.name: (spec, engine)})
        with serving(router, ServerConfig(port=0, inflight_batches=1)) as (address, _):
            report = asyncio.run(run_camera(address, "cam", units, speed=0, want_scores=True, sample_fps=5))
        assert report.error is None and report.scores, report.error
        return {s.frame_seq: s for s in report.scores}

    via_ray, local = scores(remote), scores(tiny_engine)
    assert via_ray.keys() == local.keys() and len(local) >= 15
    diff = max(abs(via_ray[k].p_yes[q] - local[k].p_yes[q]) for k in local for q in local[k].p_yes)
    assert diff <= 1e-5, diff
    assert {s.pool for s in via_ray.values()} == {"pool-a"}
    assert remote.image_size == tiny_engine.image_size and remote.model_name == "tiny"


def test_serve_scales_the_pool_up_under_load_and_down_when_idle(ray_pools) -> None:
    from inference import ray_tier

    _, remote = ray_pools["pool-a"]
    assert ray_tier.replica_counts(["pool-a"]) == {"pool-a": {"RUNNING": 1}}
    img = np.random.default_rng(0).integers(0, 255, (remote.image_size, remote.image_size, 3), np.uint8)
    batch = [VQARequest(i, img, DEFAULT_QUESTIONS) for i in range(4)]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            remote.run_with_timeout(batch, 60)

    callers = [threading.Thread(target=load, daemon=True) for _ in range(6)]  # 6 ongoing vs a target of 1
    for t in callers:
        t.start()
    try:
        up = _wait_for(
            lambda: ray_tier.replica_counts(["pool-a"])["pool-a"].get("RUNNING", 0) >= 2, 90, "a second replica"
        )
    finally:
        stop.set()
        for t in callers:
            t.join(60)
    assert up
    _wait_for(lambda: ray_tier.replica_counts(["pool-a"]) == {"pool-a": {"RUNNING": 1}}, 90, "scale-down to 1")


def test_switch_and_replica_kill_while_10_cameras_stream(ray_pools) -> None:
    from inference import ray_tier

    router = Router(dict(ray_pools), {"pool-a": 1}, cooldown_s=60.0)  # after the kill b serves to the end
    cfg = ServerConfig(port=0, inflight_batches=1)  # one batch in flight: no autoscaling of a during the run
    units = square_units(12.0)
    with serving(router, cfg) as (address, server):

        async def scenario():  # noqa: ANN202
            cameras = [
                run_camera(address, f"cam-{i}", units, speed=1.5, want_scores=True, sample_fps=2, wait=True)
                for i in range(10)
            ]
            run = asyncio.ensure_future(cameras_with_sessions(server, cameras))
            await asyncio.sleep(2.0)
            await set_route(address, {"pool-b": 1}, None)  # switch a -> b
            await asyncio.sleep(2.0)
            await set_route(address, {"pool-a": 1}, None)  # and back
            await asyncio.sleep(2.0)
            for actor in ray_tier.replica_actors("pool-a"):  # kill a's replica mid-stream: Serve replaces it
                ray_tier.ray.kill(actor, no_restart=False)
            return await run

        reports, sessions = asyncio.run(scenario())
    check_every_frame_scored_once(reports, sessions)
    runs = [pool_runs(r) for r in reports]
    assert all(r == ["pool-a", "pool-b", "pool-a", "pool-b"] for r in runs), runs
    snap = router.snapshot()
    assert snap["switches"] == 2
    failed = {k: v for k, v in snap["failovers"].items() if k.startswith("pool-a:")}  # type: ignore[union-attr]
    assert failed and set(failed) <= {"pool-a:error", "pool-a:timeout", "pool-a:down"}, snap["failovers"]
    assert snap["pools"]["pool-b"]["failovers_to"] >= 1  # type: ignore[index]
    _wait_for(lambda: ray_tier.replica_counts(["pool-a"])["pool-a"].get("RUNNING", 0) >= 1, 60, "a's new replica")

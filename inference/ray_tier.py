"""The inference tier on Ray Serve: one deployment per backend pool, and an Engine that calls it through a handle.

Imported only when `--inference ray-local|ray://ADDRESS` asks for it (Ray is the optional extra `.[ray]`).
Ingest keeps the video: what crosses into Ray is a micro-batch of sampled frames already scaled to the model's
input size (uint8 HxWx3: 4x smaller than float pixel values; normalisation runs in the replica) with their
questions. `@serve.batch` merges micro-batches from every ingest process into one model call (counted in
frames), and Serve autoscales each deployment on ongoing requests (micro-batches in flight per replica).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import ray
from ray import serve

from inference.pools import APP_PREFIX, PoolSpec
from inference.types import Engine, Question, StageTimings, VQARequest, VQAResult

log = logging.getLogger(__name__)
#: one frame on the wire into Ray: (picture at the model's size, ((behavior, question), ...))
WireFrame = tuple[np.ndarray, tuple[tuple[str, str], ...]]
#: one frame's answer: (p_yes per question name, the batch's StageTimings fields)
WireResult = tuple[dict[str, float], tuple[float, float, float, float, int, int]]


def app_name(pool: str) -> str:
    return APP_PREFIX + pool


def _frames(microbatches: list[list[WireFrame]]) -> int:
    return sum(len(mb) for mb in microbatches)


@serve.deployment
class BlipReplica:
    """One replica of a pool: the BLIP engine (inference/engine.py) behind @serve.batch."""

    def __init__(self, pool: dict[str, Any], model: str, batch_sizes: tuple[int, ...]) -> None:
        from inference.engine import load_engine

        spec = PoolSpec.from_dict(pool)
        threads = spec.threads or max(1, int(spec.num_cpus))
        self.spec = spec
        self.engine = load_engine(
            spec.model or model,
            backend=spec.engine_backend,
            dtype=spec.dtype,
            artifacts=spec.artifacts,
            batch_sizes=batch_sizes,
            threads=threads,
        )
        self.infer.set_max_batch_size(spec.serve_max_batch)  # type: ignore[attr-defined]
        self.infer.set_batch_wait_timeout_s(spec.serve_wait_ms / 1e3)  # type: ignore[attr-defined]
        self.pid = os.getpid()

    def describe(self) -> dict[str, Any]:
        e = self.engine
        return {
            "model_name": e.model_name,
            "image_size": e.image_size,
            "batch_sizes": list(e.batch_sizes),
            "pool": self.spec.name,
            "pid": self.pid,
            "dtype": getattr(e, "dtype", ""),
        }

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005, batch_size_fn=_frames)
    async def infer(self, microbatches: list[list[WireFrame]]) -> list[list[WireResult]]:
        flat = [
            VQARequest(i, image, tuple(Question(n, t) for n, t in questions))
            for i, (image, questions) in enumerate(f for mb in microbatches for f in mb)
        ]
        # off the replica's event loop, so Serve keeps accepting (and batching) requests meanwhile
        results = await asyncio.to_thread(self.engine.run, flat)
        out: list[WireResult] = []
        for r in results:
            t = r.timings
            out.append(
                (dict(r.p_yes), (t.preprocess_s, t.vision_s, t.text_s, t.decode_s, t.batch_size, t.padded_batch_size))
            )
        split: list[list[WireResult]] = []
        start = 0
        for mb in microbatches:
            split.append(out[start : start + len(mb)])
            start += len(mb)
        return split

    async def __call__(self, microbatch: list[WireFrame]) -> list[WireResult]:
        return await self.infer(microbatch)


def connect(address: str | None, *, num_cpus: float | None = None) -> None:
    """Join a Ray cluster (`ray://HOST:PORT` through Ray Client, or a GCS address), or start a local one (None).

    A local instance is kept small: no dashboard, a 256 MB object store (frames are small and short-lived)."""
    if ray.is_initialized():
        return
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # replicas import this tree, as the driver does
    if address is None and not os.environ.get("RAY_ADDRESS"):
        ray.init(
            num_cpus=int(num_cpus or os.cpu_count() or 1),
            include_dashboard=False,
            object_store_memory=256 << 20,
            log_to_driver=False,
            runtime_env={"env_vars": env},
        )
    else:
        ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
    serve.start(proxy_location="Disabled")  # video and frames never go through Serve's HTTP/gRPC proxies


def gcs_address() -> str:
    """The address other processes on this machine give RAY_ADDRESS to join this instance as drivers."""
    return str(ray.get_runtime_context().gcs_address)


def application(spec: PoolSpec, model: str, batch_sizes: Sequence[int]) -> Any:
    """The Serve application of one pool: its deployment with per-replica resources and autoscaling bound."""
    return BlipReplica.options(  # type: ignore[attr-defined]
        name=spec.name,
        ray_actor_options=spec.ray_actor_options(),
        autoscaling_config=spec.autoscaling.serve_config(),
        max_ongoing_requests=spec.max_ongoing_requests,
        health_check_period_s=2.0,
        graceful_shutdown_timeout_s=5.0,
    ).bind(spec.to_dict(), model, tuple(batch_sizes))


def deploy_pool(spec: PoolSpec, model: str, batch_sizes: Sequence[int]) -> None:
    """Deploy (or update in place) one pool as its own Serve application; returns when its replicas run."""
    t0 = time.monotonic()
    serve.run(application(spec, model, batch_sizes), name=app_name(spec.name), route_prefix=None)
    log.info("Ray Serve pool %s deployed in %.1f s (%s)", spec.name, time.monotonic() - t0, spec.ray_actor_options())


class RayPoolEngine(Engine):
    """A pool on Ray Serve behind the Engine interface: run() sends one micro-batch through a deployment handle."""

    kind = "ray"

    def __init__(self, spec: PoolSpec, *, describe_timeout_s: float = 120.0) -> None:
        self.spec = spec
        self.handle = serve.get_deployment_handle(spec.name, app_name(spec.name))
        info = self.handle.describe.remote().result(timeout_s=describe_timeout_s)
        self.model_name = str(info["model_name"])
        self.image_size = int(info["image_size"])
        self.batch_sizes = tuple(int(b) for b in info["batch_sizes"])
        # micro-batches worth keeping in flight: enough to reach every replica Serve may scale to
        self.max_inflight = max(1, min(16, spec.max_ongoing_requests * spec.autoscaling.max_replicas))

    def run(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        return self.run_with_timeout(requests, self.spec.timeout_s)

    def run_with_timeout(self, requests: Sequence[VQARequest], timeout_s: float) -> list[VQAResult]:
        payload: list[WireFrame] = [(r.image, tuple((q.name, q.text) for q in r.questions)) for r in requests]
        response = self.handle.remote(payload)
        try:
            answers: list[WireResult] = response.result(timeout_s=timeout_s)
        except TimeoutError:
            response.cancel()  # the replica may still answer; nobody listens any more
            raise
        return [
            VQAResult(key=r.key, p_yes=p, timings=StageTimings(*t)) for r, (p, t) in zip(requests, answers, strict=True)
        ]


def replica_counts(pools: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Replica states of each pool's deployment, from Serve's own status (e.g. {'cpu': {'RUNNING': 2}})."""
    status = serve.status()
    out: dict[str, dict[str, int]] = {}
    for name, app in status.applications.items():
        if not name.startswith(APP_PREFIX):
            continue
        pool = name[len(APP_PREFIX) :]
        if pools is not None and pool not in pools:
            continue
        for dep in app.deployments.values():
            out[pool] = {str(getattr(k, "value", k)): int(v) for k, v in dep.replica_states.items()}
    return out


def replica_actors(pool: str) -> list[Any]:
    """Handles of the live replica actors of one pool (to kill one in a failover test or drill)."""
    prefix = f"SERVE_REPLICA::{app_name(pool)}#{pool}#"
    named = ray.util.list_named_actors(all_namespaces=True)  # from the GCS: no dashboard needed
    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in named if a["name"].startswith(prefix)]


def connect_pools(
    specs: Sequence[PoolSpec], model: str, batch_sizes: Sequence[int], *, deploy: bool
) -> dict[str, tuple[PoolSpec, Engine]]:
    """Deploy each pool (unless another process already did) and wrap it in a RayPoolEngine."""
    pools: dict[str, tuple[PoolSpec, Engine]] = {}
    for spec in specs:
        if spec.serve_max_batch < max(batch_sizes):
            raise ValueError(
                f"pool {spec.name}: serve_max_batch={spec.serve_max_batch} frames is smaller than the ingest "
                f"micro-batch (max_batch={max(batch_sizes)}): @serve.batch could never take one"
            )
        if deploy:
            deploy_pool(spec, model, batch_sizes)
        pools[spec.name] = (spec, RayPoolEngine(spec))
    return pools


def shutdown(*, delete_apps: bool = True) -> None:
    """Leave Ray; with `delete_apps`, first delete Serve's applications (a local instance stops with its driver)."""
    if ray.is_initialized():
        try:
            if delete_apps:
                serve.shutdown()
        finally:
            ray.shutdown()


def status_summary(pools: Mapping[str, object]) -> dict[str, dict[str, int]]:
    """Replica counts of the given pools (for the operator page and `petstream admin route`)."""
    return replica_counts(list(pools))

"""The inference tier a server runs: its backend pools (local engines or Ray Serve deployments) behind one Router."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from inference.pools import PoolSpec
from inference.router import Router
from inference.types import Engine

log = logging.getLogger(__name__)


def build_router(
    *,
    inference: str,
    pools: Sequence[PoolSpec],
    model: str,
    batch_sizes: Sequence[int],
    weights: Mapping[str, float] | None = None,
    cooldown_s: float = 5.0,
    deploy: bool = True,
    ray_num_cpus: float | None = None,
    thread_initializer: Callable[[], None] | None = None,
) -> Router:
    """Load or connect every pool; `inference` is local, ray-local or ray://ADDRESS (see ServerConfig)."""
    engines: dict[str, tuple[PoolSpec, Engine]]
    if inference == "local":
        engines = {spec.name: (spec, _local_engine(spec, model, batch_sizes)) for spec in pools}
    else:
        try:
            from inference import ray_tier
        except ImportError as exc:  # the optional extra is missing: say how to get it
            raise ImportError(
                f"--inference {inference} needs Ray Serve: pip install 'petstream[ray]' ({exc})"
            ) from None
        ray_tier.connect(None if inference == "ray-local" else inference, num_cpus=ray_num_cpus)
        engines = ray_tier.connect_pools(pools, model, batch_sizes, deploy=deploy)
    return Router(engines, weights or None, cooldown_s=cooldown_s, thread_initializer=thread_initializer)


def _local_engine(spec: PoolSpec, model: str, batch_sizes: Sequence[int]) -> Engine:
    from inference.engine import load_engine

    engine = load_engine(
        spec.model or model,
        backend=spec.engine_backend,
        dtype=spec.dtype,
        artifacts=spec.artifacts,
        batch_sizes=batch_sizes,
        threads=spec.threads,
    )
    engine.kind = "local"  # type: ignore[attr-defined]
    return engine


def close_tier(inference: str, router: Engine, *, owner: bool = True) -> None:
    """Close the router's pools. The process that deployed a ray-local tier (`owner`) deletes its applications
    and stops the local instance; any other process only disconnects."""
    router.close()
    if inference != "local":
        from inference import ray_tier

        ray_tier.shutdown(delete_apps=owner and inference == "ray-local")

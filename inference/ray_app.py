"""Serve config entry point (`import_path: inference.ray_app:build`): one pool's application from its args.

KubeRay's RayService deploys each pool from `serveConfigV2` with `args: {pool: {...}, model: ..., batch_sizes: [...]}`
(docs/deploy.md); `petstream serve --inference ray-local` deploys the same application from code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inference.pools import PoolSpec

DEFAULT_BATCH_SIZES = (1, 2, 4, 8)


def build(args: Mapping[str, Any]) -> Any:
    from inference.ray_tier import application

    if "pool" not in args or "model" not in args:
        raise ValueError(f"inference.ray_app:build needs args 'pool' (a PoolSpec) and 'model', got {sorted(args)}")
    spec = PoolSpec.from_dict(args["pool"])
    sizes = tuple(int(b) for b in args.get("batch_sizes", DEFAULT_BATCH_SIZES))
    return application(spec, str(args["model"]), sizes)

"""Backend pools: what one pool runs and where (typed, validated), and route weights over pools (no torch here)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

PoolBackend = Literal["auto", "cpu", "cuda", "neuron", "openvino"]
PoolDtype = Literal["auto", "fp32", "bf16", "int8"]
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")  # a Kubernetes/Ray-friendly name
#: the Ray custom resource a Neuron replica asks for (Ray detects NeuronCores under this name)
NEURON_RESOURCE = "neuron_cores"
#: a pool's Serve application is named APP_PREFIX + pool; its deployment is named after the pool
APP_PREFIX = "petstream-"


@dataclass(frozen=True)
class Autoscaling:
    """Ray Serve autoscaling of one pool's deployment, on ongoing requests per replica (the request count)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0  # micro-batches in flight per replica Serve aims for
    upscale_delay_s: float = 3.0
    downscale_delay_s: float = 30.0
    look_back_period_s: float = 15.0  # window Serve averages ongoing requests over (above its 10 s push interval)

    def serve_config(self) -> dict[str, Any]:
        """Ray Serve's autoscaling_config (the same dict the KubeRay manifests carry)."""
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                f"autoscaling: need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                f"got {self.min_replicas}..{self.max_replicas}"
            )
        if self.target_ongoing_requests <= 0:
            raise ValueError(f"autoscaling.target_ongoing_requests: must be > 0, got {self.target_ongoing_requests}")
        if self.upscale_delay_s < 0 or self.downscale_delay_s < 0:
            raise ValueError("autoscaling: upscale_delay_s and downscale_delay_s must be >= 0")
        if self.look_back_period_s <= 10:
            raise ValueError(
                f"autoscaling.look_back_period_s: must be > 10 (Serve's push interval), got {self.look_back_period_s}"
            )


@dataclass(frozen=True)
class PoolSpec:
    """One backend pool: a local engine or one Ray Serve deployment, with its per-replica resources."""

    name: str  # e.g. cpu-bf16, cpu-int8, cuda, neuron: the label in metrics and FrameScores.pool
    backend: PoolBackend = "cpu"
    dtype: PoolDtype = "auto"
    model: str | None = None  # None: the server's model
    artifacts: str | None = None  # compiled stages for this pool (`petstream compile`); None = uncompiled
    threads: int | None = None  # torch threads per replica; None: num_cpus (Ray) or every core (local)
    num_cpus: float = 1.0  # Ray: CPUs per replica
    num_gpus: float = 0.0  # Ray: GPUs per replica (cuda pools: 1)
    neuron_cores: int = 0  # Ray: NeuronCores per replica, as the custom resource NEURON_RESOURCE
    resources: dict[str, float] = field(default_factory=dict)  # Ray: more custom resources, e.g. a node group's tag
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    max_ongoing_requests: int = 8  # Ray: micro-batches one replica accepts at once (beyond: queued by Serve)
    serve_max_batch: int = 16  # Ray: most frames @serve.batch merges (from several micro-batches) into one call
    serve_wait_ms: float = 5.0  # Ray: how long @serve.batch waits for more micro-batches
    timeout_s: float = 30.0  # a batch not answered in this time fails over to another pool
    behind_ms: float = 0.0  # a pool whose last batch took longer is behind: passed over for pool_cooldown_s; 0 = never

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"pool name {self.name!r}: use lower-case letters, digits and '-' (at most 40)")
        if self.backend not in get_args(PoolBackend):
            raise ValueError(f"pool {self.name}: backend {self.backend!r} is not one of {list(get_args(PoolBackend))}")
        if self.dtype not in get_args(PoolDtype):
            raise ValueError(f"pool {self.name}: dtype {self.dtype!r} is not one of {list(get_args(PoolDtype))}")
        for key in ("num_cpus", "num_gpus", "neuron_cores", "behind_ms", "serve_wait_ms"):
            if getattr(self, key) < 0:
                raise ValueError(f"pool {self.name}: {key} must be >= 0, got {getattr(self, key)}")
        for key in ("max_ongoing_requests", "serve_max_batch"):
            if getattr(self, key) < 1:
                raise ValueError(f"pool {self.name}: {key} must be >= 1, got {getattr(self, key)}")
        if self.timeout_s <= 0:
            raise ValueError(f"pool {self.name}: timeout_s must be > 0, got {self.timeout_s}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"pool {self.name}: threads must be >= 1, got {self.threads}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PoolSpec:
        values = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"pool {values.get('name')!r}: unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}"
            )
        if isinstance(values.get("autoscaling"), Mapping):
            values["autoscaling"] = Autoscaling(**values["autoscaling"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def engine_backend(self) -> Literal["cpu", "cuda", "neuron", "openvino"]:
        """The backend load_engine gets: an explicitly configured pool on "auto" runs on the cpu backend."""
        return "cpu" if self.backend == "auto" else self.backend

    def ray_actor_options(self) -> dict[str, Any]:
        """Per-replica resources as Ray Serve's ray_actor_options (Neuron cores as a custom resource)."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        resources = dict(self.resources)
        if self.neuron_cores:
            resources[NEURON_RESOURCE] = self.neuron_cores
        if resources:
            options["resources"] = resources
        return options


def autoscaler_bounds(
    *, knee_cameras_per_replica: float, replicas_per_node: int, peak_cameras: int, offpeak_cameras: int, headroom: float
) -> dict[str, int]:
    """Replica and node bounds of one pool from the load test's knee (the most cameras one replica serves within
    the p99 budget): each replica runs at `headroom` of its knee, so a pool can absorb a failed one's load."""
    import math

    per_replica = knee_cameras_per_replica * headroom
    max_replicas = math.ceil(peak_cameras / per_replica)
    min_replicas = max(1, math.ceil(offpeak_cameras / per_replica))
    return {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "min_nodes": math.ceil(min_replicas / replicas_per_node),
        "max_nodes": math.ceil(max_replicas / replicas_per_node),
    }


def default_pool(backend: str, dtype: str, artifacts: str | None, threads: int | None) -> PoolSpec:
    """The one pool of a server configured the classic way (--backend/--dtype): named after them."""
    name = backend if dtype == "auto" or backend not in ("cpu", "openvino") else f"{backend}-{dtype}"
    return PoolSpec(name=name, backend=backend, dtype=dtype, artifacts=artifacts, threads=threads)  # type: ignore[arg-type]


def parse_weights(text: str) -> dict[str, float]:
    """'cpu-int8=1,cuda=0' -> {'cpu-int8': 1.0, 'cuda': 0.0}; a clear error naming what is wrong."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"route weight {part!r}: write POOL=WEIGHT, e.g. cpu-int8=1,cuda=0")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"route weight {part!r}: {value!r} is not a number") from None
        weights[name.strip()] = weight
    if not weights:
        raise ValueError("route weights are empty: write POOL=WEIGHT[,POOL=WEIGHT...]")
    return weights


def check_weights(weights: Mapping[str, float], pools: Mapping[str, object] | set[str]) -> dict[str, float]:
    """Validate weights against the known pools: every name known, none negative, at least one positive.

    Pools not named keep weight 0 (standby: they serve only when a weighted pool fails)."""
    names = set(pools)
    unknown = sorted(set(weights) - names)
    if unknown:
        raise ValueError(f"route weights name unknown pool(s) {unknown}; pools: {sorted(names)}")
    bad = {k: v for k, v in weights.items() if not v >= 0 or v != v or v == float("inf")}
    if bad:
        raise ValueError(f"route weights must be finite and >= 0, got {bad}")
    full = {name: float(weights.get(name, 0.0)) for name in sorted(names)}
    if not any(w > 0 for w in full.values()):
        raise ValueError(f"route weights: at least one pool needs a weight > 0, got {full}")
    return full

"""Server configuration: typed, validated at start-up, read from a JSON file, then PETSTREAM_* env, then flags."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from inference.pools import PoolSpec, check_weights, default_pool
from ingest.transport import SecuritySettings
from streaming.batcher import BatchPolicy
from streaming.events import EventRule
from streaming.sinks import SINKS

Backend = Literal["auto", "cpu", "cuda", "neuron", "openvino"]  # auto: openvino if installed, else cpu
Sampling = Literal["rate", "keyframes", "motion", "compressed"]
DType = Literal["auto", "fp32", "bf16", "int8"]  # auto: fastest within fidelity for the CPU (inference.autobuild)
StoreSync = Literal["normal", "full"]  # SQLite synchronous: full = each commit reaches the disk (power-loss safe)
#: room gRPC's message limit leaves beyond max_chunk_bytes for a CameraMessage's own fields and framing
MESSAGE_FRAMING_BYTES = 64 << 10


def default_data_dir() -> str:
    """Where the server keeps its event store unless told: $XDG_STATE_HOME/petstream (~/.local/state/petstream)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "petstream")


@dataclass(frozen=True)
class ServerConfig:
    """Everything `petstream serve` can be told. Every field has a default."""

    host: str = "127.0.0.1"  # interface to bind; 0.0.0.0 for all
    port: int = 50051  # 0 picks a free port (printed at start-up)
    model: str = "sim-tiny"  # registry name (tiny, sim-tiny, blip-base-random), local folder or hub id
    backend: Backend = "auto"
    dtype: DType = "auto"
    artifacts: str | None = None  # folder written by `petstream compile`; None: compiled and cached (see compile)
    compile: bool = True  # without artifacts: build compiled stages on first start, cached by model fingerprint
    cache_dir: str | None = None  # compiled-stage cache; None = $PETSTREAM_CACHE/artifacts (~/.cache/petstream)
    threads: int | None = None  # torch threads for the model; None = all cores
    default_sample_fps: float = 1.0  # used when a camera asks for 0
    default_sampling: Sampling = "rate"  # used when a camera leaves StreamOpen.sampling unspecified
    still_recheck_s: float = 20.0  # motion/compressed gating: look at a still scene at least this often
    adaptive_rate: bool = True  # under overload lower every camera's sampling rate instead of growing latency
    late_binding: bool = True  # live cameras: a frame waiting for the model takes the newest picture decoded since
    max_sample_fps: float = 30.0
    max_chunk_bytes: int = 8 << 20  # most video bytes in one VideoChunk; gRPC's receive limit adds framing room
    max_frame_bytes: int = 4 << 20  # bytes buffered without a frame boundary before the decoder resets
    decode_threads: int = 2
    readahead_chunks: int = 64  # chunks read ahead of each camera's decoder before gRPC flow control pushes back
    idle_timeout_s: float = 60.0  # a stream that sends no chunk this long ends (DEADLINE_EXCEEDED); 0 = never
    max_streams: int = 256  # concurrent camera streams per server; one more is refused with RESOURCE_EXHAUSTED
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    events: EventRule = field(default_factory=EventRule)  # the event rule of every behavior ...
    behavior_events: dict[str, EventRule] = field(default_factory=dict)  # ... unless named here
    warn_interval_s: float = 5.0  # at most one drop warning per camera per interval
    # Transport security (docs/security.md): no tls_cert = plaintext, allowed off loopback only with insecure.
    tls_cert: str | None = None  # server certificate chain (PEM)
    tls_key: str | None = None  # its private key (PEM)
    client_ca: str | None = None  # CA of the cameras' client certificates: mutual TLS, certificates required
    token_key: str | None = None  # TLS without client_ca: HMAC secret or Ed25519 key file verifying bearer tokens
    insecure: bool = False  # allow plaintext on a non-loopback host
    # Limits (docs/protocol.md "Limits"); a hit ends the stream naming the limit. 0 = unlimited where noted.
    max_decoded_pixels: int = 3840 * 2160  # width x height any SPS, JPEG or Ask image may declare (0 = unlimited)
    max_chunks_per_s: float = 1000.0  # per device, averaged over 2 s (0 = unlimited)
    max_bitrate_bps: float = 100e6  # video bits per second per device, averaged over 2 s (0 = unlimited)
    max_streams_per_device: int = 1  # a newer stream of a device beyond this replaces its oldest (ABORTED)
    max_outbox_messages: int = 256  # replies queued for a camera not reading; then scores/warnings are dropped
    metrics_port: int = 0  # HTTP port for /metrics (Prometheus), the operator page at / and its JSON; 0 = off
    metrics_per_device: bool = False  # add a `device` label to the per-camera counters (small fleets only)
    # -- scale-out (docs/deploy.md) ---------------------------------------------------------------------------
    workers: int = 1  # ingest processes sharing the port (SO_REUSEPORT); each owns its cameras' streams
    inference: str = "local"  # local (engines in this process), ray-local (a local Ray instance) or ray://ADDRESS
    pools: tuple[PoolSpec, ...] = ()  # backend pools; empty = one pool from backend/dtype/artifacts/threads
    route: dict[str, float] = field(default_factory=dict)  # initial weights by pool; empty = the first pool only
    pool_cooldown_s: float = 5.0  # a pool that failed or timed out rests this long before it is tried again
    inflight_batches: int = 0  # batches on the model at once; 0 = what the tier takes (1 local, more on Ray)
    ingest_cpus: tuple[int, ...] = ()  # pin gRPC, sessions and decoding to these cores (empty: no pinning)
    model_cpus: tuple[int, ...] = ()  # pin the model thread (and its torch threads) to these cores
    ray_num_cpus: float | None = None  # ray-local: logical CPUs of the local instance; None = every core
    ray_deploy: bool = True  # False: attach to pools another process deployed (serve --workers does this)
    route_file: str | None = None  # shared route of `serve --workers` (the supervisor sets it)
    # connection ageing: after this long a connection gets GOAWAY and its streams max_connection_age_grace_s to
    # finish; the camera reconnects through the balancer, so a grown ingest tier rebalances (0 = never)
    max_connection_age_s: float = 0.0
    max_connection_age_grace_s: float = 30.0
    # Events leave the camera's stream through a durable store (docs/protocol.md "Events for the backend").
    data_dir: str = field(default_factory=default_data_dir)  # the event store (events.db); one server per folder
    store_sync: StoreSync = "full"  # full: a commit survives a power loss; normal: an application crash only
    event_retention_days: float = 30.0  # stored events older than this are removed; 0 = keep forever
    episode_resume_s: float = 120.0  # an open episode waits this long for its camera to reconnect, then ENDS
    drain_timeout_s: float = 10.0  # SIGTERM: longest wait for frames in flight and event delivery before exiting
    sink: str | None = None  # broker the stored events are published to, e.g. nats://127.0.0.1:4222; None = none
    stats_interval_s: float = 60.0  # log a runtime line (RSS, fds, tasks, threads, streams) this often; 0 = never

    def __post_init__(self) -> None:
        if self.backend not in get_args(Backend):
            raise ValueError(f"backend: {self.backend!r} is not one of {list(get_args(Backend))}")
        if self.default_sampling not in get_args(Sampling):
            raise ValueError(f"default_sampling: {self.default_sampling!r} is not one of {list(get_args(Sampling))}")
        if self.still_recheck_s <= 0:
            raise ValueError(f"still_recheck_s: must be > 0, got {self.still_recheck_s}")
        if self.dtype not in get_args(DType):
            raise ValueError(f"dtype: {self.dtype!r} is not one of {list(get_args(DType))}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not in 0..65535")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port: {self.metrics_port} is not in 0..65535 (0 = off)")
        if not 0 < self.default_sample_fps <= self.max_sample_fps:
            raise ValueError(
                f"default_sample_fps: {self.default_sample_fps} must be in (0, max_sample_fps={self.max_sample_fps}]"
            )
        positive = ("max_chunk_bytes", "max_frame_bytes", "decode_threads", "readahead_chunks", "max_streams")
        for name in (*positive, "max_streams_per_device", "max_outbox_messages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.idle_timeout_s >= 0:
            raise ValueError(f"idle_timeout_s: must be >= 0 (0 = never), got {self.idle_timeout_s}")
        for name in ("max_decoded_pixels", "max_chunks_per_s", "max_bitrate_bps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0 (0 = unlimited), got {getattr(self, name)}")
        self.security.validate()
        if not self.data_dir:
            raise ValueError("data_dir: must name a folder for the event store")
        if self.store_sync not in get_args(StoreSync):
            raise ValueError(f"store_sync: {self.store_sync!r} is not one of {list(get_args(StoreSync))}")
        for name in ("event_retention_days", "episode_resume_s", "drain_timeout_s", "stats_interval_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.sink is not None and self.sink.partition("://")[0] not in SINKS:
            raise ValueError(
                f"sink: {self.sink!r} must be a URL with a scheme in {sorted(SINKS)}, e.g. nats://host:4222"
            )
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers: must be in 1..64, got {self.workers}")
        if self.inference not in ("local", "ray-local") and not self.inference.startswith("ray://"):
            raise ValueError(f"inference: {self.inference!r} is not one of local, ray-local, ray://ADDRESS")
        if self.inference == "ray://":
            raise ValueError("inference: ray:// needs an address, e.g. ray://ray-head:10001")
        if self.inflight_batches < 0:
            raise ValueError(f"inflight_batches: must be >= 0 (0 = auto), got {self.inflight_batches}")
        if self.max_connection_age_s < 0 or self.max_connection_age_grace_s < 0:
            raise ValueError("max_connection_age_s and max_connection_age_grace_s: must be >= 0 (0 = never)")
        if self.pool_cooldown_s < 0:
            raise ValueError(f"pool_cooldown_s: must be >= 0, got {self.pool_cooldown_s}")
        names = [p.name for p in self.backend_pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pools: names must be unique, got {names}")
        if self.route:
            check_weights(self.route, set(names))
        cores = os.cpu_count() or 1
        for key in ("ingest_cpus", "model_cpus"):
            bad = [c for c in getattr(self, key) if not 0 <= c < cores]
            if bad:
                raise ValueError(f"{key}: cores {bad} do not exist (this machine has 0..{cores - 1})")
        if bool(self.ingest_cpus) != bool(self.model_cpus):
            raise ValueError("ingest_cpus and model_cpus: pin both or neither")

    @property
    def backend_pools(self) -> tuple[PoolSpec, ...]:
        """The configured pools, or the one pool of backend/dtype/artifacts/threads."""
        return self.pools or (default_pool(self.backend, self.dtype, self.artifacts, self.threads),)

    @property
    def max_receive_message_bytes(self) -> int:
        """gRPC's receive limit: a chunk of exactly max_chunk_bytes plus its protobuf framing must fit."""
        return self.max_chunk_bytes + MESSAGE_FRAMING_BYTES

    @property
    def security(self) -> SecuritySettings:
        return SecuritySettings(self.host, self.tls_cert, self.tls_key, self.client_ca, self.token_key, self.insecure)

    @classmethod
    def load(cls, path: str | None = None, env: dict[str, str] | None = None, **flags: Any) -> ServerConfig:
        """File first, then PETSTREAM_<FIELD> environment variables, then explicit flags (None = unset)."""
        values: dict[str, Any] = {}
        if path:
            with open(path) as fh:
                values.update(json.load(fh))
        env = dict(os.environ) if env is None else env
        for f in fields(cls):
            key = f"PETSTREAM_{f.name.upper()}"
            if key in env and f.name not in _STRUCTURED:
                values[f.name] = _coerce(f.name, env[key], getattr(cls(), f.name))
        values.update({k: v for k, v in flags.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; allowed: {[f.name for f in fields(cls)]}")
        if isinstance(values.get("batch"), dict):
            values["batch"] = BatchPolicy(**values["batch"])
        if isinstance(values.get("events"), dict):
            values["events"] = EventRule(**values["events"])
        if isinstance(values.get("behavior_events"), dict):
            values["behavior_events"] = {
                name: rule if isinstance(rule, EventRule) else EventRule(**rule)
                for name, rule in values["behavior_events"].items()
            }
        if isinstance(values.get("pools"), list | tuple):
            values["pools"] = tuple(p if isinstance(p, PoolSpec) else PoolSpec.from_dict(p) for p in values["pools"])
        for key in ("ingest_cpus", "model_cpus"):
            if isinstance(values.get(key), list | str):
                values[key] = _cpus(key, values[key])
        return replace(cls(), **values)

    def rule_for(self, behavior: str) -> EventRule:
        return self.behavior_events.get(behavior, self.events)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_STRUCTURED = ("batch", "events", "behavior_events", "pools", "route")


def _cpus(name: str, raw: list[int] | str) -> tuple[int, ...]:
    """Cores as a list or '0,2-3'."""
    if isinstance(raw, list):
        return tuple(int(c) for c in raw)
    cores: list[int] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        lo, _, hi = part.partition("-")
        try:
            cores += range(int(lo), int(hi or lo) + 1)
        except ValueError:
            raise ValueError(f"{name}: {raw!r} is not a list of cores like 0,2-3") from None
    return tuple(cores)


def _coerce(name: str, raw: str, default: Any) -> Any:
    if raw.lower() in ("", "none", "null") and default is None:
        return None
    if name in ("ingest_cpus", "model_cpus"):
        return _cpus(name, raw)
    if name == "ray_num_cpus":
        return float(raw)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    try:
        if isinstance(default, int) or (default is None and name == "threads"):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"PETSTREAM_{name.upper()}={raw!r} is not a valid {type(default).__name__}") from None
    return raw

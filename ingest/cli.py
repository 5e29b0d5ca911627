"""`petstream serve`: registered by the ingest layer."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import socket
from dataclasses import replace

log = logging.getLogger(__name__)


SERVE_EPILOG = """\
examples:
  petstream serve                                    # sim-tiny on 127.0.0.1:50051
  petstream serve --host 0.0.0.0 --port 50051 --sampling motion --sample-fps 2
  petstream serve --model Salesforce/blip-vqa-base --artifacts compiled/   # real weights, compiled stages

Settings come from --config FILE (JSON with ServerConfig fields), then PETSTREAM_<FIELD> environment variables
(e.g. PETSTREAM_PORT=50052), then these flags; the defaults shown are ServerConfig's."""


def register(sub: argparse._SubParsersAction) -> None:
    from ingest.config import ServerConfig

    d = ServerConfig()
    p = sub.add_parser(
        "serve",
        help="run the gRPC server that cameras stream to",
        description="Run the petstream gRPC server: cameras open a stream, send video, and get behavior events back.",
        epilog=SERVE_EPILOG,
    )
    p.add_argument("--config", metavar="PATH", help="JSON file with ServerConfig fields (then PETSTREAM_* env, flags)")
    p.add_argument("--host", metavar="HOST", help=f"interface to listen on; 0.0.0.0 for all (default: {d.host})")
    p.add_argument(
        "--port", type=int, metavar="PORT", help=f"port; 0 picks a free one, printed at start-up (default: {d.port})"
    )
    p.add_argument(
        "--model",
        metavar="MODEL",
        help=f"tiny, sim-tiny, blip-base-random, a local model folder or a hub id (default: {d.model})",
    )
    p.add_argument(
        "--backend",
        choices=["auto", "cpu", "cuda", "neuron", "openvino"],
        help=f"where the model runs; auto: openvino when installed, else cpu (default: {d.backend})",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", "fp32", "bf16", "int8"],
        help="auto: the fastest precision the CPU computes natively that keeps p_yes within 0.02 of fp32; int8: "
        f"openvino = calibrated NNCF int8, cpu = dynamic int8 vision linears (default: {d.dtype})",
    )
    p.add_argument(
        "--artifacts",
        metavar="PATH",
        help="folder written by `petstream compile` (default: compiled on first start and cached)",
    )
    p.add_argument(
        "--no-compile",
        dest="compile",
        action="store_const",
        const=False,
        help="run the stages eagerly instead of building compiled ones (default: compile on first start, cache)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="PATH",
        help="compiled-stage cache (default: $PETSTREAM_CACHE/artifacts, i.e. ~/.cache/petstream/artifacts)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="torch threads for the model (default: all cores)")
    p.add_argument(
        "--sample-fps",
        type=float,
        dest="default_sample_fps",
        metavar="FPS",
        help=f"frames per second of video the model looks at, for cameras that ask for 0 "
        f"(default: {d.default_sample_fps:g})",
    )
    p.add_argument(
        "--sampling",
        choices=["rate", "keyframes", "motion", "compressed"],
        dest="default_sampling",
        help="which frames are looked at, for cameras that do not say: rate (every 1/FPS s), keyframes (only "
        "keyframes decoded), motion (when the picture moves), compressed (P-frame sizes decide) "
        f"(default: {d.default_sampling})",
    )
    p.add_argument(
        "--max-batch", type=int, metavar="N", help=f"most frames per model call (default: {d.batch.max_batch})"
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        metavar="MS",
        help=f"longest a frame waits for a batch to fill (default: {d.batch.max_wait_ms:g})",
    )
    sec = p.add_argument_group("transport security (docs/security.md)")
    sec.add_argument(
        "--tls-cert", metavar="PATH", help="server certificate chain (PEM); turns on TLS (default: none = plaintext)"
    )
    sec.add_argument("--tls-key", metavar="PATH", help="private key (PEM) of --tls-cert (default: none)")
    sec.add_argument(
        "--client-ca",
        metavar="PATH",
        help="CA (PEM) of the cameras' client certificates: mutual TLS, certificates required (default: none)",
    )
    sec.add_argument(
        "--token-key",
        metavar="SECRET|PATH",
        help="HMAC secret or Ed25519 key file that verifies bearer tokens (TLS without --client-ca) (default: none)",
    )
    sec.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow plaintext (no TLS, no credential check) on a non-loopback --host (default: off)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="HTTP port for Prometheus /metrics, the operator page at / and its JSON (default: 0 = off)",
    )
    p.add_argument(
        "--metrics-per-device",
        action="store_true",
        default=None,
        help="add a device label to per-camera counters; for small fleets only (default: off)",
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=argparse.SUPPRESS,  # the same option as `petstream --log-format`, accepted after `serve` too
        help="text lines, or one JSON object per line (default: text)",
    )
    out = p.add_argument_group("scale-out (docs/deploy.md)")
    out.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="ingest processes sharing the port (SO_REUSEPORT), each owning its cameras' streams (default: 1)",
    )
    out.add_argument(
        "--inference",
        metavar="TIER",
        help="where the model runs: local (in each process), ray-local (a local Ray Serve instance) or "
        "ray://ADDRESS (a Ray cluster through Ray Client, e.g. ray://ray-head:10001) (default: local)",
    )
    out.add_argument(
        "--route",
        metavar="POOL=W,...",
        help="initial weights over the pools of the config's 'pools', e.g. cpu-int8=1,cuda=0 "
        "(default: the first pool takes everything)",
    )
    out.add_argument(
        "--pin",
        metavar="INGEST:MODEL",
        help="pin ingest (gRPC, sessions, decoding) and the model to cores, e.g. 0:1 (default: no pinning)",
    )
    ev = p.add_argument_group("events and restarts (docs/protocol.md)")
    ev.add_argument(
        "--data-dir",
        metavar="PATH",
        help="folder of the event store (events.db, SQLite WAL); one server per folder "
        "(default: $XDG_STATE_HOME/petstream, i.e. ~/.local/state/petstream)",
    )
    ev.add_argument(
        "--sink",
        metavar="URL",
        help="publish every stored event to this broker, e.g. nats://127.0.0.1:4222 (NATS JetStream) (default: none)",
    )
    ev.add_argument(
        "--drain-timeout-s",
        type=float,
        metavar="S",
        help=f"on SIGTERM, longest wait for frames in flight and event delivery (default: {d.drain_timeout_s:g})",
    )
    ev.add_argument(
        "--batch-deadline-s",
        type=float,
        metavar="S",
        help=f"a model call that takes longer fails its frames, only them; 0 = none (default: {d.batch.deadline_s:g})",
    )
    ev.add_argument(
        "--episode-resume-s",
        type=float,
        metavar="S",
        help=f"an open episode waits this long for its camera to come back (default: {d.episode_resume_s:g})",
    )
    p.set_defaults(func=_serve)


def build_config(args: argparse.Namespace):  # noqa: ANN201
    from dataclasses import replace

    from ingest.config import ServerConfig

    cfg = ServerConfig.load(
        args.config,
        host=args.host,
        port=args.port,
        model=args.model,
        backend=args.backend,
        dtype=args.dtype,
        artifacts=args.artifacts,
        compile=args.compile,
        cache_dir=args.cache_dir,
        threads=args.threads,
        default_sample_fps=args.default_sample_fps,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        token_key=args.token_key,
        insecure=args.insecure,
        default_sampling=args.default_sampling,
        metrics_port=args.metrics_port,
        metrics_per_device=args.metrics_per_device,
        workers=args.workers,
        inference=args.inference,
        route=_route(args.route),
        **_pin(args.pin),  # type: ignore[arg-type]
        data_dir=args.data_dir,
        sink=args.sink,
        drain_timeout_s=args.drain_timeout_s,
        episode_resume_s=args.episode_resume_s,
    )
    pairs = (("max_batch", args.max_batch), ("max_wait_ms", args.max_wait_ms), ("deadline_s", args.batch_deadline_s))
    batch = {k: v for k, v in pairs if v is not None}
    return replace(cfg, batch=replace(cfg.batch, **batch)) if batch else cfg


def _route(text: str | None) -> dict[str, float] | None:
    from inference.pools import parse_weights

    return parse_weights(text) if text else None


def _pin(text: str | None) -> dict[str, tuple[int, ...]]:
    if not text:
        return {}
    from ingest.config import _cpus

    ingest, sep, model = text.partition(":")
    if not sep or not ingest or not model:
        raise ValueError(f"--pin {text!r}: write INGEST_CORES:MODEL_CORES, e.g. 0:1 or 0-1:2-3")
    return {"ingest_cpus": _cpus("--pin", ingest), "model_cpus": _cpus("--pin", model)}


def _serve(args: argparse.Namespace) -> int:
    # a crash in native code (FFmpeg, a model runtime) leaves every thread's Python stack on stderr
    faulthandler.enable(all_threads=True)
    try:
        cfg = build_config(args)
    except ValueError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    try:  # before the model is loaded: a mistyped host should not cost a model load to find out
        socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        log.error("cannot listen on %s:%s: %s", cfg.host, cfg.port, exc)
        return 2
    worker = os.environ.get("PETSTREAM_WORKER_INDEX")
    if cfg.workers > 1 and worker is None:  # the supervisor, not one of its workers
        from ingest.workers import run_workers

        return run_workers(cfg)
    if worker is not None:  # every log line says which ingest process wrote it
        # each ingest process keeps its own event store (one server per folder); the fleet-wide view of events
        # is the broker (--sink), as it is across machines
        cfg = replace(cfg, data_dir=os.path.join(cfg.data_dir, f"worker-{worker}"))
        for handler in logging.getLogger().handlers:
            handler.setFormatter(
                logging.Formatter(f"%(asctime)s %(levelname)s [worker {worker}] %(name)s: %(message)s")
            )
    return asyncio.run(run_server(cfg))


async def run_server(cfg) -> int:  # noqa: ANN001
    from inference.pools import default_pool
    from inference.router import Router
    from inference.tier import build_router, close_tier
    from ingest.server import PetstreamServer
    from ingest.threads import name_os_thread
    from streaming.store import StoreError

    loop = asyncio.get_running_loop()
    threads = len(cfg.model_cpus) if cfg.model_cpus else None  # pinned: torch gets the model's cores only
    pools = [p if p.threads or not threads else replace(p, threads=threads) for p in cfg.backend_pools]
    if threads and cfg.threads is None:
        cfg = replace(cfg, threads=threads)
    try:
        if cfg.inference == "local" and not cfg.pools:  # one local pool: the fast default (compiled, cached)
            single = await loop.run_in_executor(None, lambda: _load_engine(cfg))
            resolved = str(getattr(getattr(single, "backend", None), "name", cfg.backend))
            spec = default_pool(resolved, getattr(single, "dtype", cfg.dtype), cfg.artifacts, cfg.threads)
            engine = Router({spec.name: (spec, single)}, None, cooldown_s=cfg.pool_cooldown_s)
        else:
            engine = await loop.run_in_executor(
                None,
                lambda: build_router(
                    inference=cfg.inference,
                    pools=pools,
                    model=cfg.model,
                    batch_sizes=_batch_sizes(cfg.batch.max_batch),
                    weights=cfg.route or None,
                    cooldown_s=cfg.pool_cooldown_s,
                    deploy=cfg.ray_deploy,
                    ray_num_cpus=cfg.ray_num_cpus,
                    thread_initializer=lambda: name_os_thread("ps-model"),
                ),
            )
    except (ValueError, RuntimeError, OSError, ImportError) as exc:  # bad model, artifacts or backend: say why
        log.error("cannot load the model: %s", exc)
        return 2
    replicas = None
    if cfg.inference != "local":
        from inference.ray_tier import replica_counts

        replicas = replica_counts
    try:
        server = PetstreamServer(engine, cfg, replicas=replicas)
    except ValueError as exc:  # a sink whose broker client is not installed
        log.error("cannot start: %s", exc)
        close_tier(cfg.inference, engine, owner=cfg.ray_deploy)
        return 2
    try:
        port = await server.start()
    except StoreError as exc:  # the data_dir cannot be created, or another server holds it
        log.error("cannot open the event store: %s", exc)
        await server.stop(grace=0)
        close_tier(cfg.inference, engine, owner=cfg.ray_deploy)
        return 2
    except RuntimeError as exc:  # an address cannot be bound (in use, not an address of this machine)
        reason = str(exc).split(";")[0]
        if reason.startswith("metrics_port"):
            log.error("cannot start: %s", reason)
        else:
            log.error("cannot listen on %s:%s: %s", cfg.host, cfg.port, reason)
        await server.stop(grace=0)
        close_tier(cfg.inference, engine, owner=cfg.ray_deploy)
        return 2
    route = ", ".join(f"{n}={w:g}" for n, w in engine.weights().items())
    backends = ", ".join(sorted({str(p["backend"]) for p in engine.snapshot()["pools"].values()}))  # type: ignore[attr-defined]
    print(
        f"petstream serving on {cfg.host}:{port} (model {engine.model_name}, {backends}; "
        f"inference {cfg.inference}, route {route})",
        flush=True,
    )
    if server.metrics_port:
        print(f"petstream metrics and operator page on http://{cfg.host}:{server.metrics_port}/", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # first signal: drain (NOT_SERVING, answer what is in flight, store and deliver events, UNAVAILABLE to each
    # stream); a second one during the drain stops at once
    log.info("shutting down: draining (a second signal stops at once)")
    drain = asyncio.create_task(server.drain())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drain.cancel)
    try:
        await drain
    except asyncio.CancelledError:
        log.warning("second signal: stopping without finishing the drain")
    await server.stop(grace=1.0)
    close_tier(cfg.inference, engine, owner=cfg.ray_deploy)
    return 0


def _load_engine(cfg):  # noqa: ANN001, ANN202
    """Explicit artifacts, or eager stages (--no-compile), or the fast default: compiled, cached, logged."""
    from inference.autobuild import load_fast_engine, manifest_backend
    from inference.engine import load_engine

    sizes = _batch_sizes(cfg.batch.max_batch)
    if cfg.artifacts or not cfg.compile:
        backend = cfg.backend
        if backend == "auto":
            backend = manifest_backend(cfg.artifacts) if cfg.artifacts else "cpu"
        engine = load_engine(
            cfg.model, backend=backend, dtype=cfg.dtype, artifacts=cfg.artifacts, batch_sizes=sizes, threads=cfg.threads
        )
        log.info("inference: %s/%s, %s", backend, engine.dtype, cfg.artifacts or "eager (--no-compile)")
        return engine
    engine, decision = load_fast_engine(
        cfg.model, backend=cfg.backend, dtype=cfg.dtype, batch_sizes=sizes, threads=cfg.threads, cache_dir=cfg.cache_dir
    )
    for line in decision.log_lines():
        log.info("%s", line)
    return engine


def _batch_sizes(max_batch: int) -> tuple[int, ...]:
    sizes = [1]
    while sizes[-1] * 2 <= max_batch:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return tuple(sizes)

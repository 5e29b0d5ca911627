"""`petstream serve`: registered by the ingest layer."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the gRPC server")
    p.add_argument("--config", help="JSON file with ServerConfig fields (then PETSTREAM_* env, then flags)")
    p.add_argument("--host")
    p.add_argument("--port", type=int, help="0 picks a free port; the bound port is printed")
    p.add_argument("--model", help="tiny, sim-tiny (default), blip-base-random, a local folder or a hub id")
    p.add_argument("--backend", choices=["cpu", "cuda", "neuron"])
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "int8"], help="int8: vision linears in int8 (cpu)")
    p.add_argument("--artifacts", help="folder written by `petstream compile`")
    p.add_argument("--threads", type=int, help="torch threads for the model")
    p.add_argument("--sample-fps", type=float, dest="default_sample_fps", help="default frames/s per camera")
    p.add_argument("--max-batch", type=int, help="most frames per model call")
    p.add_argument("--max-wait-ms", type=float, help="longest a frame waits for a batch to fill")
    sec = p.add_argument_group("transport security (docs/security.md)")
    sec.add_argument("--tls-cert", help="server certificate chain (PEM); turns on TLS (default: none = plaintext)")
    sec.add_argument("--tls-key", help="private key (PEM) of --tls-cert (default: none)")
    sec.add_argument(
        "--client-ca",
        help="CA (PEM) of the cameras' client certificates: mutual TLS, certificates required (default: none)",
    )
    sec.add_argument(
        "--token-key",
        help="HMAC secret or Ed25519 key file that verifies bearer tokens (TLS without --client-ca) (default: none)",
    )
    sec.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow plaintext (no TLS, no credential check) on a non-loopback --host (default: off)",
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
        threads=args.threads,
        default_sample_fps=args.default_sample_fps,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        token_key=args.token_key,
        insecure=args.insecure,
    )
    batch = {k: v for k, v in (("max_batch", args.max_batch), ("max_wait_ms", args.max_wait_ms)) if v is not None}
    return replace(cfg, batch=replace(cfg.batch, **batch)) if batch else cfg


def _serve(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(args)
    except ValueError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    return asyncio.run(run_server(cfg))


async def run_server(cfg) -> int:  # noqa: ANN001
    from inference.engine import load_engine
    from ingest.server import PetstreamServer

    loop = asyncio.get_running_loop()
    try:
        engine = await loop.run_in_executor(
            None,
            lambda: load_engine(
                cfg.model,
                backend=cfg.backend,
                dtype=cfg.dtype,
                artifacts=cfg.artifacts,
                batch_sizes=_batch_sizes(cfg.batch.max_batch),
                threads=cfg.threads,
            ),
        )
    except (ValueError, RuntimeError, OSError, ImportError) as exc:  # bad model, artifacts or backend: say why
        log.error("cannot load the model: %s", exc)
        return 2
    server = PetstreamServer(engine, cfg)
    port = await server.start()
    print(f"petstream serving on {cfg.host}:{port} (model {engine.model_name}, {cfg.backend})", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop(grace=2.0)
    engine.close()
    return 0


def _batch_sizes(max_batch: int) -> tuple[int, ...]:
    sizes = [1]
    while sizes[-1] * 2 <= max_batch:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return tuple(sizes)

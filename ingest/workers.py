"""`petstream serve --workers N`: N ingest processes sharing one port (SO_REUSEPORT), run by a small supervisor.

Each worker is a whole `petstream serve` process: it owns the streams the kernel hands it (each connection stays
on the process that accepted it, so a camera's session and decoder state live in one place) and its own batcher.
The supervisor picks the port (kept reserved), writes the workers' config, starts a ray-local tier once for all
of them, restarts a worker that dies, and forwards SIGTERM. Metrics: one scrape target per worker, listed by the
supervisor (docs/deploy.md, "Metrics with several workers").
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import IO

from ingest.config import ServerConfig
from ingest.workers_http import WorkersHttp, worker_metrics_port

log = logging.getLogger(__name__)
READY = "petstream serving on "
RESTART_BACKOFF_S = 1.0


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: it fixes the port for every worker and keeps it ours."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    return sock


class Worker:
    """One `petstream serve` child process and the thread that relays its stdout."""

    def __init__(self, index: int, config_path: str, env: dict[str, str], metrics_port: int = 0) -> None:
        self.index = index
        self.config_path = config_path
        self.env = dict(env, PETSTREAM_METRICS_PORT=str(metrics_port)) if metrics_port else env
        self.proc: subprocess.Popen[str] | None = None
        self.ready = threading.Event()
        self.restarts = 0

    def start(self) -> None:
        cmd = [sys.executable, "-m", "petstream.cli", "serve", "--config", self.config_path]
        env = dict(self.env, PETSTREAM_WORKER_INDEX=str(self.index))
        self.ready.clear()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._relay, args=(self.proc.stdout,), daemon=True, name=f"worker-{self.index}").start()

    def _relay(self, out: IO[str] | None) -> None:
        assert out is not None
        for line in out:
            if line.startswith(READY):
                self.ready.set()
            else:
                sys.stdout.write(f"[worker {self.index}] {line}")
                sys.stdout.flush()


def run_workers(cfg: ServerConfig, *, ready_timeout_s: float = 600.0) -> int:
    """Run cfg.workers ingest processes on one port until SIGTERM/SIGINT; returns the exit code."""
    try:
        reserved = reserve_port(cfg.host, cfg.port)
    except OSError as exc:
        log.error("cannot bind %s:%d: %s", cfg.host, cfg.port, exc)
        return 2
    port = reserved.getsockname()[1]
    run_dir = Path(tempfile.mkdtemp(prefix="petstream-workers-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = replace(cfg, port=port, workers=cfg.workers, route_file=str(run_dir / "route.json"))
    ray_owner = False
    if cfg.inference == "ray-local":  # one local Ray instance for all workers: they join it as drivers
        from ingest.cli import _batch_sizes

        try:
            from inference import ray_tier

            ray_tier.connect(None, num_cpus=cfg.ray_num_cpus)
            ray_tier.connect_pools(cfg.backend_pools, cfg.model, _batch_sizes(cfg.batch.max_batch), deploy=True)
        except Exception as exc:  # noqa: BLE001 - say why and stop: no worker could serve
            log.error("cannot start the ray-local tier: %s", exc)
            return 2
        env["RAY_ADDRESS"] = ray_tier.gcs_address()
        child = replace(child, ray_deploy=False)
        ray_owner = True
    config_path = run_dir / "worker.json"
    data = child.to_dict()
    data["workers"] = cfg.workers  # each worker knows how many share the port (Admin reports it)
    config_path.write_text(json.dumps(data, default=list))
    base = int(getattr(cfg, "metrics_port", 0) or 0)  # each worker serves metrics_port + 1 + index
    workers = [
        Worker(i, str(config_path), env, worker_metrics_port(base, i) if base else 0) for i in range(cfg.workers)
    ]
    http = None
    if base:  # the supervisor's port: every worker's metrics (labelled) and one operator page over all of them
        http = WorkersHttp(
            cfg.host, base, [f"http://{_url_host(cfg.host)}:{worker_metrics_port(base, i)}" for i in range(cfg.workers)]
        )
        try:
            http.start()
        except OSError as exc:
            log.error("metrics_port: cannot bind %s:%d: %s", cfg.host, base, exc)
            return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for w in workers:
        w.start()
    deadline = time.monotonic() + ready_timeout_s
    for w in workers:
        while not w.ready.wait(0.2):
            if stop.is_set() or time.monotonic() > deadline or (w.proc and w.proc.poll() is not None):
                log.error("worker %d did not start (exit code %s)", w.index, w.proc.poll() if w.proc else None)
                _stop_all(workers)
                return 2
    if http is not None:
        print(
            f"petstream metrics and operator page on http://{cfg.host}:{base}/ (all {cfg.workers} workers)", flush=True
        )
    print(
        f"{READY}{cfg.host}:{port} ({cfg.workers} workers, model {cfg.model}, inference {cfg.inference}; "
        f"pids {' '.join(str(w.proc.pid) for w in workers if w.proc)})",
        flush=True,
    )
    while not stop.wait(0.5):
        for w in workers:  # a worker that died is restarted: its cameras reconnect to any worker
            if w.proc is not None and w.proc.poll() is not None and not stop.is_set():
                log.warning("worker %d exited (code %s): restarting", w.index, w.proc.returncode)
                time.sleep(RESTART_BACKOFF_S)
                w.restarts += 1
                w.start()
    log.info("stopping %d workers", len(workers))
    _stop_all(workers)
    if http is not None:
        http.stop()
    reserved.close()
    if ray_owner:
        from inference import ray_tier

        ray_tier.shutdown(delete_apps=True)
    return 0


def _url_host(host: str) -> str:
    """Where the supervisor reaches its workers' HTTP ports: loopback when they listen on every interface."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::", "[::]") else host


def _stop_all(workers: list[Worker], timeout_s: float = 15.0) -> None:
    for w in workers:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for w in workers:
        if w.proc is None:
            continue
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()

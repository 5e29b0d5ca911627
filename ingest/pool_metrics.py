"""Prometheus families of the pool router, read at scrape time from Router.snapshot(): which pool served how much,
its failures and failovers, the weights and route switches. Labels are pool names (a handful, from the config)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inference.router import Router


class RouterCollector(Collector):
    """Register on the server's registry: `registry.register(RouterCollector(router))`."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        snap = self.router.snapshot()
        pools: dict[str, dict[str, object]] = snap["pools"]  # type: ignore[assignment]
        frames = CounterMetricFamily("petstream_pool_frames", "frames answered by each backend pool", labels=["pool"])
        batches = CounterMetricFamily("petstream_pool_batches", "model batches answered by each pool", labels=["pool"])
        failures = CounterMetricFamily(
            "petstream_pool_failures", "batches a pool failed, by reason (error, timeout)", labels=["pool", "reason"]
        )
        failovers = CounterMetricFamily(
            "petstream_pool_failovers",
            "batches that left their chosen pool, by reason (error, timeout, behind, down)",
            labels=["pool", "reason"],
        )
        weight = GaugeMetricFamily("petstream_pool_weight", "route weight of each pool (0 = standby)", labels=["pool"])
        up = GaugeMetricFamily(
            "petstream_pool_up", "1 unless the pool rests after an error or timeout", labels=["pool"]
        )
        inflight = GaugeMetricFamily("petstream_pool_inflight_batches", "batches on each pool now", labels=["pool"])
        service = GaugeMetricFamily(
            "petstream_pool_batch_seconds", "moving average of each pool's batch time", labels=["pool"]
        )
        for name, p in pools.items():
            frames.add_metric([name], float(p["frames"]))  # type: ignore[arg-type]
            batches.add_metric([name], float(p["batches"]))  # type: ignore[arg-type]
            failures.add_metric([name, "error"], float(p["errors"]))  # type: ignore[arg-type]
            failures.add_metric([name, "timeout"], float(p["timeouts"]))  # type: ignore[arg-type]
            weight.add_metric([name], float(p["weight"]))  # type: ignore[arg-type]
            up.add_metric([name], 1.0 if p["up"] else 0.0)
            inflight.add_metric([name], float(p["inflight"]))  # type: ignore[arg-type]
            service.add_metric([name], float(p["service_ms"]) / 1e3)  # type: ignore[arg-type]
        for key, n in snap["failovers"].items():  # type: ignore[attr-defined]
            pool, _, reason = key.partition(":")
            failovers.add_metric([pool, reason], float(n))
        switches = CounterMetricFamily("petstream_route_switches", "route changes that moved a weight")
        switches.add_metric([], float(snap["switches"]))  # type: ignore[arg-type]
        version = GaugeMetricFamily("petstream_route_version", "route version of this process (1 = the configured one)")
        version.add_metric([], float(snap["version"]))  # type: ignore[arg-type]
        yield from (frames, batches, failures, failovers, weight, up, inflight, service, switches, version)

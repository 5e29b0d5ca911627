"""The Grafana dashboard and Prometheus config under docs/ use only metric names the server really exports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from factories import FakeEngine, free_port, scrape, serving, square_units
from prometheus_client.parser import text_string_to_metric_families

from ingest.config import ServerConfig
from simulators.camera import run_camera

DOCS = Path(__file__).resolve().parent.parent / "docs"
NAME = re.compile(r"\bpetstream_[a-z0-9_]+")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "summary": ("_sum", "_count")}


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can hold: the samples, and for families without samples yet (a labelled
    counter nothing has incremented) the names their type implies."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def dashboard_queries(dashboard: dict) -> list[str]:
    exprs: list[str] = []
    for panel in dashboard["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
        for inner in panel.get("panels", []):  # collapsed rows
            exprs += [t["expr"] for t in inner.get("targets", [])]
    return exprs


def test_every_dashboard_query_names_an_exported_metric():
    with serving(FakeEngine(), ServerConfig(port=0, metrics_port=free_port())) as (address, server):
        asyncio.run(run_camera(address, "cam-1", square_units(2.0), speed=0, sample_fps=2.0))
        names = exported_names(scrape(server.metrics_port))
    dashboard = json.loads((DOCS / "grafana" / "petstream-dashboard.json").read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 15
    used = {n for q in queries for n in NAME.findall(q)}
    missing = sorted(used - names)
    assert not missing, f"dashboard queries name metrics the server does not export: {missing}"
    # and the dashboard covers every family the issue lists
    for needed in (
        "petstream_stage_latency_seconds_bucket",
        "petstream_frame_to_event_seconds_bucket",
        "petstream_frames_dropped_total",
        "petstream_model_batch_size_sum",
        "petstream_events_total",
        "petstream_warnings_total",
        "petstream_grpc_server_handled_total",
        "petstream_governor_rate_scale_ratio",
        "petstream_active_streams",
        "petstream_batcher_queued_frames",
        "petstream_model_batches_total",
    ):
        assert needed in used, needed


def test_the_check_itself_catches_a_wrong_name():
    with serving(FakeEngine(), ServerConfig(port=0, metrics_port=free_port())) as (_, server):
        names = exported_names(scrape(server.metrics_port))
    assert "petstream_frames_scored_total" in names and "petstream_events_total" in names
    assert "petstream_frames_scored" not in names  # a counter queried without _total would be caught


def test_prometheus_scrape_config_points_at_the_metrics_path():
    text = (DOCS / "prometheus" / "prometheus.yml").read_text()
    assert re.search(r"metrics_path:\s*/metrics", text) and re.search(r"job_name:\s*petstream", text)
    assert re.search(r'targets:\s*\["[\w.-]+:\d+"\]', text)

"""The Kubernetes manifests under deploy/k8s agree with the code: names, resources, ports, flags, autoscaler bounds."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from inference.pools import APP_PREFIX, NEURON_RESOURCE, PoolSpec, autoscaler_bounds
from ingest.config import ServerConfig
from petstream.cli import build_parser
from simulators.camera import DEVICE_ID_HEADER

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def _docs() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"], doc["metadata"]["name"]] = doc
    return docs


DOCS = _docs()
RAY = DOCS["RayService", "petstream-inference"]
SERVE = yaml.safe_load(RAY["spec"]["serveConfigV2"])
GROUPS = {g["groupName"]: g for g in RAY["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
SIZING = json.loads((ROOT / "deploy" / "sizing.json").read_text())
POOLS = {app["args"]["pool"]["name"]: PoolSpec.from_dict(app["args"]["pool"]) for app in SERVE["applications"]}


def _ingest_config(tmp_path: Path) -> ServerConfig:
    """serve.json of the ingest ConfigMap, its secret files stood in by temporary ones."""
    data = json.loads(DOCS["ConfigMap", "petstream-ingest-config"]["data"]["serve.json"])
    for key in ("tls_cert", "tls_key", "token_key"):
        stand_in = tmp_path / Path(data[key]).name
        stand_in.write_text("stand-in")
        data[key] = str(stand_in)
    path = tmp_path / "serve.json"
    path.write_text(json.dumps(data))
    return ServerConfig.load(str(path), env={})


def test_every_manifest_parses_and_the_serve_config_passes_rays_own_schema() -> None:
    assert {k for k, _ in DOCS} >= {"RayService", "Deployment", "Service", "ConfigMap", "PodMonitor"}
    schema = pytest.importorskip("ray.serve.schema")
    schema.ServeDeploySchema.model_validate(SERVE)
    assert SERVE["proxy_location"] == "Disabled"  # frames go through deployment handles, never Serve's proxies


def test_one_application_and_worker_group_per_pool_with_the_resources_the_code_asks_for() -> None:
    assert set(POOLS) == set(GROUPS) == set(SIZING["pools"]) == {"cpu-int8", "cpu-bf16", "cuda", "neuron"}
    for app in SERVE["applications"]:
        spec = POOLS[app["args"]["pool"]["name"]]
        module, _, attr = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr))
        assert app["name"] == APP_PREFIX + spec.name and app["route_prefix"] is None
        (dep,) = app["deployments"]
        assert dep["name"] == spec.name
        assert dep["ray_actor_options"] == spec.ray_actor_options()
        assert dep["autoscaling_config"] == spec.autoscaling.serve_config()
        assert dep["max_ongoing_requests"] == spec.max_ongoing_requests
        group = GROUPS[spec.name]
        offered = json.loads(json.loads(group["rayStartParams"]["resources"]))
        per_node = SIZING["pools"][spec.name]["replicas_per_node"]
        for name, amount in spec.ray_actor_options().get("resources", {}).items():
            assert offered.get(name, 0) >= amount * per_node, (spec.name, name, offered)
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert float(limits["cpu"]) >= spec.num_cpus * per_node
        assert float(group["rayStartParams"]["num-cpus"]) == float(limits["cpu"])
        assert int(limits.get("nvidia.com/gpu", 0)) >= spec.num_gpus * per_node
        assert int(group["rayStartParams"].get("num-gpus", 0)) == int(limits.get("nvidia.com/gpu", 0))
        assert int(limits.get("aws.amazon.com/neuroncore", 0)) >= spec.neuron_cores * per_node
        assert offered.get(NEURON_RESOURCE, 0) == int(limits.get("aws.amazon.com/neuroncore", 0))
        assert (spec.backend == "cuda") == (spec.num_gpus > 0) and (spec.backend == "neuron") == (spec.neuron_cores > 0)


def test_autoscaler_bounds_are_derived_from_the_load_tests_knee() -> None:
    for name, sizing in SIZING["pools"].items():
        bounds = autoscaler_bounds(
            knee_cameras_per_replica=sizing["knee_cameras_per_replica"],
            replicas_per_node=sizing["replicas_per_node"],
            peak_cameras=SIZING["peak_cameras"],
            offpeak_cameras=SIZING["offpeak_cameras"],
            headroom=SIZING["headroom"],
        )
        a = POOLS[name].autoscaling
        assert (a.min_replicas, a.max_replicas) == (bounds["min_replicas"], bounds["max_replicas"]), name
        group = GROUPS[name]
        assert (group["minReplicas"], group["maxReplicas"]) == (bounds["min_nodes"], bounds["max_nodes"]), name
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_the_ingest_tier_runs_real_flags_and_config_and_reaches_the_ray_head(tmp_path: Path) -> None:
    cfg = _ingest_config(tmp_path)
    deployment = DOCS["Deployment", "petstream-ingest"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["petstream"]
    args = build_parser().parse_args(container["args"])  # every flag is one `petstream serve` knows
    assert args.command == "serve" and args.workers == 1
    assert {p.name for p in cfg.backend_pools} == set(POOLS) and not cfg.ray_deploy
    assert cfg.route and max(cfg.route, key=cfg.route.__getitem__) == "cpu-int8"
    head_ports = {p["name"]: p["containerPort"] for p in _head_ports()}
    assert cfg.inference == f"ray://{RAY['metadata']['name']}-head-svc:{head_ports['client']}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == cfg.port and container["readinessProbe"]["grpc"]["port"] == cfg.port
    service = DOCS["Service", "petstream-ingest"]["spec"]
    assert service["clusterIP"] == "None" and service["ports"][0]["port"] == cfg.port
    assert cfg.max_connection_age_s > 0  # connections age out, so a grown tier rebalances
    assert pod["terminationGracePeriodSeconds"] > cfg.max_connection_age_grace_s


def test_the_balancer_hashes_on_the_header_cameras_send_and_targets_the_ingest_service(tmp_path: Path) -> None:
    cfg = _ingest_config(tmp_path)
    envoy = yaml.safe_load(DOCS["ConfigMap", "petstream-envoy"]["data"]["envoy.yaml"])
    (listener,) = envoy["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    stream_route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert stream_route["match"]["prefix"] == "/petstream.v1.BehaviorStream/"
    assert stream_route["route"]["hash_policy"] == [{"header": {"header_name": DEVICE_ID_HEADER}}]
    assert stream_route["route"]["timeout"] == "0s"
    assert float(hcm["stream_idle_timeout"].rstrip("s")) > cfg.idle_timeout_s
    (cluster,) = envoy["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "RING_HASH"
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("petstream-ingest", cfg.port)
    assert listener["address"]["socket_address"]["port_value"] == cfg.port


def test_prometheus_scrapes_ports_that_exist() -> None:
    ray_monitor = DOCS["PodMonitor", "petstream-inference"]["spec"]
    assert ray_monitor["selector"]["matchLabels"] == {"ray.io/cluster": RAY["metadata"]["name"]}
    assert ray_monitor["podMetricsEndpoints"][0]["port"] in {p["name"] for p in _head_ports()}
    assert RAY["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["metrics-export-port"] == "8080"
    ingest_monitor = DOCS["PodMonitor", "petstream-ingest"]["spec"]
    (container,) = DOCS["Deployment", "petstream-ingest"]["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ingest_monitor["podMetricsEndpoints"][0]["port"] in ports
    config = json.loads(DOCS["ConfigMap", "petstream-ingest-config"]["data"]["serve.json"])
    if "metrics_port" in ServerConfig.__dataclass_fields__:  # the server serves metrics on the port scraped
        assert config.get("metrics_port") == ports["metrics"]


def _head_ports() -> list[dict]:
    return RAY["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]

"""deploy/k8s checked without a Kubernetes cluster: every built-in object validates against
the Kubernetes API schemas (kubernetes-validate, offline, strict), the KEDA ScaledObjects
have the fields KEDA requires (their CRD schema is not available offline here), and every
env var, port, probe path, stream, consumer and service name in them exists in the code,
as tests/test_compose.py checks for compose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import kubernetes_validate
import pytest
import yaml

from crewbus import settings_doc as ref
from crewbus.bus.connection import server_list
from crewbus.bus.topology import consumer_configs
from crewbus.config import load_settings
from crewbus.devstack.cluster import CLUSTER_REPLICAS
from crewbus.httpapi.ops import router as ops_router
from crewbus.httpapi.settings import DEFAULT_HTTP_PORT
from crewbus.llm.simulated import SimulatedModel
from crewbus.settings import BusSettings
from crewbus.telemetry.server import HEALTH_PATH, READY_PATH
from crewbus_contracts import AGENT_ROLES, subjects
from tests.nats_version import oldest_supported, version

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy/k8s"
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests are checked against (kubernetes-validate ships it)."""
NATS_VALUES: dict[str, Any] = yaml.safe_load((K8S / "nats-values.yaml").read_text())
CREDENTIALS = K8S / "credentials.example.yaml"
"""The Secret's template, outside crewbus/ so applying that folder never overwrites it."""
OBJECTS: list[dict[str, Any]] = [
    doc for path in [*sorted((K8S / "crewbus").glob("*.yaml")), CREDENTIALS]
    for doc in yaml.safe_load_all(path.read_text()) if doc
]
BUS_PROBES = {HEALTH_PATH, READY_PATH, "/metrics"}
"""What a bus service's metrics port answers (crewbus.telemetry.server)."""
KEDA_REQUIRED = {"natsServerMonitoringEndpoint", "account", "stream", "consumer",
                 "lagThreshold"}
"""The nats-jetstream scaler's required metadata, as KEDA's documentation lists it."""


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")
SETTINGS = of_kind("ConfigMap")["crewbus-settings"]["data"]
SECRET = of_kind("Secret")["crewbus-credentials"]["stringData"]


def container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = DEPLOYMENTS[name]["spec"]["template"]["spec"][
        "containers"]
    assert len(containers) == 1
    return containers[0]


def port_of(name: str, port_name: str) -> int:
    return next(int(p["containerPort"]) for p in container(name)["ports"]
                if p["name"] == port_name)


@pytest.mark.parametrize("obj", [o for o in OBJECTS if "keda.sh" not in o["apiVersion"]],
                         ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_object_is_valid_against_the_kubernetes_schema(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_everything_is_in_one_namespace_that_is_defined() -> None:
    namespaces = set(of_kind("Namespace"))
    assert len(namespaces) == 1
    for obj in OBJECTS:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] in namespaces, obj["metadata"]["name"]


def test_one_deployment_per_service_each_running_its_own_serve_role() -> None:
    expected = {*ref.SERVE_ROLES}
    assert set(DEPLOYMENTS) == expected
    for name in DEPLOYMENTS:
        args = container(name)["args"]
        assert args[:2] == ["serve", name], name


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_each_deployment_has_requests_probes_and_a_disruption_budget(name: str) -> None:
    spec = container(name)
    assert {"cpu", "memory"} <= set(spec["resources"]["requests"]), name
    port_names = {p["name"] for p in spec["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"]["port"] in port_names, (name, probe)
    labels = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["labels"]
    budgets = [b for b in of_kind("PodDisruptionBudget").values()
               if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
    assert len(budgets) == 1, name
    assert DEPLOYMENTS[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("name", sorted(ref.SERVE_ROLES))
def test_settings_name_only_variables_the_code_reads(name: str) -> None:
    spec = container(name)
    sources = {s.get("configMapRef", s.get("secretRef", {})).get("name")
               for s in spec["envFrom"]}
    assert sources == {"crewbus-settings", "crewbus-credentials"}
    names = set(SETTINGS) | set(SECRET) | {e["name"] for e in spec.get("env", [])}
    assert names <= set(ref.ENV_VARS), names - set(ref.ENV_VARS)


def test_credentials_are_in_the_secret_and_never_in_the_config_map() -> None:
    assert {"OPENAI_API_KEY", "QDRANT_API_KEY"} <= set(SECRET)
    applied = [doc for path in (K8S / "crewbus").glob("*.yaml")
               for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert not [o for o in applied if o["kind"] == "Secret"], "apply would reset the Secret"
    assert not [k for k in SETTINGS if k.endswith(("_KEY", "_TOKEN", "_PASSWORD"))]
    assert not any(SECRET.values()), "the Secret is a template: no committed credential"


def test_the_nats_chart_runs_a_server_the_code_supports() -> None:
    tag = NATS_VALUES["container"]["image"]["tag"]
    assert version(tag) >= oldest_supported(), tag


def test_services_reach_every_node_of_the_nats_chart_at_replicas_three() -> None:
    nodes = NATS_VALUES["config"]["cluster"]["replicas"]
    assert nodes == CLUSTER_REPLICAS and NATS_VALUES["config"]["jetstream"]["enabled"]
    servers = [urlparse(u) for u in server_list(SETTINGS["CREWBUS_NATS_URL"])]
    assert [s.hostname.split(".")[0] for s in servers if s.hostname] == [
        f"nats-{i}" for i in range(nodes)]  # the chart's StatefulSet pods
    assert {s.port for s in servers} == {ref.DEFAULT_NATS_PORT}
    bus = load_settings(SETTINGS).bus
    assert bus.stream_replicas == CLUSTER_REPLICAS
    assert load_settings(SETTINGS).tracing.stream_replicas == CLUSTER_REPLICAS


def test_ports_agree_with_the_settings_and_the_services() -> None:
    metrics = int(SETTINGS["CREWBUS_METRICS_PORT"])
    assert metrics == ref.DEFAULT_METRICS_PORT
    for name in DEPLOYMENTS:
        if name not in ("gateway", "simulated-model"):
            assert port_of(name, "metrics") == metrics, name
    assert port_of("gateway", "http") == int(SETTINGS["CREWBUS_HTTP_PORT"]) == DEFAULT_HTTP_PORT
    sim_args = container("simulated-model")["args"]
    assert int(sim_args[sim_args.index("--port") + 1]) == port_of("simulated-model", "http")
    assert port_of("simulated-model", "http") == ref.DEFAULT_SIMULATED_MODEL_PORT
    for svc in of_kind("Service").values():
        target = svc["spec"]["selector"]["app.kubernetes.io/name"]
        names = {p["name"] for p in container(target)["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names
    model = urlparse(SETTINGS["OPENAI_BASE_URL"])
    assert model.hostname and model.hostname.split(".")[0] in of_kind("Service")
    assert model.port == ref.DEFAULT_SIMULATED_MODEL_PORT


@pytest.mark.parametrize("name", sorted(set(ref.SERVE_ROLES) - {"gateway", "simulated-model"}))
def test_bus_service_probes_ask_the_paths_its_metrics_port_serves(name: str) -> None:
    spec = container(name)
    assert spec["livenessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert spec["readinessProbe"]["httpGet"]["path"] == READY_PATH
    annotations = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in BUS_PROBES


def test_gateway_probes_are_its_own_routes_and_it_binds_every_address() -> None:
    routes = {getattr(r, "path", None) for r in ops_router.routes}
    spec = container("gateway")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert spec[probe]["httpGet"]["path"] in routes, probe
    assert load_settings(SETTINGS).http.host == "0.0.0.0"


@pytest.fixture
async def simulated_model() -> AsyncIterator[str]:
    sim = SimulatedModel()
    url = await sim.start()
    yield url.removesuffix("/v1")
    await sim.stop()


@pytest.mark.anyio
async def test_simulated_model_probe_path_answers_on_the_real_server(
    simulated_model: str,
) -> None:
    path = container("simulated-model")["readinessProbe"]["httpGet"]["path"]
    async with httpx.AsyncClient() as client:
        assert (await client.get(simulated_model + path)).status_code == 200


def test_every_agent_role_scales_on_its_own_jetstream_consumer() -> None:
    scaled = of_kind("ScaledObject")
    consumers = {name: (stream, config) for stream, config in consumer_configs(BusSettings())
                 for name in [config.durable_name]}
    monitor_port = NATS_VALUES["config"]["monitor"]["port"]
    assert monitor_port == ref.DEFAULT_NATS_MONITOR_PORT
    assert {o["spec"]["scaleTargetRef"]["name"] for o in scaled.values()} == set(AGENT_ROLES)
    for obj in scaled.values():
        spec = obj["spec"]
        role = spec["scaleTargetRef"]["name"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert "replicas" not in DEPLOYMENTS[role]["spec"], f"{role}: KEDA owns its replicas"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        [trigger] = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "nats-jetstream" and set(meta) >= KEDA_REQUIRED, role
        assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata are strings"
        stream, consumer = consumers[meta["consumer"]]
        assert meta["consumer"] == subjects.worker_consumer(role)
        assert meta["stream"] == stream == subjects.WORK_STREAM
        assert consumer.filter_subject == subjects.work(role)
        assert int(meta["lagThreshold"]) >= 1
        endpoint = urlparse(f"http://{meta['natsServerMonitoringEndpoint']}")
        assert endpoint.port == monitor_port
        assert endpoint.hostname == "nats-headless.crewbus.svc.cluster.local", (
            "clustered NATS: KEDA asks each node through the chart's headless Service")
        assert meta["account"] == "$G", "no NATS accounts configured: the global account"

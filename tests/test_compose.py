"""docker-compose.yml and infra/ checked without Docker: every service, build, port,
volume, command and mounted file refers to something that exists and agrees with the
settings the code reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from crewbus import settings_doc as ref
from crewbus.bus.connection import server_list
from crewbus.devstack.cluster import CLUSTER_REPLICAS
from crewbus.devstack.nats_server import nats_server_binary
from crewbus.settings import BusSettings, load
from crewbus.telemetry.promconfig import render_static_config
from tests.nats_version import oldest_supported, version

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROMETHEUS_YML = ROOT / "infra/prometheus/prometheus.yml"
NATS_CONF = ROOT / "infra/nats/nats-server.conf"
SCALABLE = {"planner", "researcher", "executor", "critic", "orchestrator", "memory"}
COMPOSE_ONLY_VARS = {"GRAFANA_ADMIN_PASSWORD"}


def crewbus_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in SERVICES.items() if "build" in svc}


def host_port(mapping: str) -> tuple[int, int]:
    host, _, container = mapping.rpartition(":")
    return int(host.rsplit(":", 1)[-1]), int(container)


def test_every_agent_and_platform_service_is_defined() -> None:
    expected = {"nats", "qdrant", "prometheus", "grafana", "simulated-model", *SCALABLE}
    assert expected <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_build_or_image_exists(name: str) -> None:
    svc = SERVICES[name]
    if "build" not in svc:
        assert svc.get("image"), f"{name} has neither build nor image"
        return
    context = ROOT / svc["build"]["context"]
    dockerfile = context / svc["build"]["dockerfile"]
    assert context.is_dir() and dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"Dockerfile copies missing {source}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_host_paths_and_named_volumes_exist(name: str) -> None:
    for volume in SERVICES[name].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith((".", "/")):
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        else:
            assert source in COMPOSE.get("volumes", {}), f"{name}: undeclared volume {source}"


@pytest.mark.parametrize("name", sorted(crewbus_services()))
def test_crewbus_commands_use_valid_serve_roles(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "serve" and command[1] in ref.SERVE_ROLES
    assert command[1] == name, "service name = role, so DNS discovery finds it"


def test_scalable_services_have_no_container_name_or_host_port() -> None:
    for name in SCALABLE:
        assert "container_name" not in SERVICES[name], name
        assert "ports" not in SERVICES[name], f"{name} would clash on a host port when scaled"


def test_simulated_model_port_agrees_with_its_command_and_base_url() -> None:
    svc = SERVICES["simulated-model"]
    command = svc["command"]
    port = int(command[command.index("--port") + 1])
    assert port == ref.DEFAULT_SIMULATED_MODEL_PORT
    assert host_port(svc["ports"][0])[1] == port
    default_url = re.search(r"\$\{OPENAI_BASE_URL:-([^}]*)\}", COMPOSE_TEXT)
    assert default_url is not None
    parsed = urlparse(default_url.group(1))
    assert (parsed.hostname, parsed.port) == ("simulated-model", port)


def test_nats_ports_agree_with_its_config() -> None:
    nats = SERVICES["nats"]
    assert {host_port(p)[1] for p in nats["ports"]} == {
        ref.DEFAULT_NATS_PORT, ref.DEFAULT_NATS_MONITOR_PORT}
    conf_mount = next(v for v in nats["volumes"] if v.endswith(".conf:ro"))
    conf = (ROOT / conf_mount.split(":")[0]).read_text()
    assert re.search(rf"^port:\s*{ref.DEFAULT_NATS_PORT}\b", conf, re.M)
    assert re.search(rf"^http_port:\s*{ref.DEFAULT_NATS_MONITOR_PORT}\b", conf, re.M)
    assert "jetstream" in conf
    assert conf_mount.split(":")[1] in nats["command"]


@pytest.mark.parametrize("name", sorted(crewbus_services()))
def test_environment_names_only_variables_the_code_reads(name: str) -> None:
    env = SERVICES[name]["environment"]
    assert set(env) <= set(ref.ENV_VARS), set(env) - set(ref.ENV_VARS)
    assert int(env["CREWBUS_METRICS_PORT"]) == ref.DEFAULT_METRICS_PORT
    qdrant = urlparse(env["QDRANT_URL"])
    assert qdrant.hostname in SERVICES, f"QDRANT_URL points at unknown service {qdrant.hostname}"
    for server in server_list(env["CREWBUS_NATS_URL"]):
        url = urlparse(server)
        assert url.hostname in SERVICES, f"CREWBUS_NATS_URL names unknown service {url.hostname}"
        assert url.port == ref.DEFAULT_NATS_PORT


def test_every_nats_node_runs_a_server_the_code_supports() -> None:
    for name in ("nats", "nats-2", "nats-3"):
        image = SERVICES[name]["image"]
        assert image.startswith("nats:") and version(image) >= oldest_supported(), image


def test_nats_is_a_three_node_cluster_every_service_reaches_at_replicas_three() -> None:
    """Each node its own store and name, every node routed to every other, and the
    services given all three nodes and replicas 3 (what `crewbus up --cluster 3` runs)."""
    conf = NATS_CONF.read_text()
    routes = re.findall(r"nats-route://([a-z0-9-]+):(\d+)", conf)
    cluster_port = re.search(r"^\s*port:\s*(\d+)", conf.split("cluster {")[1], re.M)
    assert cluster_port is not None
    nodes = {host for host, _ in routes}
    assert len(nodes) == CLUSTER_REPLICAS and nodes <= set(SERVICES)
    assert {int(port) for _, port in routes} == {int(cluster_port.group(1))}
    names = {SERVICES[n]["environment"]["NATS_SERVER_NAME"] for n in nodes}
    stores = {next(v for v in SERVICES[n]["volumes"] if v.endswith(":/data")) for n in nodes}
    assert len(names) == len(stores) == len(nodes), "nodes share a name or a store"
    for name, svc in crewbus_services().items():
        env = svc["environment"]
        reached = {urlparse(u).hostname for u in server_list(env["CREWBUS_NATS_URL"])}
        assert reached == nodes, f"{name} does not list every NATS node"
        assert load(BusSettings, env=env).stream_replicas == CLUSTER_REPLICAS, name
        assert nodes <= set(svc["depends_on"]), name


@pytest.mark.parametrize("node", ["nats", "nats-2", "nats-3"])
def test_the_real_nats_server_accepts_the_cluster_config_for_each_node(node: str) -> None:
    env = {**os.environ, **SERVICES[node]["environment"]}
    run = subprocess.run([nats_server_binary(), "-c", str(NATS_CONF), "-t"], env=env,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_interpolated_and_example_variables_are_known() -> None:
    known = set(ref.ENV_VARS) | COMPOSE_ONLY_VARS
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_TEXT))
    assert interpolated <= known, interpolated - known
    example = (ROOT / ".env.example").read_text()
    mentioned = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    assert mentioned and mentioned <= known, mentioned - known


def test_compose_works_without_a_dot_env() -> None:
    """Every ${VAR} has a default, so `docker compose up` needs no .env."""
    assert not re.search(r"\$\{[A-Z0-9_]+\}", COMPOSE_TEXT)


def test_grafana_mounts_match_its_provisioning() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    assert mounts["./dashboards"] == "/var/lib/grafana/dashboards/crewbus"
    provider = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/dashboards/crewbus.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./dashboards"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "dashboards" / Path(home).name).is_file()
    datasource = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text())
    url = urlparse(datasource["datasources"][0]["url"])
    assert url.hostname in SERVICES
    assert any(host_port(p)[1] == url.port for p in SERVICES[url.hostname]["ports"])


def test_prometheus_scrapes_every_crewbus_service_by_dns() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    discovered: set[str] = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A" and sd["port"] == ref.DEFAULT_METRICS_PORT
            for dns_name in sd["names"]:
                assert dns_name in SERVICES, f"job {job['job_name']}: no service {dns_name}"
                discovered.add(dns_name)
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.rsplit(":", 1)[0]
                assert host == "localhost" or host in SERVICES, target
    assert set(crewbus_services()) <= discovered


def _promtool_check(path: Path) -> None:
    run = subprocess.run(["promtool", "check", "config", str(path)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_prometheus_yml() -> None:
    _promtool_check(PROMETHEUS_YML)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rendered_static_config(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(render_static_config({"researcher": ["127.0.0.1:9465", "127.0.0.1:9466"],
                                          "orchestrator": ["127.0.0.1:9464"]}))
    _promtool_check(path)
    assert yaml.safe_load(path.read_text())["scrape_configs"][1]["job_name"] == "researcher"

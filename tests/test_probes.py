"""The probes Kubernetes checks (deploy/k8s): a bus service's /healthz and /readyz on its
metrics port, against a real `crewbus serve` process and a real nats-server."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest

from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.telemetry.server import HEALTH_PATH, READY_PATH
from tests.stack import service_env, spawn_service

pytestmark = pytest.mark.anyio


def status_of(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


async def wait_status(port: int, path: str, wanted: int, timeout_s: float = 60) -> None:
    with anyio.fail_after(timeout_s):
        while await anyio.to_thread.run_sync(status_of, port, path) != wanted:
            await anyio.sleep(0.1)


async def test_a_service_is_live_at_once_and_ready_only_while_nats_is_reachable(
    nats_server: NatsServer, processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    port = free_port()
    env = service_env(nats_server.url, "http://127.0.0.1:9/v1")
    env["CREWBUS_METRICS_PORT"] = str(port)
    processes.append(spawn_service("planner", env, tmp_path / "logs"))
    await wait_status(port, HEALTH_PATH, 200)
    await wait_status(port, READY_PATH, 200)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b"crewbus_service_info" in body
    nats_server.stop()
    await wait_status(port, READY_PATH, 503)
    assert status_of(port, HEALTH_PATH) == 200, "liveness must not fail for a NATS outage"
    nats_server.start()
    await wait_status(port, READY_PATH, 200)

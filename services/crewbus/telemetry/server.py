"""Serve this process's metrics at /metrics for Prometheus to scrape."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry

from crewbus.telemetry.env_reference import DEFAULT_METRICS_PORT

METRICS_PORT_ENV = "CREWBUS_METRICS_PORT"


def metrics_port(
    default: int = DEFAULT_METRICS_PORT, env: dict[str, str] | None = None
) -> int | None:
    """The port from `CREWBUS_METRICS_PORT` (else `default`); None when it is 0 (disabled)."""
    source = os.environ if env is None else env
    raw = source.get(METRICS_PORT_ENV, "").strip()
    port = int(raw) if raw else default
    if not 0 <= port <= 65535:
        raise ValueError(f"{METRICS_PORT_ENV}={raw!r} is not a TCP port")
    return port or None


def start_metrics_server(
    port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> int:
    """Serve /metrics on a daemon thread; return the bound port (`port=0` picks a free one)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)

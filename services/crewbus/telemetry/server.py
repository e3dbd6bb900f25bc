"""Serve this process's metrics at /metrics for Prometheus to scrape."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry

from crewbus.settings import MetricsSettings, load


def metrics_port(env: Mapping[str, str] | None = None) -> int | None:
    """The port from `CREWBUS_METRICS_PORT` (default 9464); None when it is 0 (disabled)."""
    return load(MetricsSettings, env=env).metrics_port or None


def start_metrics_server(
    port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> int:
    """Serve /metrics on a daemon thread; return the bound port (`port=0` picks a free one)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)

"""Serve this process's metrics at /metrics for Prometheus to scrape, and its probes:
`/healthz` (the process answers) and `/readyz` (connected to NATS, topology in place) for
Kubernetes' liveness and readiness checks. One port, so a pod exposes one HTTP port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from crewbus.settings import MetricsSettings, load

HEALTH_PATH = "/healthz"
"""200 while the process's HTTP thread answers: the liveness probe."""
READY_PATH = "/readyz"
"""200 once the service is on the bus (`mark_ready`) and while its NATS connection is up,
503 otherwise: the readiness probe."""

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Readiness:
    """What /readyz asks; None until the service says it is on the bus."""

    check: Callable[[], bool] | None = None


_readiness = _Readiness()


def mark_ready(check: Callable[[], bool]) -> None:
    """From now on /readyz answers `check()` (e.g. `lambda: nc.is_connected`)."""
    _readiness.check = check


def metrics_port(env: Mapping[str, str] | None = None) -> int | None:
    """The port from `CREWBUS_METRICS_PORT` (default 9464); None when it is 0 (disabled)."""
    return load(MetricsSettings, env=env).metrics_port or None


def start_metrics_server(
    port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> int:
    """Serve /metrics and the probes on a daemon thread; return the bound port (`port=0`
    picks a free one)."""
    server = make_server(host, port, _app(make_wsgi_app(registry)), _ThreadingServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return int(server.server_port)


def _app(metrics: WsgiApp) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH:
            return _plain(start_response, "200 OK", b"ok\n")
        if path == READY_PATH:
            check = _readiness.check
            if check is None:
                return _plain(start_response, "503 Service Unavailable", b"starting\n")
            if not check():
                return _plain(start_response, "503 Service Unavailable", b"NATS unreachable\n")
            return _plain(start_response, "200 OK", b"ready\n")
        return metrics(environ, start_response)

    return app


def _plain(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
    return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the service's log."""

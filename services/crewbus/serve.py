"""`crewbus serve <service>`: one service alone in this process, wired by its bootstrap."""

from __future__ import annotations

import logging

from crewbus.config import Settings, load_settings
from crewbus.runner import bus, run_until_signalled
from crewbus.service_names import SERVICES

log = logging.getLogger(__name__)


class UnknownServiceError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")


async def serve(
    service: str, nats_url: str | None = None, port: int | None = None, host: str = "127.0.0.1"
) -> None:
    if service not in SERVICES:
        raise UnknownServiceError(service)
    settings = load_settings(nats_url=nats_url)
    _serve_metrics(service, settings)
    if service == "simulated-model":
        await run_until_signalled(lambda: _simulated_model(host, port))
    else:
        await run_until_signalled(lambda: _on_the_bus(service, settings))
    log.info("%s stopped", service)


async def _on_the_bus(service: str, settings: Settings) -> None:
    from crewbus.bootstrap import bootstrap, bus_settings

    async with (bus(bus_settings(settings, service), f"crewbus-{service}") as nc,
                bootstrap(service, settings, nc) as run):
        await run()


async def _simulated_model(host: str, port: int | None) -> None:
    from crewbus.llm.settings import SIMULATED_MODEL_PORT
    from crewbus.llm.simulated import serve_simulated_model

    await serve_simulated_model(host, port or SIMULATED_MODEL_PORT, 0.0)


def _serve_metrics(service: str, settings: Settings) -> None:
    """Every process serves /metrics on CREWBUS_METRICS_PORT (0 disables it)."""
    from crewbus.telemetry.metrics import mark_service_up
    from crewbus.telemetry.server import start_metrics_server

    port = settings.metrics.metrics_port
    if not port:
        return
    bound = start_metrics_server(port)
    mark_service_up(service)
    log.info("%s serves /metrics on port %d", service, bound)

"""`crewbus serve <service>`: one service alone in this process, wired by its bootstrap."""

from __future__ import annotations

import logging
import time

import anyio

from crewbus.config import Settings, load_settings
from crewbus.exception_groups import innermost
from crewbus.leftover_tasks import cancel_leftover_tasks
from crewbus.runner import bus, run_until_signalled
from crewbus.service_names import EVALUATOR, GATEWAY, SERVICES

log = logging.getLogger(__name__)


class UnknownServiceError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")


async def serve(
    service: str, nats_url: str | None = None, port: int | None = None, host: str | None = None,
    evaluators_file: str | None = None, add_to: str | None = None,
) -> None:
    if service not in SERVICES:
        raise UnknownServiceError(service)
    settings = load_settings(nats_url=nats_url)
    if service == EVALUATOR:
        from crewbus.evals.online.startup import load_plan

        settings = _evaluator_options(settings, evaluators_file, add_to)
        load_plan(settings.evaluator)  # a bad file is one line now, before NATS is tried
    if service == GATEWAY:  # it serves /metrics on its own port; --port/--host are its own
        settings = _gateway_address(settings, port, host)
        from crewbus.telemetry.metrics import mark_service_up

        mark_service_up(service)
    else:
        _serve_metrics(service, settings)
    try:
        if service == "simulated-model":
            await run_until_signalled(lambda: _simulated_model(host or "127.0.0.1", port))
        else:
            await run_until_signalled(lambda: _on_the_bus(service, settings))
    finally:
        with anyio.CancelScope(shield=True):
            await cancel_leftover_tasks()  # a connection's reconnect loop, say
    log.info("%s stopped", service)


def _evaluator_options(settings: Settings, evaluators_file: str | None,
                       add_to: str | None) -> Settings:
    """`--file` and `--add-to` win over `CREWBUS_EVALUATORS_FILE` and
    `CREWBUS_EVALUATOR_ADD_TO`."""
    import msgspec

    changes = {k: v for k, v in (("evaluators_file", evaluators_file),
                                 ("evaluator_add_to", add_to)) if v}
    if add_to:
        from crewbus.evals.datasets import check_name

        check_name(add_to)
    return msgspec.structs.replace(
        settings, evaluator=msgspec.structs.replace(settings.evaluator, **changes))


def _gateway_address(settings: Settings, port: int | None, host: str | None) -> Settings:
    import msgspec

    changes = {k: v for k, v in (("port", port), ("host", host)) if v is not None}
    return msgspec.structs.replace(settings, http=msgspec.structs.replace(settings.http,
                                                                          **changes))


STARTUP_PATIENCE_S = 120.0
"""How long a service keeps starting again when NATS stops answering while it sets up (a
nats-server restarted under it: JetStream's API times out until the server has recovered
its streams). A service that is already serving rides out restarts by reconnecting."""


def _startup_hiccup(exc: BaseException) -> bool:
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeoutError
    from nats.js.errors import ServiceUnavailableError

    return isinstance(innermost(exc),
                      NatsTimeoutError | NoRespondersError | ServiceUnavailableError)


async def _on_the_bus(service: str, settings: Settings) -> None:
    """Connect, set up, serve. A set-up that NATS stops answering is begun again on a new
    connection (whatever the failed one subscribed goes with it), for STARTUP_PATIENCE_S."""
    from crewbus.bootstrap import bootstrap, bus_settings
    from crewbus.telemetry.server import mark_ready

    deadline = time.monotonic() + STARTUP_PATIENCE_S
    while True:
        serving = False
        try:
            async with (bus(bus_settings(settings, service), f"crewbus-{service}") as nc,
                        bootstrap(service, settings, nc) as run):
                serving = True
                mark_ready(lambda: nc.is_connected)
                await run()
            return
        except Exception as exc:
            if serving or not _startup_hiccup(exc) or time.monotonic() > deadline:
                raise
            log.warning("%s: NATS stopped answering while it started (%s); starting again",
                        service, type(exc).__name__)
            await anyio.sleep(1.0)


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

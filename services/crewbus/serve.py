"""`crewbus serve <service>`: one service alone in this process."""

from __future__ import annotations

import logging

from crewbus import settings as settings_mod
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
    _serve_metrics(service)
    if service == "orchestrator":
        await run_until_signalled(lambda: _orchestrator(nats_url))
    elif service == "memory":
        await run_until_signalled(lambda: _memory(nats_url))
    elif service == "simulated-model":
        await run_until_signalled(lambda: _simulated_model(host, port))
    else:
        await run_until_signalled(lambda: _agent(service, nats_url))
    log.info("%s stopped", service)


async def _orchestrator(nats_url: str | None) -> None:
    from crewbus.gateway import start_gateway
    from crewbus.orchestrator.service import Orchestrator
    from crewbus.orchestrator.settings import OrchestratorSettings
    from crewbus.tracing import start_tracer
    from crewbus_agents.tools import load_tool_settings

    config = settings_mod.load(OrchestratorSettings, nats_url=nats_url)
    async with bus(config, "crewbus-orchestrator") as nc:
        tracer = await start_tracer(nc.jetstream(), "orchestrator",
                                    extra_patterns=load_tool_settings().redact_patterns)
        orchestrator = await Orchestrator.create(nc, nc.jetstream(), config, tracer)
        await start_gateway(nc, nc.jetstream(), config.max_submit_bytes)
        log.info("orchestrator ready on %s", config.nats_url)
        await orchestrator.run()


async def _memory(nats_url: str | None) -> None:
    from crewbus.memory.service import run
    from crewbus.memory.settings import load_memory_settings
    from crewbus.settings import BusSettings

    config = settings_mod.load(BusSettings, nats_url=nats_url)
    async with bus(config, "crewbus-memory") as nc:
        await run(nc, load_memory_settings())


async def _agent(role: str, nats_url: str | None) -> None:
    from crewbus.llm.adapter import LLMClient
    from crewbus.llm.settings import llm_settings_for
    from crewbus.memory.client import MemoryClient
    from crewbus.tracing import start_tracer
    from crewbus_agents.roles import AGENTS
    from crewbus_agents.runtime import build_agent_runtime
    from crewbus_agents.settings import AgentSettings
    from crewbus_agents.tools import load_tool_settings

    config = settings_mod.load(AgentSettings, nats_url=nats_url)
    async with LLMClient(llm_settings_for(role), role) as llm, bus(config, f"crewbus-{role}") as nc:
        tracer = await start_tracer(nc.jetstream(), role,
                                    extra_patterns=load_tool_settings().redact_patterns)
        runtime = await build_agent_runtime(
            AGENTS[role], nc.jetstream(), llm, config, memory=MemoryClient(nc), tracer=tracer)
        log.info("%s ready on %s (model %s)", role, config.nats_url, llm.settings.model)
        await runtime.run()


async def _simulated_model(host: str, port: int | None) -> None:
    from crewbus.llm.settings import SIMULATED_MODEL_PORT
    from crewbus.llm.simulated import serve_simulated_model

    await serve_simulated_model(host, port or SIMULATED_MODEL_PORT, 0.0)


def _serve_metrics(service: str) -> None:
    """Every process serves /metrics on CREWBUS_METRICS_PORT (0 disables it)."""
    from crewbus.telemetry.metrics import mark_service_up
    from crewbus.telemetry.server import metrics_port, start_metrics_server

    port = metrics_port()
    if port is None:
        return
    bound = start_metrics_server(port)
    mark_service_up(service)
    log.info("%s serves /metrics on port %d", service, bound)

"""The composition root: one `bootstrap` per service, wiring it from the settings tree.

Each takes the process's `Settings` and a connected NATS client and yields the service's
`run`. Dependencies are injected and default to the real ones (cosmicpython's
`bootstrap()`): `crewbus serve` passes none, the tests pass their own model clients and
tracer. Adding a service is one settings Struct in `crewbus.config.Settings` and one
function here, named in `BOOTSTRAPS`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS

from crewbus.config import Settings
from crewbus.memory.client import MemoryClient
from crewbus.settings import BusSettings
from crewbus.tracing import Tracer, start_tracer

if TYPE_CHECKING:
    from crewbus.llm.adapter import LLMClient
    from crewbus_agents.mcp_tools import McpToolSource

log = logging.getLogger(__name__)

Run = Callable[..., Coroutine[Any, Any, None]]
"""A service's main loop: runs until cancelled."""


async def tracer_for(
    settings: Settings, nc: NATS, service: str, secrets: Sequence[str] = ()
) -> Tracer:
    """The service's tracer, redacting the trace settings' patterns, the tools' own, and
    `secrets` (values given to MCP servers)."""
    from crewbus.auth.options import manages_topology

    patterns = [*settings.tools.redact_patterns, *(re.escape(s) for s in secrets)]
    return await start_tracer(nc.jetstream(), service, settings.tracing,
                              extra_patterns=patterns,
                              ensure_stream=manages_topology(bus_settings(settings, service)))


@asynccontextmanager
async def orchestrator(
    settings: Settings, nc: NATS, *, tracer: Tracer | None = None
) -> AsyncIterator[Run]:
    """The orchestrator, with the submit gateway and the human feedback desk beside it in
    the same process, and the recorder of evaluation scores for Prometheus
    (`crewbus.evals.score_metrics`)."""
    from crewbus.evals.online.feedback import start_feedback_desk
    from crewbus.evals.score_metrics import record_eval_scores
    from crewbus.gateway import start_gateway
    from crewbus.orchestrator.service import Orchestrator
    from crewbus.replay.shadow import Shadow
    from crewbus.taskstore import TaskStore
    from crewbus_contracts import subjects

    js = nc.jetstream()
    config = settings.orchestrator
    tracer = tracer or await tracer_for(settings, nc, "orchestrator")
    tasks = TaskStore(await js.key_value(subjects.TASKS_KV))
    shadow = Shadow(js, tasks, settings.judge)
    memory = MemoryClient(nc, timeout_s=5, absent_s=settings.memory.client_absent_s)
    service = await Orchestrator.create(nc, js, config, tracer, shadow=shadow, memory=memory)
    await start_gateway(nc, js, config.max_submit_bytes)
    await start_feedback_desk(nc)
    log.info("orchestrator ready on %s", config.nats_url)

    async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            tg.start_soon(record_eval_scores, js, config)
            task_status.started()

    yield run


@asynccontextmanager
async def agent(
    settings: Settings, nc: NATS, role: str, *, llm: LLMClient | None = None,
    memory: MemoryClient | None = None, tracer: Tracer | None = None,
) -> AsyncIterator[Run]:
    """One replica of the agent `role`; `llm` defaults to a client for the role's model
    (closed on exit), `memory` to the memory service on `nc`."""
    from crewbus.llm.adapter import LLMClient
    from crewbus_agents.roles import AGENTS
    from crewbus_agents.runtime import build_agent_runtime

    async with AsyncExitStack() as stack:
        if llm is None:
            llm = await stack.enter_async_context(LLMClient(settings.llm[role], role))
        mcp = None
        if AGENTS[role].uses_tools and settings.mcp.servers:
            # Only here: the `mcp` SDK is a slow import, and most replicas have no servers.
            from crewbus_agents.mcp_tools import McpToolSource, load_servers

            mcp = McpToolSource(load_servers(settings.mcp.servers), settings.mcp)
        secrets = mcp.servers.secrets if mcp else []
        tracer = tracer or await tracer_for(settings, nc, role, secrets)
        runtime = await build_agent_runtime(
            AGENTS[role], nc.jetstream(), llm, settings.agents, settings.tools,
            memory=memory or MemoryClient(nc, absent_s=settings.memory.client_absent_s),
            tracer=tracer,
            tool_sources=(mcp,) if mcp else ())
        log.info("%s ready on %s (model %s)", role, settings.agents.nats_url,
                 llm.settings.model)
        yield runtime.run if mcp is None else functools.partial(_with_mcp, mcp, runtime.run)


async def _with_mcp(mcp: McpToolSource, run: Run) -> None:
    """`run`, with the MCP servers started before it takes work and stopped after it."""
    async with mcp.running():
        await run()


@asynccontextmanager
async def memory(settings: Settings, nc: NATS) -> AsyncIterator[Run]:
    """The memory service, storing as `settings.memory` says."""
    from crewbus.memory.service import run

    yield functools.partial(run, nc, settings.memory)


@asynccontextmanager
async def gateway(settings: Settings, nc: NATS) -> AsyncIterator[Run]:
    """The HTTP gateway (REST, SSE, OpenAI-compatible, web UI): a client of the bus."""
    from crewbus.httpapi.service import open_gateway

    yield await open_gateway(nc, settings.http, settings.bus.max_submit_bytes,
                             settings.tracing.max_read_spans)


@asynccontextmanager
async def evaluator(
    settings: Settings, nc: NATS, *, tracer: Tracer | None = None
) -> AsyncIterator[Run]:
    """One evaluator replica, scoring finished tasks as `settings.evaluator.evaluators_file`
    says (and adding failures to `evaluator_add_to` too). A bad file stops it before it
    takes any work, with one `ScorerConfigError` line."""
    from crewbus.bus.topology import ensure_evaluator_consumer, ensure_topology
    from crewbus.evals.datasets import DatasetStore
    from crewbus.evals.online.scores import TaskScoreStore
    from crewbus.evals.online.service import OnlineEvaluation, run_evaluator
    from crewbus.evals.online.startup import build_evaluators, load_plan
    from crewbus.evals.scorers.context import ScorerContext
    from crewbus.taskstore import TaskStore
    from crewbus_contracts import subjects

    config = settings.evaluator
    plan = load_plan(config)
    js = nc.jetstream()
    from crewbus.auth.options import manages_topology

    if manages_topology(config):  # with authentication `admin` made it (`crewbus up`)
        await ensure_topology(js, config)
    await ensure_evaluator_consumer(js, config, from_start=config.evaluator_from_start)
    tracer = tracer or await tracer_for(settings, nc, "evaluator")
    async with ScorerContext(base_dir=plan.base_dir, judge=settings.judge) as context:
        evaluation = OnlineEvaluation(
            js, build_evaluators(plan, context, config.evaluator_add_to),
            TaskStore(await js.key_value(subjects.TASKS_KV)), await TaskScoreStore.open(js),
            DatasetStore(js, replicas=config.stream_replicas), tracer=tracer)
        log.info("evaluator ready on %s (%s)", config.nats_url,
                 ", ".join(f"{e.name} at {e.rate:g}" for e in plan.evaluators))
        yield functools.partial(run_evaluator, js, evaluation, config)


BOOTSTRAPS: dict[str, Callable[[Settings, NATS], AbstractAsyncContextManager[Run]]] = {
    "orchestrator": orchestrator,
    "memory": memory,
    "gateway": gateway,
    "evaluator": evaluator,
}
"""The services on the bus other than the agents (each agent role runs through `agent`)."""


def bootstrap(service: str, settings: Settings, nc: NATS) -> AbstractAsyncContextManager[Run]:
    """The bootstrap of `service` (a role, `orchestrator`, `memory` or `gateway`) with
    real parts."""
    if service in BOOTSTRAPS:
        return BOOTSTRAPS[service](settings, nc)
    return agent(settings, nc, service)


def bus_settings(settings: Settings, service: str) -> BusSettings:
    """The bus settings `service` connects with (`concurrency` differs by service)."""
    if service == "orchestrator":
        return settings.orchestrator
    if service == "evaluator":
        return settings.evaluator
    return settings.bus if service in ("memory", "gateway") else settings.agents

"""Test helpers: the crewbus services running against a real nats-server and the simulated
model, either inside the test's event loop or as real child processes (for kill -9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import msgspec
import nats
from nats.aio.client import Client as NATS

from crewbus import bootstrap
from crewbus.bus.topology import ensure_topology
from crewbus.client import CrewbusClient
from crewbus.config import Settings, load_settings
from crewbus.llm.adapter import LLMClient
from crewbus.llm.settings import SIMULATED_MODEL_NAME, LLMSettings
from crewbus.memory.client import MemoryClient
from crewbus.orchestrator.settings import OrchestratorSettings
from crewbus.tracing import start_tracer
from crewbus_agents.settings import AgentSettings
from crewbus_agents.tools import ToolSettings
from crewbus_contracts import AGENT_ROLES, TERMINAL_EVENTS, TaskEvent, TaskState

FAST = {"ack_wait_s": 3.0, "heartbeat_s": 0.5, "max_deliver": 3}
PROCESS_START_S = 180.0
"""How long a test waits for services it just spawned as processes to answer: each imports
for seconds of CPU, and at load 15 on 2 cores five of them took more than 30 s. A wait on
a condition, so a quiet machine pays nothing for it."""


@asynccontextmanager
async def in_process_stack(
    nats_url: str,
    model_url: str,
    roles: Iterable[str] = AGENT_ROLES,
    tool_settings: ToolSettings | None = None,
    **settings: float,
) -> AsyncIterator[CrewbusClient]:
    """The orchestrator and one replica of each role, as tasks of this event loop, each
    wired by its bootstrap as `crewbus serve` wires it."""
    config = stack_settings(nats_url, tool_settings, **settings)
    async with (
        in_process_agents(nats_url, model_url, roles, tool_settings, **settings) as client,
        anyio.create_task_group() as tg,
    ):
        tracer = await start_tracer(client.js, "test-stack")
        async with bootstrap.orchestrator(config, client.nc, tracer=tracer) as run:
            await tg.start(run)
            try:
                yield client
            finally:
                tg.cancel_scope.cancel()


@asynccontextmanager
async def in_process_agents(
    nats_url: str,
    model_url: str,
    roles: Iterable[str] = AGENT_ROLES,
    tool_settings: ToolSettings | None = None,
    **settings: float,
) -> AsyncIterator[CrewbusClient]:
    """One replica of each role, as tasks of this event loop (the test runs orchestrators),
    each wired by the agents' bootstrap with an LLM client for the simulated model."""
    config = stack_settings(nats_url, tool_settings, **settings)
    nc = await nats.connect(nats_url)
    await ensure_topology(nc.jetstream(), config.orchestrator)
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        tracer = await start_tracer(nc.jetstream(), "test-stack")
        for role in roles:
            llm = await stack.enter_async_context(
                LLMClient(LLMSettings(model=SIMULATED_MODEL_NAME, base_url=model_url), role))
            memory = MemoryClient(nc, absent_s=config.memory.client_absent_s)
            run = await stack.enter_async_context(
                bootstrap.agent(config, nc, role, llm=llm, memory=memory, tracer=tracer))
            tg.start_soon(run)
        try:
            yield CrewbusClient(nc)
        finally:
            tg.cancel_scope.cancel()
    await nc.close()


def stack_settings(
    nats_url: str, tool_settings: ToolSettings | None = None, **settings: float
) -> Settings:
    """The settings tree of the in-process stack: the environment's, with this NATS, the
    FAST delivery settings (and `settings`) and, when given, these tool settings."""
    loaded = load_settings(nats_url=nats_url)
    values = {**FAST, **settings}
    agent_fields = set(AgentSettings.__struct_fields__)
    agent_values = {k: v for k, v in values.items() if k in agent_fields}
    agents = AgentSettings(nats_url=nats_url, **agent_values)  # type: ignore[arg-type]
    return msgspec.structs.replace(
        loaded, agents=agents, orchestrator=orchestrator_settings(nats_url, **settings),
        tools=tool_settings or loaded.tools)


def orchestrator_settings(nats_url: str, **settings: float) -> OrchestratorSettings:
    """The orchestrator's settings as the in-process stack gives them."""
    return OrchestratorSettings(nats_url=nats_url, **{**FAST, **settings})  # type: ignore[arg-type]


async def final_event(client: CrewbusClient, task_id: str, timeout_s: float = 30) -> TaskEvent:
    with anyio.fail_after(timeout_s):
        async for event in client.events(task_id):
            if isinstance(event, TERMINAL_EVENTS):
                return event
    raise AssertionError("event stream ended without a final event")


async def wait_for_state(
    client: CrewbusClient, task_id: str, statuses: tuple[str, ...],
    timeout_s: float = PROCESS_START_S,
) -> TaskState:
    """The task's state once its status is one of `statuses`; NATS may be restarting, so
    keep reading through errors."""
    with anyio.fail_after(timeout_s):
        while True:
            try:
                state = await client.state(task_id)
            except Exception:  # NATS restarting
                state = None
            if state is not None and state.status in statuses:
                return state
            await anyio.sleep(0.05)


def service_env(nats_url: str, model_url: str, **settings: float) -> dict[str, str]:
    env = dict(os.environ)
    env["CREWBUS_NATS_URL"] = nats_url
    env["CREWBUS_METRICS_PORT"] = "0"  # tests that scrape set their own ports
    for key, value in {**FAST, **settings}.items():
        env[f"CREWBUS_{key.upper()}"] = str(value)
    for role in AGENT_ROLES:
        env[f"CREWBUS_{role.upper()}_BASE_URL"] = model_url
        env[f"CREWBUS_{role.upper()}_MODEL"] = SIMULATED_MODEL_NAME
    return env


def spawn_service(
    service: str, env: dict[str, str], log_dir: Path
) -> subprocess.Popen[bytes]:
    """`python -m crewbus serve <service>` as a real child process."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{service}-{len(list(log_dir.iterdir()))}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "crewbus", "serve", service],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Until `condition()` holds, checked every 50 ms (from a test's own thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.05)


async def connect(url: str) -> NATS:
    return await nats.connect(url)


async def wait_for_port(port: int, child: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Until `child` (the simulated model, say) accepts TCP connections on 127.0.0.1:port."""
    with anyio.fail_after(timeout_s):
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"{child.args!r} exited with {child.returncode}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


def as_identity(settings: Settings, creds_file: Path) -> Settings:
    """`settings` with every bus branch connecting as the identity in `creds_file`."""
    creds = str(creds_file)
    replace = msgspec.structs.replace
    return replace(settings, bus=replace(settings.bus, nats_creds=creds),
                   agents=replace(settings.agents, nats_creds=creds),
                   orchestrator=replace(settings.orchestrator, nats_creds=creds))


@asynccontextmanager
async def auth_stack(
    nats_url: str, model_url: str, creds_dir: Path, roles: Iterable[str] = AGENT_ROLES,
    gateway_port: int | None = None, **settings: float,
) -> AsyncIterator[CrewbusClient]:
    """The orchestrator, one replica of each role and (`gateway`) the HTTP gateway, as tasks
    of this event loop, each on its own connection as its own NATS identity (the
    credentials in `creds_dir`), the bus set up as `admin` first, as `crewbus up` does. The
    gateway runs when `gateway_port` is given, on 127.0.0.1 at that port. Yields a client
    connected as `client`."""
    from crewbus.auth.credentials import credentials_path
    from crewbus.auth.permissions import CLIENT
    from crewbus.bootstrap import bus_settings
    from crewbus.devstack.nats_auth import StackAuth, set_up_bus
    from crewbus.runner import bus

    config = stack_settings(nats_url, None, **settings)
    if gateway_port is not None:
        config = msgspec.structs.replace(config, http=msgspec.structs.replace(
            config.http, host="127.0.0.1", port=gateway_port))
    await set_up_bus(nats_url, config, StackAuth(creds_dir, None))
    services = ["orchestrator", *roles, *(["gateway"] if gateway_port else [])]
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        for service in services:
            own = as_identity(config, credentials_path(creds_dir, service))
            nc = await stack.enter_async_context(bus(bus_settings(own, service),
                                                     f"crewbus-{service}"))
            if service in AGENT_ROLES:
                llm = await stack.enter_async_context(
                    LLMClient(LLMSettings(model=SIMULATED_MODEL_NAME, base_url=model_url),
                              service))
                run = await stack.enter_async_context(bootstrap.agent(own, nc, service, llm=llm))
            else:
                run = await stack.enter_async_context(bootstrap.bootstrap(service, own, nc))
            if service in AGENT_ROLES:
                tg.start_soon(run)
            else:
                await tg.start(run)
        from crewbus.bus.connection import connect

        client_settings = as_identity(config, credentials_path(creds_dir, CLIENT)).bus
        nc = await connect(client_settings, "crewbus-test-client")
        try:
            yield CrewbusClient(nc)
        finally:
            tg.cancel_scope.cancel()
            await nc.close()

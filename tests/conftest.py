"""Shared fixtures: a real nats-server on a random loopback port (JetStream on a temp dir)
and the simulated model serving the OpenAI HTTP API on loopback."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import openai
import pytest
from nats.aio.client import Client as NATS

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimulatedModel
from crewbus.memory.client import MemoryClient
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def model() -> AsyncIterator[SimulatedModel]:
    """The simulated model, started; tests script it per agent (`model.script(...)`)."""
    sim = SimulatedModel()
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def model_client(model: SimulatedModel) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai client against the simulated model, with no retries: a test sees
    every reply the model gives."""
    async with openai.AsyncOpenAI(base_url=model.base_url, api_key="sk-simulated-no-key",
                                  max_retries=0) as client:
        yield client


@pytest.fixture
def model_url(model: SimulatedModel) -> str:
    assert model.base_url is not None
    return model.base_url


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    """A client connection to the test's nats-server."""
    conn = await nats.connect(nats_server.url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def memory(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[MemoryClient]:
    """The memory service (embedded store under the test's folder) and a client of it."""
    conn = await nats.connect(nats_server.url)
    service = await MemoryService(conn, MemorySettings(data_dir=str(tmp_path / "mem"))).start()
    yield MemoryClient(conn)
    await service.stop()
    await conn.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts; whatever is still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()

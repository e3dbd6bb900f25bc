"""Test helpers for the HTTP gateway: it runs in the test's event loop on a random
127.0.0.1 port, wired by the same `open_gateway` as `crewbus serve gateway`, and is talked
to over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import msgspec
from nats.aio.client import Client as NATS

from crewbus.httpapi.service import Gateway, open_gateway
from crewbus.httpapi.settings import HttpSettings


@asynccontextmanager
async def running_gateway(nc: NATS, **settings: Any) -> AsyncIterator[Gateway]:
    """The gateway on `nc`, serving until the block ends (port 0: the OS picks one)."""
    max_body_bytes = settings.pop("max_body_bytes", 65536)
    http = msgspec.convert({"port": 0, "sse_heartbeat_s": 0.5, **settings}, HttpSettings)
    gateway = await open_gateway(nc, http, max_body_bytes)
    async with anyio.create_task_group() as tg:
        await tg.start(gateway)
        try:
            yield gateway
        finally:
            tg.cancel_scope.cancel()


@dataclass
class SseEvent:
    id: str | None = None
    event: str | None = None
    data: str = ""


@dataclass
class SseRead:
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int = 0


async def read_sse(http: httpx.AsyncClient, url: str, *, headers: dict[str, str] | None = None,
                   max_events: int | None = None, timeout_s: float = 60) -> SseRead:
    """The stream's events (and comments) until it ends, or until `max_events` arrived
    (then the connection is dropped, as a client that goes away would)."""
    read = SseRead()
    with anyio.fail_after(timeout_s):
        async with http.stream("GET", url, headers=headers or {}) as response:
            read.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                return read
            current = SseEvent()
            async for line in response.aiter_lines():
                if line == "":
                    if current.data or current.event or current.id:
                        read.events.append(current)
                        if max_events is not None and len(read.events) >= max_events:
                            return read
                    current = SseEvent()
                elif line.startswith(":"):
                    read.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        current.data = f"{current.data}\n{value}" if current.data else value
                    elif name == "id":
                        current.id = value
                    elif name == "event":
                        current.event = value
    return read


@dataclass
class HttpStack:
    client: Any  # CrewbusClient
    gateway: Gateway
    http: httpx.AsyncClient


@asynccontextmanager
async def http_stack(nats_url: str, model_url: str, tool_settings: Any = None,
                     gateway: dict[str, Any] | None = None,
                     **settings: float) -> AsyncIterator[HttpStack]:
    """The in-process stack (orchestrator, agents) and the gateway on it, with an HTTP
    client pointed at the gateway."""
    from tests.stack import in_process_stack

    async with (
        in_process_stack(nats_url, model_url, tool_settings=tool_settings, **settings) as client,
        running_gateway(client.nc, **(gateway or {})) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=60) as http,
    ):
        yield HttpStack(client, gw, http)


async def keys_enforced(http: httpx.AsyncClient) -> None:
    """Until the gateway, open while no key existed, has seen the new key and asks for
    one (it rechecks about once a second; a busy machine may take longer)."""
    with anyio.fail_after(30):
        while (await http.get("/v1/models")).status_code != 401:
            await anyio.sleep(0.05)


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body of a refusal, checked to be one."""
    assert response.headers["content-type"].startswith("application/problem+json"), (
        response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["type"] == f"urn:crewbus:problem:{body['code']}"
    return body

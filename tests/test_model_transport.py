"""The model call's transport and the process's event loop: the openai client over aiohttp
(the default) or httpx answers the same, a reply that is not a chat completion is a
retryable failure, and `CREWBUS_EVENT_LOOP` picks uvloop or asyncio's own loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web

from crewbus.event_loop import run_options, uvloop_available
from crewbus.llm import LLMClient, LLMSettings, LLMUnavailableError
from crewbus.settings import SettingsError
from crewbus_contracts import Plan

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_both_transports_get_the_same_validated_reply_and_usage(
    model_url: str, transport: str
) -> None:
    settings = LLMSettings(base_url=model_url, http_client=transport)  # type: ignore[arg-type]
    async with LLMClient(settings, "planner") as llm:
        first = await llm.structured("You plan.", "Task: ship the release notes", Plan)
        again = await llm.structured("You plan.", "Task: ship the release notes", Plan)
    assert len(first.value.steps) == 4 and first.value == again.value
    assert first.usage.calls == 1 and first.usage.input_tokens > 0
    assert first.simulated and first.model


@pytest.fixture
async def not_a_model() -> AsyncIterator[str]:
    """An HTTP server whose chat endpoint answers 200 with JSON that is no completion."""

    async def reply(_: web.Request) -> web.Response:
        return web.json_response({"choices": "none today"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", reply)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_a_reply_that_is_no_chat_completion_is_a_retryable_failure(
    not_a_model: str,
) -> None:
    settings = LLMSettings(base_url=not_a_model, model="some-model", max_transport_retries=0)
    async with LLMClient(settings, "planner") as llm:
        with pytest.raises(LLMUnavailableError, match="not a chat completion"):
            await llm.structured("You plan.", "Task", Plan)


def test_the_event_loop_is_uvloop_unless_turned_off() -> None:
    assert run_options({})["backend_options"] == {"use_uvloop": uvloop_available()}
    off = run_options({"CREWBUS_EVENT_LOOP": "asyncio"})
    assert off == {"backend": "asyncio", "backend_options": {"use_uvloop": False}}
    with pytest.raises(SettingsError, match="CREWBUS_EVENT_LOOP"):
        run_options({"CREWBUS_EVENT_LOOP": "trio"})


def test_the_transport_setting_refuses_unknown_clients() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"http_client": "requests"}, LLMSettings)

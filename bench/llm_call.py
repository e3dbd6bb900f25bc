"""CPU of one model call on the client side, each way of calling, in one run.

The simulated model runs as its own process (asyncio loop, zero latency; its CPU is never
counted); this process makes `-n` structured `StepOutput` calls each way, one after another
after a warm-up, and prints the CPU time (user+system of this process) per call:

  sdk-create   `chat.completions.create` (the SDK's request transform, pydantic replies)
  post         `AsyncOpenAI.post(..., cast_to=httpx2.Response)` with a msgspec body:
               what the adapter did before it kept its request options
  request      `AsyncOpenAI.request` with the options built once and copied per call with
               the body and headers, the URL parsed once: what the adapter does now
  adapter      `LLMClient.structured` as crewbus calls it (hint header, validation,
               metrics): the whole per-call cost of a structured call
  aiohttp      a bare aiohttp POST of the same body: the floor under any client

    PYTHONPATH=contracts:agents:services:. .venv/bin/python bench/llm_call.py [-n 300]
        [--ways sdk-create,post,adapter,aiohttp] [--chunk 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx2
import openai
from openai._models import FinalRequestOptions

from bench.bus_overhead import model_process
from crewbus.event_loop import run_options
from crewbus.llm import LLMClient, LLMSettings, ModelHint
from crewbus.llm.adapter import AGENT_HEADER, SIMULATED_API_KEY, _OpenAI
from crewbus.llm.hint import HINT_HEADER
from crewbus.llm.wire import reply_decoder, request_encoder
from crewbus_contracts import StepOutput

WAYS = ("sdk-create", "post", "request", "adapter", "aiohttp")
HINT = ModelHint(output="StepOutput", task="ship the release notes", step="e1",
                 instruction="summarise r1 and r2")
SYSTEM = "You execute one step of a plan. Reply with JSON matching the schema."
USER = "Task: ship the release notes\nStep e1: summarise r1 and r2\n" + "context " * 120


def _body() -> dict[str, Any]:
    from crewbus.llm.adapter import _response_format

    return {
        "model": "crewbus-simulated",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "response_format": _response_format(StepOutput),
    }


def _sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=SIMULATED_API_KEY, max_retries=1,
        default_headers={AGENT_HEADER: "executor"},
        http_client=openai.DefaultAioHttpClient(timeout=120.0),
    )


async def _way(way: str, base_url: str) -> tuple[Callable[[], Awaitable[object]],
                                                 Callable[[], Awaitable[None]]]:
    """The call to repeat and how to close what it uses."""
    body = _body()
    headers = {HINT_HEADER: HINT.header_value()}
    if way == "adapter":
        llm = LLMClient(LLMSettings(base_url=base_url), "executor")
        return (lambda: llm.structured(SYSTEM, USER, StepOutput, hint=HINT)), llm.aclose
    if way == "aiohttp":
        session = aiohttp.ClientSession()
        url = f"{base_url}/chat/completions"

        async def bare() -> object:
            sent = {**headers, AGENT_HEADER: "executor", "Content-Type": "application/json"}
            async with session.post(url, data=request_encoder.encode(body),
                                    headers=sent) as response:
                return reply_decoder.decode(await response.read())

        return bare, session.close
    client = _sdk(base_url)
    if way == "sdk-create":
        return (lambda: client.chat.completions.create(
            **body, extra_headers=headers)), client.close

    async def post() -> object:
        response = await client.post("/chat/completions", cast_to=httpx2.Response,
                                     content=request_encoder.encode(body),
                                     options={"headers": headers})
        return reply_decoder.decode(response.content)

    if way == "post":
        return post, client.close
    lean = _OpenAI(base_url=base_url, api_key=SIMULATED_API_KEY, max_retries=1,
                   default_headers={AGENT_HEADER: "executor"},
                   http_client=openai.DefaultAioHttpClient(timeout=120.0))
    await client.close()
    prepared = FinalRequestOptions.construct(
        method="post", url=str(lean._prepare_url("/chat/completions")))

    async def request() -> object:
        options = prepared.model_copy(update={"content": request_encoder.encode(body),
                                              "headers": headers})
        response = await lean.request(httpx2.Response, options)
        return reply_decoder.decode(response.content)

    return request, lean.close


async def measure(ways: list[str], base_url: str, n: int,
                  chunk: int) -> dict[str, list[float]]:
    """CPU seconds per call of each way, one figure per chunk of `chunk` calls: the ways
    take turns chunk by chunk, so a busy moment of the machine hits them alike."""
    calls: dict[str, Callable[[], Awaitable[object]]] = {}
    closers: list[Callable[[], Awaitable[None]]] = []
    figures: dict[str, list[float]] = {way: [] for way in ways}
    try:
        for way in ways:
            calls[way], close = await _way(way, base_url)
            closers.append(close)
            for _ in range(30):  # warm-up: connections, caches, the SDK's platform probe
                await calls[way]()
        for _ in range(max(1, n // chunk)):
            for way, call in calls.items():
                started = time.process_time()
                for _ in range(chunk):
                    await call()
                figures[way].append((time.process_time() - started) / chunk)
    finally:
        for close in closers:
            await close()
    return figures


async def main(n: int, ways: list[str], chunk: int) -> None:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", os.pathsep.join(["contracts", "agents", "services", "."]))
    with tempfile.TemporaryDirectory() as logs:
        async with model_process(env, Path(logs)) as base_url:
            figures = await measure(ways, base_url, n, chunk)
    print(f"client CPU per call, {n} calls per way in chunks of {chunk} taking turns:")
    for way, values in figures.items():
        print(f"  {way:11s} median {statistics.median(values) * 1000:6.3f} ms   "
              f"best chunk {min(values) * 1000:6.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=300, help="calls per measurement")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"subset of {','.join(WAYS)}")
    parser.add_argument("--chunk", type=int, default=20, help="calls per turn of a way")
    args = parser.parse_args()
    chosen = [w for w in args.ways.split(",") if w]
    unknown = set(chosen) - set(WAYS)
    if unknown:
        parser.error(f"unknown ways: {', '.join(sorted(unknown))}")
    anyio.run(main, args.n, chosen, args.chunk, **run_options())

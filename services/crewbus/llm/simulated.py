"""The simulated model: a real OpenAI-compatible HTTP server for tests, demos and CI.

It answers `POST /v1/chat/completions` (whole or streamed), `GET /v1/models` and
`POST /v1/embeddings` with deterministic replies (see `simulated_replies`), always as
model "crewbus-simulated". Tests in the same process script it per agent, the way
pydantic-ai's FunctionModel scripts a turn, and read back every request it got.

It never reads a prompt to find out what is asked (a reply with neither a schema nor a
step's hint only echoes the last user message back). Two request headers say it instead:

    X-Crewbus-Agent: researcher
    X-Crewbus-Hint: {"output":"StepOutput","task":"...","step":"r1","instruction":"...",
                     "inputs":["r0"],"input_texts":["..."],"memory":["m-1"],
                     "memories":[{"id":"m-1","kind":"document","text":"..."}]}

Besides the hint it reads only the conversation's structure: which tools the request
offers, which tool calls it made and the tool messages answering them (so an executor's
step can ask the calculator, then answer with its result; see `simulated_steps`).

The agent picks the script (`script(agent, ...)`); the hint, a `ModelHint` as ASCII JSON
that crewbus's LLM adapter sends to the simulated model only (see `crewbus.llm.hint`),
is what the default replies are made of (see `simulated_replies`). Every field of the
hint is optional; a hint that does not parse is answered with HTTP 400. Headers may be up
to 1 MiB, since a hint carries the task's whole text.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import anyio
import msgspec
from aiohttp import web

from crewbus.llm.adapter import AGENT_HEADER
from crewbus.llm.hint import HINT_HEADER, ModelHint, read_hint
from crewbus.llm.settings import SIMULATED_MODEL_NAME, SIMULATED_MODEL_PORT
from crewbus.llm.simulated_embeddings import DEFAULT_DIMENSIONS, as_base64, embed
from crewbus.llm.simulated_replies import SimReply, default_reply, estimate_tokens

log = logging.getLogger(__name__)

ANY_AGENT = "*"
_STREAM_CHUNKS = 8
_MAX_BODY_BYTES = 16 * 1024 * 1024
_MAX_HEADER_BYTES = 1024 * 1024
"""A hint carries the task's text, which may be far longer than aiohttp's 8 KiB default."""

Responder = Callable[[dict[str, Any]], SimReply]
"""Computes the reply to one request body; scripted for every request of an agent."""


class RecordedRequest(NamedTuple):
    """A chat request as received: which agent sent it and its JSON body."""

    agent: str
    body: dict[str, Any]


class SimulatedModel:
    """The server plus its script. Use `async with SimulatedModel() as sim:` in tests."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.requests: list[RecordedRequest] = []
        self.hints: list[ModelHint | None] = []
        """The hint of each chat request, in the order of `requests`."""
        self.headers: list[dict[str, str]] = []
        """The headers of each chat request (names lowercased), in the order of `requests`."""
        self.embedding_requests: list[RecordedRequest] = []
        self.base_url: str | None = None
        self._queues: dict[str, deque[SimReply]] = {}
        self._responders: dict[str, Responder] = {}
        self._runner: web.AppRunner | None = None
        self._counter = 0

    async def __aenter__(self) -> SimulatedModel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def script(self, agent: str, *replies: SimReply | Responder) -> None:
        """Queue replies for `agent` ("*" for any); a callable answers until `clear()`."""
        for reply in replies:
            if isinstance(reply, SimReply):
                self._queues.setdefault(agent, deque()).append(reply)
            else:
                self._responders[agent] = reply

    def clear(self, agent: str | None = None) -> None:
        """Forget the script of `agent`, or of every agent when None."""
        if agent is None:
            self._queues.clear()
            self._responders.clear()
        else:
            self._queues.pop(agent, None)
            self._responders.pop(agent, None)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (0 picks a free port) and return the `/v1` base URL."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0,
                                     max_field_size=_MAX_HEADER_BYTES)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        await web.SockSite(self._runner, sock).start()
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.base_url = f"http://{shown}:{bound}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _next_reply(
        self, agent: str, body: dict[str, Any], hint: ModelHint | None
    ) -> SimReply:
        for key in (agent, ANY_AGENT):
            queue = self._queues.get(key)
            if queue:
                return queue.popleft()
            responder = self._responders.get(key)
            if responder is not None:
                return responder(body)
        return default_reply(body, hint)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if body is None or not isinstance(body.get("messages"), list):
            return _error(400, "body must be a JSON object with a 'messages' list")
        try:
            hint = read_hint(request.headers.get(HINT_HEADER))
        except msgspec.DecodeError as exc:  # a ValidationError too
            return _error(400, f"the {HINT_HEADER} header is not a hint: {exc}")
        agent = request.headers.get(AGENT_HEADER, ANY_AGENT)
        self.requests.append(RecordedRequest(agent, body))
        self.hints.append(hint)
        self.headers.append({name.lower(): value for name, value in request.headers.items()})
        try:
            reply = self._next_reply(agent, body, hint)
        except Exception as exc:  # a broken test responder should show, not hang the client
            return _error(500, f"scripted responder failed: {exc!r}")
        delay = self.latency_s + reply.delay_s
        if reply.status != 200:
            await anyio.sleep(delay)
            return _error(reply.status, reply.content or "simulated server error")
        self._counter += 1
        reply_id = f"chatcmpl-sim-{self._counter}"
        if body.get("stream"):
            return await self._stream(request, body, reply, reply_id, delay)
        await anyio.sleep(delay)
        return web.json_response(_completion(reply_id, body, reply))

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        reply: SimReply,
        reply_id: str,
        delay: float,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        chunks = _chunks(reply, reply_id)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if include_usage:
            chunks.append(_chunk(reply_id, [], usage=_usage(body, reply)))
        try:
            for chunk in chunks:
                await anyio.sleep(delay / len(chunks))
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            log.debug("client left during a streamed reply %s", reply_id)
        return response

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": SIMULATED_MODEL_NAME, "object": "model", "created": 0, "owned_by": "crewbus"}
        return web.json_response({"object": "list", "data": [model]})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        inputs = None if body is None else body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            return _error(400, "'input' must be a string or a list of strings")
        assert body is not None
        self.embedding_requests.append(
            RecordedRequest(request.headers.get(AGENT_HEADER, ANY_AGENT), body)
        )
        dimensions = int(body.get("dimensions") or DEFAULT_DIMENSIONS)
        as_text = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embed(text, dimensions)
            encoded: Any = as_base64(vector) if as_text else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(estimate_tokens(t) for t in inputs)
        await anyio.sleep(self.latency_s)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": SIMULATED_MODEL_NAME,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


async def serve_simulated_model(
    host: str = "127.0.0.1", port: int = SIMULATED_MODEL_PORT, latency_s: float = 0.0
) -> None:
    """Run the simulated model as a service until cancelled (`crewbus serve simulated-model`)."""
    sim = SimulatedModel(latency_s=latency_s)
    url = await sim.start(host, port)
    log.info("simulated model %s listening on %s", SIMULATED_MODEL_NAME, url)
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await sim.stop()


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error(status: int, message: str) -> web.Response:
    """An error in OpenAI's shape; overload statuses say when to retry (soon: a simulation)."""
    headers = {"retry-after-ms": "10"} if status == 429 or status >= 500 else None
    payload = {"error": {"message": message, "type": "simulated_error", "code": status}}
    return web.json_response(payload, status=status, headers=headers)


def _usage(body: dict[str, Any], reply: SimReply) -> dict[str, int]:
    prompt = json.dumps(body.get("messages", []))
    completion = (reply.content or "") + "".join(args for _, args in reply.tool_calls or [])
    prompt_tokens, completion_tokens = estimate_tokens(prompt), estimate_tokens(completion)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _tool_calls(reply: SimReply) -> list[dict[str, Any]]:
    return [
        {"id": f"call_sim_{i}", "type": "function", "function": {"name": name, "arguments": args}}
        for i, (name, args) in enumerate(reply.tool_calls or [])
    ]


def _finish_reason(reply: SimReply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def _completion(reply_id: str, body: dict[str, Any], reply: SimReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls(reply)
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": SIMULATED_MODEL_NAME,
        "system_fingerprint": SIMULATED_MODEL_NAME,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_reason(reply),
                "logprobs": None,
            }
        ],
        "usage": _usage(body, reply),
    }


def _chunk(
    reply_id: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": reply_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": SIMULATED_MODEL_NAME,
        "system_fingerprint": SIMULATED_MODEL_NAME,
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _delta(reply_id: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return _chunk(reply_id, [{"index": 0, "delta": delta, "finish_reason": finish}])


def _chunks(reply: SimReply, reply_id: str) -> list[dict[str, Any]]:
    """The reply as stream chunks: role, content pieces, tool calls in halves, finish."""
    chunks = [_delta(reply_id, {"role": "assistant", "content": ""})]
    text = reply.content or ""
    size = max(1, -(-len(text) // _STREAM_CHUNKS))
    chunks += [_delta(reply_id, {"content": text[i : i + size]}) for i in range(0, len(text), size)]
    for index, call in enumerate(_tool_calls(reply)):
        args = call["function"]["arguments"]
        half = len(args) // 2
        first = {
            **call,
            "index": index,
            "function": {"name": call["function"]["name"], "arguments": args[:half]},
        }
        chunks.append(_delta(reply_id, {"tool_calls": [first]}))
        rest = {"index": index, "function": {"arguments": args[half:]}}
        chunks.append(_delta(reply_id, {"tool_calls": [rest]}))
    chunks.append(_delta(reply_id, {}, finish=_finish_reason(reply)))
    return chunks

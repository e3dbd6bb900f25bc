"""The OpenAI-compatible front door: `POST /v1/chat/completions`, `GET /v1/models`.

The last user message runs as one task (under the variant `crewbus/<variant>` names);
the answer comes back in the Chat Completions format. Streaming sends the crew's progress
as `reasoning_content` deltas (what reasoning models stream), the answer as `content`
deltas, and `usage` in a last chunk when `stream_options.include_usage` asks. Every request
field is honoured, ignored (listed in IGNORED) or refused with a 400 naming it (REFUSED
and anything unknown).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import msgspec
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.sse import EventSourceResponse

from crewbus import render
from crewbus.bus.codec import BadMessageError, decode
from crewbus.httpapi import openapi, responses
from crewbus.httpapi.auth import Caller, require
from crewbus.httpapi.bus import Bus
from crewbus.httpapi.events import Heartbeat, StoredEvent, stored_events
from crewbus.httpapi.problems import ProblemError
from crewbus.httpapi.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageOut,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    Usage,
)
from crewbus.httpapi.tasks import submit_task
from crewbus.telemetry import metrics
from crewbus.variants import VariantStore
from crewbus_contracts import (
    SubmitTask,
    TaskCancelled,
    TaskCompleted,
    TaskEvent,
    TaskFailed,
    TaskResult,
    subjects,
)
from crewbus_contracts.prompts import PRODUCTION, VARIANT_NAME

MODEL = "crewbus"
VARIANT_PREFIX = "crewbus/"
ANSWER_CHUNK_WORDS = 8

IGNORED = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "stop",
           "logit_bias", "max_tokens", "max_completion_tokens", "store", "service_tier",
           "reasoning_effort", "parallel_tool_calls")
"""Accepted and without effect: sampling knobs of one model call, while a task is many
calls by several agents with their own settings. `n` is accepted only as 1."""
REFUSED = ("tools", "functions", "function_call", "logprobs", "top_logprobs", "audio",
           "prediction", "web_search_options")
"""Refused with a 400: the crew answers with text only, and its tools are its own.
`tool_choice` is accepted only as "none", `response_format` only as text, `modalities`
only as ["text"]."""

router = APIRouter(prefix="/v1", tags=["openai"], responses=openapi.PROBLEMS)
_request_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_event_decoder: msgspec.json.Decoder[TaskEvent] = msgspec.json.Decoder(TaskEvent)


class OpenAIError(ProblemError):
    """A refusal on the OpenAI routes: problem+json with OpenAI's `error` object too."""


def bus_of(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


@router.get("/models", summary="The models this gateway answers as (OpenAI format)",
            responses={200: openapi.json_response(ModelList, "crewbus")})
async def models(request: Request,
                 caller: Annotated[Caller, Depends(require("read"))]) -> Response:
    variants = await VariantStore(await bus_of(request).js.key_value(
        subjects.VARIANTS_KV)).all()
    names = sorted(v.name for v in variants if v.name != PRODUCTION)
    return responses.json(ModelList(data=[ModelCard(id=MODEL)] + [
        ModelCard(id=f"{VARIANT_PREFIX}{name}") for name in names]))


@router.post(
    "/chat/completions", summary="Run the last user message as a task (OpenAI format)",
    openapi_extra=openapi.body(ChatCompletionRequest, "OpenAI's Chat Completions request"),
    responses={200: {"description": "A chat.completion, or with `stream: true` an SSE stream "
                     "of chat.completion.chunk objects ending with `data: [DONE]`",
                     "content": {"application/json": {"schema": openapi.ref(ChatCompletion)},
                                 "text/event-stream": {
                                     "schema": {"type": "string"},
                                     "x-item-schema": openapi.ref(ChatCompletionChunk)}}}},
)
async def chat_completions(
    request: Request,
    caller: Annotated[Caller, Depends(require("submit"))],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    body = _decode(await request.body(), request.app.state.max_body_bytes)
    task = SubmitTask(text=_task_text(body), idempotency_key=idempotency_key,
                      metadata=_metadata(body), variant=_variant_of(body.model))
    try:
        accepted = await submit_task(bus_of(request), task)
    except ProblemError as exc:  # the bus's refusal (an unknown variant), in OpenAI's terms
        about_variant = "variant" in exc.detail
        raise OpenAIError(exc.code, f"model {body.model!r}: {exc.detail}" if about_variant
                          else exc.detail, status=400 if exc.status == 422 else exc.status,
                          path="model" if about_variant else exc.path,
                          headers=exc.headers) from None
    completion_id = f"chatcmpl-{accepted.task_id}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventSourceResponse(
            _chunks(request, accepted.task_id, completion_id, body.model, include_usage),
            headers=responses.SSE_HEADERS)
    result = await _wait_for_result(request, accepted.task_id)
    return responses.json(ChatCompletion(
        id=completion_id, created=int(time.time()), model=body.model,
        choices=[Choice(index=0, message=ChatMessageOut(content=result.answer),
                        finish_reason="stop")],
        usage=_usage(result)))


def _decode(raw: bytes, max_bytes: int) -> ChatCompletionRequest:
    try:
        body = decode(raw, _request_decoder, max_bytes=max_bytes)
    except BadMessageError as exc:
        code: str = exc.reply.code
        if code == "invalid_message" and "unknown field" in exc.reply.message:
            code = "unsupported_field"
        elif code == "invalid_message":
            code = "invalid_request"
        raise OpenAIError(code, exc.reply.message, status=413 if code == "payload_too_large"
                          else 400) from None
    for name in REFUSED:
        if getattr(body, name) not in (None, False):
            raise OpenAIError("unsupported_field", f"`{name}` is not supported: the crew "
                              "answers with text, and its tools are its own", path=name)
    if body.tool_choice not in (None, "none"):
        raise OpenAIError("unsupported_field", "`tool_choice` may only be \"none\"",
                          path="tool_choice")
    if body.response_format not in (None, {"type": "text"}):
        raise OpenAIError("unsupported_field", "`response_format` may only be "
                          "{\"type\": \"text\"}", path="response_format")
    if body.modalities not in (None, ["text"]):
        raise OpenAIError("unsupported_field", "`modalities` may only be [\"text\"]",
                          path="modalities")
    if body.n not in (None, 1):
        raise OpenAIError("unsupported_field", "`n` may only be 1: one task, one answer",
                          path="n")
    return body


def _variant_of(model: str) -> str:
    """`crewbus` is the production variant; `crewbus/<variant>` names another, which the
    submit gateway checks exists (an unknown one is a 400 naming it)."""
    if model == MODEL:
        return PRODUCTION
    if model.startswith(VARIANT_PREFIX) and re.match(VARIANT_NAME, model[len(VARIANT_PREFIX):]):
        return model[len(VARIANT_PREFIX):]
    raise OpenAIError("unsupported_model", f"unknown model {model!r}: this gateway answers "
                      "as \"crewbus\" or \"crewbus/<variant>\" (GET /v1/models)",
                      path="model")


def _task_text(body: ChatCompletionRequest) -> str:
    """The last user message's text (a string, or its text parts joined)."""
    for message in reversed(body.messages):
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, list):
            others = [p.type for p in content if p.type != "text"]
            if others:
                raise OpenAIError("unsupported_field", f"content part {others[0]!r} is not "
                                  "supported: text only", path="messages")
            content = "\n".join(p.text for p in content)
        if not content or not content.strip():
            raise OpenAIError("invalid_request", "the last user message in `messages` is empty",
                              path="messages")
        return content
    raise OpenAIError("invalid_request", "no user message in `messages`: the last one is "
                      "the task",
                      path="messages")


def _metadata(body: ChatCompletionRequest) -> dict[str, str]:
    metadata = dict(body.metadata or {})
    if body.user:
        metadata.setdefault("openai_user", body.user)
    if len(metadata) > 32:
        raise OpenAIError("invalid_request", "at most 32 metadata entries", path="metadata")
    return metadata


def _usage(result: TaskResult) -> Usage:
    u = result.usage
    return Usage(prompt_tokens=u.input_tokens, completion_tokens=u.output_tokens,
                 total_tokens=u.input_tokens + u.output_tokens)


def _decoded(event: StoredEvent) -> TaskEvent | None:
    try:
        return _event_decoder.decode(event.data)
    except msgspec.ValidationError:  # a newer orchestrator's event: not ours to show
        return None


def _outcome(event: TaskEvent) -> TaskResult:
    """The result of a terminal event; a failure or cancel as the error it is."""
    if isinstance(event, TaskCompleted):
        return event.result
    if isinstance(event, TaskFailed):
        raise OpenAIError("task_failed", f"the task failed [{event.error.code}]: "
                          f"{event.error.message}", headers={"x-should-retry": "false"})
    why = f" by {event.by}: {event.reason}" if isinstance(event, TaskCancelled) else ""
    raise OpenAIError("conflict", f"the task was cancelled{why}",
                      headers={"x-should-retry": "false"})


async def _wait_for_result(request: Request, task_id: str) -> TaskResult:
    settings = request.app.state
    with anyio.move_on_after(settings.chat_timeout_s):
        async for item in stored_events(bus_of(request).js, task_id, None,
                                        settings.heartbeat_s):
            if isinstance(item, StoredEvent) and item.terminal:
                event = _decoded(item)
                if event is not None:
                    return _outcome(event)
    raise OpenAIError("timeout", f"task {task_id} did not finish within "
                      f"{settings.chat_timeout_s:.0f}s; follow it at /v1/tasks/{task_id}",
                      headers={"x-should-retry": "false"})


async def _chunks(request: Request, task_id: str, completion_id: str, model: str,
                  include_usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())

    def chunk(delta: Delta, finish: bool = False, usage: Usage | None = None) -> bytes:
        choices = [] if usage else [ChunkChoice(index=0, delta=delta,
                                                finish_reason="stop" if finish else None)]
        value = ChatCompletionChunk(id=completion_id, created=created, model=model,
                                    choices=choices, usage=usage)
        return responses.sse(msgspec.json.encode(value))

    state = request.app.state
    yield chunk(Delta(role="assistant"))
    with metrics.sse_stream_open(), anyio.move_on_after(state.chat_timeout_s):
        async for item in stored_events(bus_of(request).js, task_id, None, state.heartbeat_s):
            if isinstance(item, Heartbeat):
                yield responses.sse_comment("heartbeat")
                continue
            event = _decoded(item)
            if event is None:
                continue
            if not item.terminal:
                yield chunk(Delta(reasoning_content=render.event_line(event) + "\n"))
                continue
            try:
                result = _outcome(event)
            except OpenAIError as exc:
                yield responses.sse(msgspec.json.encode(
                    {"error": {"message": exc.detail, "type": "server_error",
                               "code": exc.code}}))
                return
            for piece in _pieces(result.answer):
                yield chunk(Delta(content=piece))
            yield chunk(Delta(), finish=True)
            if include_usage:
                yield chunk(Delta(), usage=_usage(result))
            yield responses.sse("[DONE]")
            return
    with contextlib.suppress(Exception):
        yield responses.sse(msgspec.json.encode(
            {"error": {"message": f"task {task_id} did not finish in time", "type":
                       "server_error", "code": "timeout"}}))


def _pieces(answer: str) -> list[str]:
    """The answer in a few content deltas of some words each (it is known whole)."""
    words = answer.split(" ")
    return [" ".join(words[i:i + ANSWER_CHUNK_WORDS]) + (" " if i + ANSWER_CHUNK_WORDS <
                                                          len(words) else "")
            for i in range(0, len(words), ANSWER_CHUNK_WORDS)] or [""]

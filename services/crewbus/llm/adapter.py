"""The one way crewbus talks to a model: `openai.AsyncOpenAI` against any compatible server.

`structured()` asks for a contract Struct via JSON Schema and shows the model its own
validation error once before giving up (a caller's `repair` may fix an invalid reply
first); `chat()` is the raw turn used by tool loops. Both take the `ModelHint` of the
work, which only the simulated model is sent (see `crewbus.llm.hint`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlparse

import aiohttp
import httpx2
import msgspec
import openai
from openai._models import FinalRequestOptions

from crewbus.llm.errors import (
    LLMError,
    LLMRequestError,
    LLMUnavailableError,
    OutputValidationError,
)
from crewbus.llm.hint import HINT_HEADER, ModelHint
from crewbus.llm.schema import response_schema
from crewbus.llm.settings import (
    SIMULATED_MODEL_NAME,
    SIMULATED_MODEL_PORT,
    LLMSettings,
    uses_simulated_model,
)
from crewbus.llm.wire import reply_decoder, request_encoder
from crewbus.telemetry.metrics import LlmCall, record_llm_call, record_validation_retry
from crewbus_contracts.evolution import unknown_fields
from crewbus_contracts.tasks import TokenUsage

T = TypeVar("T", bound=msgspec.Struct)

log = logging.getLogger(__name__)

Message = dict[str, Any]
"""One chat message in the OpenAI wire shape (`{"role": ..., "content": ...}`)."""

AGENT_HEADER = "X-Crewbus-Agent"
DEFAULT_SIMULATED_BASE_URL = f"http://127.0.0.1:{SIMULATED_MODEL_PORT}/v1"
"""Where the simulated model listens when no base URL is configured."""
SIMULATED_API_KEY = "sk-simulated-no-key"
"""Sent to the simulated model instead of a real key, so a real key never reaches it."""
NO_KEY = "sk-no-key"
"""Sent to keyless servers (vLLM, llama.cpp, Ollama): the openai client requires a key."""

_RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model wants called; `arguments` is the model's JSON text, unparsed."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatResult:
    """One model turn: text and/or tool calls, plus what it cost."""

    content: str | None
    tool_calls: list[ToolCall]
    usage: TokenUsage
    model: str
    finish_reason: str | None
    simulated: bool
    duration_s: float
    time_to_first_token_s: float | None = None
    cost_usd: float | None = None
    """From the price table; None when the model has no price (counted as unpriced)."""

    def assistant_message(self) -> Message:
        """This turn as the assistant message to append before sending tool results."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        return message


@dataclass(frozen=True, slots=True)
class Completion(Generic[T]):
    """A validated structured reply and how it was obtained (for reports and metrics)."""

    value: T
    usage: TokenUsage
    model: str
    simulated: bool
    duration_s: float
    validation_retries: int = 0
    time_to_first_token_s: float | None = None
    cost_usd: float | None = None
    """Sum over every attempt; None when any call had no price."""
    raw: str = field(default="", repr=False)
    repairs: list[str] = field(default_factory=list)
    """What `repair` fixed in the reply; empty when it validated as written."""


Repair = Callable[[str], tuple[T, list[str]] | None]
"""Turns a reply that failed validation into a valid value and one line per fix, or None
when it can't (then the model is shown its error as usual)."""


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One HTTP turn as a trace sees it: what was sent, what came back, what it cost.

    Given to a `TurnObserver` for every turn, including replies that failed validation
    (`validation_error` set) and calls that failed (`error` set, no reply).
    """

    agent: str
    provider: str
    request_model: str
    messages: list[Message]
    """The conversation exactly as sent (a copy: later turns do not change it)."""
    started_at: float
    """Epoch seconds when the request was sent."""
    duration_s: float
    tools: list[str] = field(default_factory=list)
    """Names of the tools offered to the model."""
    output_type: str | None = None
    """The contract asked for by `structured()`; None for a raw `chat()` turn."""
    attempt: int = 0
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    response_model: str | None = None
    finish_reason: str | None = None
    simulated: bool = False
    time_to_first_token_s: float | None = None
    cost_usd: float | None = None
    validation_error: str | None = None
    error: str | None = None
    error_type: str | None = None


class TurnObserver(Protocol):
    """Told about every model turn (the tracing layer writes a `chat <model>` span)."""

    async def on_turn(self, record: TurnRecord) -> None: ...


class LLMClient:
    """A model client for one agent role, configured by `LLMSettings`."""

    def __init__(self, settings: LLMSettings, role: str) -> None:
        self.settings = settings
        self.role = role
        self.simulated = uses_simulated_model(settings)
        if self.simulated:
            base_url: str | None = settings.base_url or DEFAULT_SIMULATED_BASE_URL
            api_key = SIMULATED_API_KEY
        else:
            base_url, api_key = settings.base_url, settings.api_key or NO_KEY
        self._secret = settings.api_key
        self.provider = provider_name(settings, self.simulated)
        self._client = _OpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=settings.timeout_s,
            max_retries=settings.max_transport_retries,
            default_headers={AGENT_HEADER: role},
            http_client=_http_client(settings),
        )
        self._chat_options = FinalRequestOptions.construct(
            method="post", url=str(self._client._prepare_url("/chat/completions"))
        )
        """Every non-streamed call's request options, built once and copied per call with
        its body and headers: the SDK's `post` builds them per call (`construct` runs its
        `strip_not_given` over every value and pydantic resolves every default), and a
        relative path is parsed and merged with the base URL per call."""

    def derived(self, *, model: str | None = None,
                temperature: float | None = None) -> LLMClient:
        """This client asking another model or temperature of the same server, sharing its
        connection pool (close the original, never a derived one). `simulated` stays as
        it is: it says which server answers."""
        changes: dict[str, Any] = {}
        if model is not None:
            changes["model"] = model
        if temperature is not None:
            changes["temperature"] = temperature
        if not changes:
            return self
        view = copy.copy(self)
        view.settings = msgspec.structs.replace(self.settings, **changes)
        return view

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    async def structured(
        self,
        system: str,
        user: str,
        output_type: type[T],
        *,
        trace: TurnObserver | None = None,
        repair: Repair[T] | None = None,
        hint: ModelHint | None = None,
    ) -> Completion[T]:
        """Ask for an `output_type` value; retry with the validation error, then raise.

        `trace` is told about every turn, the rejected ones included. `repair` is tried on
        each invalid reply before the model is asked again: fixing a reply costs nothing,
        another turn costs a round trip that the same model may fail again. `hint` goes to
        the simulated model only, with `output` set to the contract's name.
        """
        response_format = _response_format(output_type)
        hint = msgspec.structs.replace(hint or ModelHint(), output=output_type.__name__)
        messages: list[Message] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        started = time.perf_counter()
        usage = TokenUsage()
        cost: float | None = 0.0
        first_token: float | None = None
        error = ""
        attempts = self.settings.max_validation_retries + 1
        for attempt in range(attempts):
            if attempt:
                record_validation_retry(self.role, self.settings.model)
            sent = list(messages)
            turn_started = time.time()
            turn = await self._turn(
                messages, None, response_format, trace, output_type.__name__, attempt, hint
            )
            usage = usage.plus(turn.usage)
            cost = _add_cost(cost, turn.cost_usd)
            if first_token is None:
                first_token = turn.time_to_first_token_s
            text = turn.content or ""
            value, repairs, invalid = _parse(text, output_type, repair)
            if value is None:
                error = invalid
                await self._observe(
                    trace,
                    self._turn_record(
                        sent, turn_started, turn, None, output_type.__name__, attempt
                    ),
                    validation_error=error,
                )
                messages += [
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"Your reply did not validate: {error}. "
                        "Reply again with JSON matching the schema.",
                    },
                ]
                continue
            if repairs:
                log.info("%s reply repaired (%s): %s", self.role, invalid, "; ".join(repairs))
            await self._observe(
                trace,
                self._turn_record(sent, turn_started, turn, None, output_type.__name__, attempt),
            )
            return Completion(
                value=value,
                usage=usage,
                model=turn.model,
                simulated=turn.simulated,
                duration_s=time.perf_counter() - started,
                validation_retries=attempt,
                time_to_first_token_s=first_token,
                cost_usd=cost,
                raw=text,
                repairs=repairs,
            )
        raise OutputValidationError(output_type.__name__, error, attempts=attempts, usage=usage,
                                    cost_usd=cost)

    async def chat(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None = None,
        *,
        trace: TurnObserver | None = None,
        hint: ModelHint | None = None,
    ) -> ChatResult:
        """One raw turn (text or tool calls); the caller runs the tool loop."""
        sent = list(messages)
        started = time.time()
        result = await self._turn(messages, tools, None, trace, hint=hint)
        await self._observe(trace, self._turn_record(sent, started, result, tools, None, 0))
        return result

    async def _turn(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None,
        trace: TurnObserver | None = None,
        output_type: str | None = None,
        attempt: int = 0,
        hint: ModelHint | None = None,
    ) -> ChatResult:
        """One HTTP call. A failed call is reported to `trace` here; a reply by the caller,
        which knows whether it validated."""
        kwargs: dict[str, Any] = {"model": self.settings.model, "messages": messages}
        if self.simulated and hint is not None:
            kwargs["extra_headers"] = {HINT_HEADER: hint.header_value()}
        if tools:
            kwargs["tools"] = tools
        if response_format is not None:
            kwargs["response_format"] = response_format
        if self.settings.temperature is not None:
            kwargs["temperature"] = self.settings.temperature
        sent = list(messages)
        wall_started = time.time()
        started = time.perf_counter()
        try:
            if self.settings.stream:
                result = await self._streamed(kwargs)
            else:
                result = await self._whole(kwargs)
        except openai.APIError as exc:
            error = self._translate(exc)
            duration = time.perf_counter() - started
            self._record(duration, error_type=_error_type(exc))
            await self._observe(
                trace,
                TurnRecord(
                    agent=self.role,
                    provider=self.provider,
                    request_model=self.settings.model,
                    messages=sent,
                    started_at=wall_started,
                    duration_s=duration,
                    tools=_tool_names(tools),
                    output_type=output_type,
                    attempt=attempt,
                    error=str(error),
                    error_type=_error_type(exc),
                ),
            )
            raise error from (None if self._leaks(str(exc)) else exc)
        cost = self._record(result.duration_s, result=result)
        return dataclasses.replace(result, cost_usd=cost)

    def _turn_record(
        self,
        sent: list[Message],
        started_at: float,
        result: ChatResult,
        tools: list[dict[str, Any]] | None,
        output_type: str | None,
        attempt: int,
    ) -> TurnRecord:
        return TurnRecord(
            agent=self.role,
            provider=self.provider,
            request_model=self.settings.model,
            messages=sent,
            started_at=started_at,
            duration_s=result.duration_s,
            tools=_tool_names(tools),
            output_type=output_type,
            attempt=attempt,
            content=result.content,
            tool_calls=list(result.tool_calls),
            usage=result.usage,
            response_model=result.model,
            finish_reason=result.finish_reason,
            simulated=result.simulated,
            time_to_first_token_s=result.time_to_first_token_s,
            cost_usd=result.cost_usd,
        )

    async def _observe(
        self,
        trace: TurnObserver | None,
        record: TurnRecord,
        validation_error: str | None = None,
    ) -> None:
        """Tell `trace` about a turn; an observer's failure never fails the model call."""
        if trace is None:
            return
        if validation_error is not None:
            record = dataclasses.replace(record, validation_error=validation_error)
        try:
            await trace.on_turn(record)
        except Exception:
            log.warning("turn observer failed for %s", self.role, exc_info=True)

    def _record(
        self, duration_s: float, result: ChatResult | None = None, error_type: str = ""
    ) -> float | None:
        """Count the call in the GenAI metrics; return its USD cost (None: unpriced/failed)."""
        return record_llm_call(
            LlmCall(
                agent=self.role,
                model=self.settings.model,
                provider=self.provider,
                input_tokens=result.usage.input_tokens if result else 0,
                output_tokens=result.usage.output_tokens if result else 0,
                duration_s=duration_s,
                error_type=error_type,
                time_to_first_token_s=result.time_to_first_token_s if result else None,
            )
        )

    async def _whole(self, kwargs: dict[str, Any]) -> ChatResult:
        """One non-streamed call: the body encoded by msgspec, posted through the openai
        client (auth, retries, timeouts, error types), the reply decoded by msgspec."""
        started = time.perf_counter()
        headers = kwargs.pop("extra_headers", None)
        update: dict[str, Any] = {"content": request_encoder.encode(kwargs)}
        if headers:
            update["headers"] = headers
        response = await self._client.request(
            httpx2.Response, self._chat_options.model_copy(update=update)
        )
        try:
            reply = reply_decoder.decode(response.content)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise openai.APIResponseValidationError(
                response, None, message=f"not a chat completion: {exc}"
            ) from exc
        content: str | None = None
        calls: list[ToolCall] = []
        finish: str | None = None
        if reply.choices:
            choice = reply.choices[0]
            content, finish = choice.message.content, choice.finish_reason
            for call in choice.message.tool_calls or []:
                if call.function is not None:
                    calls.append(ToolCall(call.id, call.function.name, call.function.arguments))
        return ChatResult(
            content=content,
            tool_calls=calls,
            usage=_usage(reply.usage),
            model=reply.model or self.settings.model,
            finish_reason=finish,
            simulated=self._is_simulated(reply.model),
            duration_s=time.perf_counter() - started,
        )

    async def _streamed(self, kwargs: dict[str, Any]) -> ChatResult:
        started = time.perf_counter()
        first_token: float | None = None
        parts: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = TokenUsage(calls=1)
        model = self.settings.model
        finish: str | None = None
        stream = await self._client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        )
        async with stream:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    if first_token is None and (delta.content or delta.tool_calls):
                        first_token = time.perf_counter() - started
                    if delta.content:
                        parts.append(delta.content)
                    for part in delta.tool_calls or []:
                        slot = calls.setdefault(part.index, {"id": "", "name": "", "args": []})
                        slot["id"] = part.id or slot["id"]
                        if part.function is not None:
                            slot["name"] += part.function.name or ""
                            slot["args"].append(part.function.arguments or "")
                    finish = choice.finish_reason or finish
        return ChatResult(
            content="".join(parts) if parts or not calls else None,
            tool_calls=[
                ToolCall(slot["id"], slot["name"], "".join(slot["args"]))
                for _, slot in sorted(calls.items())
            ],
            usage=usage,
            model=model,
            finish_reason=finish,
            simulated=self._is_simulated(model),
            duration_s=time.perf_counter() - started,
            time_to_first_token_s=first_token,
        )

    def _is_simulated(self, reply_model: str) -> bool:
        return self.simulated or reply_model == SIMULATED_MODEL_NAME

    def _leaks(self, text: str) -> bool:
        return self._secret is not None and self._secret != "" and self._secret in text

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _translate(self, exc: openai.APIError) -> LLMError:
        """Map an openai error to retryable (unavailable) or terminal (request rejected)."""
        where = f"model {self.settings.model!r} for {self.role}"
        if isinstance(exc, openai.APIConnectionError):
            timed_out = isinstance(exc, openai.APITimeoutError) and not _refused(exc)
            kind = "timed out" if timed_out else "unreachable"
            return LLMUnavailableError(f"{where} {kind}: {self._redact(str(exc))}")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            text = f"{where} answered HTTP {status}: {self._redact(str(exc))}"
            if status >= 500 or status in _RETRYABLE_STATUS:
                return LLMUnavailableError(text, status=status)
            return LLMRequestError(text, status=status)
        return LLMUnavailableError(f"{where} failed: {self._redact(str(exc))}")


class _OpenAI(openai.AsyncOpenAI):
    """The openai client with its absolute request URLs parsed once: `_prepare_url` parses
    the URL of every request (a relative one is parsed, then merged with the base URL),
    which was a twentieth of a call's CPU. URLs are immutable, so a parsed one is shared;
    a relative URL goes through the SDK's own merge as before."""

    def _prepare_url(self, url: str) -> httpx2.URL:
        if url.startswith(("http://", "https://")):
            return _parsed_url(url)
        return super()._prepare_url(url)


@functools.lru_cache(maxsize=64)
def _parsed_url(url: str) -> httpx2.URL:
    return httpx2.URL(url)


def _http_client(settings: LLMSettings) -> httpx2.AsyncClient | None:
    """aiohttp under the openai client (its `aiohttp` extra) unless `http_client` says
    httpx: about a third less CPU per call here, with keep-alive connections reused."""
    if settings.http_client == "aiohttp":
        return openai.DefaultAioHttpClient(timeout=settings.timeout_s)
    return None


def _refused(exc: BaseException) -> bool:
    """A refused connection under the aiohttp transport, which reports it as a connect
    timeout (its exception map picks the broader class)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientConnectorError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    names = []
    for spec in tools or []:
        function = spec.get("function") if isinstance(spec, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


@functools.cache
def _response_format(output_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The structured-output request for `output_type`, built once per contract."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": output_type.__name__,
            "schema": response_schema(output_type),
            "strict": False,
        },
    }


def _add_cost(total: float | None, more: float | None) -> float | None:
    return None if total is None or more is None else total + more


def _error_type(exc: openai.APIError) -> str:
    """A short, bounded label for a failed call (OTel `error.type`)."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    return type(exc).__name__


def provider_name(settings: LLMSettings, simulated: bool) -> str:
    """OTel `gen_ai.provider.name`: 'openai', 'azure.ai.openai', or the endpoint's host."""
    if simulated:
        return "crewbus.simulated"
    host = urlparse(settings.base_url).hostname if settings.base_url else "api.openai.com"
    if host is None or host == "api.openai.com":
        return "openai"
    if host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    return host


def _usage(usage: Any) -> TokenUsage:
    if usage is None:
        return TokenUsage(calls=1)
    return TokenUsage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        calls=1,
    )


def _parse(
    text: str, output_type: type[T], repair: Repair[T] | None
) -> tuple[T | None, list[str], str]:
    """(value, repairs, validation error): the value as written, else repaired, else None.
    A reply with unknown fields is never repaired: it goes back to the model."""
    body = _strip_fences(text)
    try:
        return _decode_reply(body, output_type), [], ""
    except UnknownFieldsError as exc:
        return None, [], str(exc)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        error = str(exc)
    repaired = repair(body) if repair is not None else None
    if repaired is None:
        return None, [], error
    return repaired[0], repaired[1], error


class UnknownFieldsError(msgspec.ValidationError):
    """The reply has fields its type does not know (a misspelt name, most likely)."""


def _decode_reply(text: str, output_type: type[T]) -> T:
    """A model's reply is an edge that refuses unknown fields (the contracts ignore them on
    the bus): a misspelt `depends_on` dropped in silence would run dependent steps at once,
    so the model is told instead and tries again."""
    value = msgspec.json.decode(text, type=output_type)
    extra = unknown_fields(msgspec.json.decode(text), output_type)
    if extra:
        names = ", ".join(f"`{path}`" for path in extra)
        raise UnknownFieldsError(f"Object contains unknown field(s) {names}")
    return value


def _strip_fences(text: str) -> str:
    """Drop a Markdown code fence some local models wrap around JSON despite the schema."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        body = stripped[3:-3]
        newline = body.find("\n")
        return body[newline + 1 :] if newline >= 0 else body
    return stripped

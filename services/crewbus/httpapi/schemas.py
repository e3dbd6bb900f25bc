"""The HTTP edge's own shapes (lists, summaries, the trace tree, OpenAI's chat format).

Bus messages stay in `crewbus_contracts` and are served as they are (`SubmitTask`,
`TaskAccepted`, `TaskState`, `ControlAccepted`, the events); these Structs exist only on
HTTP, so they live with the gateway. OpenAPI takes their JSON Schema from msgspec, as it
takes the contracts'.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from crewbus_contracts import ApprovalDecision, TaskState, TaskStatus
from crewbus_contracts.control import Reason
from crewbus_contracts.traces import Span


class TaskSummary(msgspec.Struct, kw_only=True):
    task_id: str
    text: str
    status: TaskStatus
    created_at: float
    updated_at: float
    rounds: int
    spent_usd: float
    spent_tokens: int
    pending_approvals: int
    score: float | None = None
    verdict: str | None = None
    error_code: str | None = None

    @classmethod
    def of(cls, state: TaskState) -> TaskSummary:
        result = state.result
        return cls(task_id=state.task_id, text=state.text, status=state.status,
                   created_at=state.created_at, updated_at=state.updated_at,
                   rounds=len(state.rounds), spent_usd=state.spent_usd,
                   spent_tokens=state.spent_tokens,
                   pending_approvals=len(state.pending_approvals),
                   score=result.score if result else None,
                   verdict=result.verdict if result else None,
                   error_code=state.error.code if state.error else None)


class TaskList(msgspec.Struct, kw_only=True):
    tasks: list[TaskSummary]


class Approval(msgspec.Struct, kw_only=True):
    """A tool call that waits (or waited) for a person."""

    call_key: str
    tool: str
    arguments: str
    round: int
    step_id: str
    requested_at: float
    expires_at: float
    decision: ApprovalDecision | None = None


class ApprovalList(msgspec.Struct, kw_only=True):
    task_id: str
    status: TaskStatus
    approvals: list[Approval]


class Decision(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /v1/tasks/{id}/approvals/{call_key}`."""

    approved: bool
    reason: Reason = ""


class CancelBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /v1/tasks/{id}/cancel` (optional)."""

    reason: Reason = ""


class SpanNode(msgspec.Struct, kw_only=True):
    span: Span
    children: list[SpanNode] = []


class TraceTree(msgspec.Struct, kw_only=True):
    task_id: str
    spans: int
    roots: list[SpanNode]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "unavailable"]
    detail: str = ""


# -- OpenAI Chat Completions ------------------------------------------------------------

class TextPart(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: str
    text: str = ""


class ChatMessageIn(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OpenAI's request. Every field is listed: a known one is honoured, ignored (sampling
    knobs a crew has no use for) or refused with a 400 naming it (`chat.REFUSED`); an
    unknown one is refused too, so nothing a client asks for is silently dropped."""

    model: str
    messages: Annotated[list[ChatMessageIn], msgspec.Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    # ignored
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    parallel_tool_calls: bool | None = None
    n: int | None = None
    # refused unless harmless
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    web_search_options: Any = None


class ChatMessageOut(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Choice(msgspec.Struct, kw_only=True):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    """The crew's progress (plan, steps, critique), as reasoning models stream theirs."""


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int
    delta: Delta
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: Usage | None = None


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "crewbus"


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]

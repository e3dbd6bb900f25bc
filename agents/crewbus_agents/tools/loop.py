"""The tool-calling loop: model → tools → model, until the model answers.

Independent of the bus: the model is a `ChatFn`, the platform is `ToolHooks`. Every model
turn and every tool outcome is recorded under a key derived from the task, round, step and
position, and looked up before doing the work again: re-running a step with the same
starting messages (after a redelivery or an approval) replays what already happened, so
the model sees the same conversation and no tool's side effect is repeated.
Tool calls of one turn run one after another, in the order the model gave them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from crewbus_agents.tools.chat import (
    ChatFn,
    ChatMessage,
    ChatReply,
    OpenAITool,
    assistant_message,
    tool_message,
)
from crewbus_agents.tools.context import ToolContext, ToolOutcome
from crewbus_agents.tools.hooks import LocalToolHooks, PendingToolCall, ToolHooks
from crewbus_agents.tools.registry import ToolRegistry
from crewbus_agents.tools.replay import ReplayGuard
from crewbus_contracts.tasks import TokenUsage

StopReason = Literal["answered", "max_tool_calls", "cancelled", "awaiting_approval", "no_answer"]


class ToolLoopLimits(msgspec.Struct, kw_only=True, frozen=True):
    max_tool_calls: int = 8
    final_answer_on_limit: bool = True
    """At the limit, ask the model once more, without tools, to answer with what it has."""


class ToolLoopResult(msgspec.Struct, kw_only=True):
    """How the loop ended, the whole conversation, and what it cost."""

    stop_reason: StopReason
    answer: str | None = None
    error: str | None = None
    messages: list[ChatMessage] = []
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)
    tool_calls: int = 0
    model_turns: int = 0
    replayed_turns: int = 0
    replayed_calls: int = 0
    pending: PendingToolCall | None = None
    """The call waiting for a human when `stop_reason` is `awaiting_approval`."""

    @property
    def answered(self) -> bool:
        return self.answer is not None


def tool_call_key(ctx: ToolContext, n: int) -> str:
    """Record key of the step's n-th tool call (dot-separated, usable as a NATS KV key)."""
    return f"{ctx.task_id}.{ctx.round}.{ctx.step_id}.call.{n}"


def chat_turn_key(ctx: ToolContext, n: int) -> str:
    """Record key of the step's n-th model turn."""
    return f"{ctx.task_id}.{ctx.round}.{ctx.step_id}.turn.{n}"


class _Run:
    """The mutable state of one loop run."""

    def __init__(
        self,
        chat: ChatFn,
        registry: ToolRegistry,
        ctx: ToolContext,
        hooks: ToolHooks,
        messages: list[ChatMessage],
        replay: ReplayGuard | None = None,
    ) -> None:
        self.chat, self.registry, self.ctx, self.hooks = chat, registry, ctx, hooks
        self.replay = replay
        self.result = ToolLoopResult(stop_reason="answered", messages=list(messages))

    def end(
        self,
        reason: StopReason,
        *,
        answer: str | None = None,
        error: str | None = None,
        pending: PendingToolCall | None = None,
    ) -> ToolLoopResult:
        self.result.stop_reason, self.result.answer = reason, answer
        self.result.error, self.result.pending = error, pending
        return self.result

    async def model_turn(self, tools: list[OpenAITool]) -> ChatReply:
        key = chat_turn_key(self.ctx, self.result.model_turns)
        reply = await self.hooks.recorded_reply(key)
        if reply is None:
            reply = await self.chat(list(self.result.messages), tools)
            await self.hooks.record_reply(key, reply)
        else:
            self.result.replayed_turns += 1
        self.result.model_turns += 1
        self.result.usage = self.result.usage.plus(reply.usage)
        self.result.messages.append(assistant_message(reply))
        return reply

    async def tool_call(self, call: PendingToolCall) -> ToolOutcome | None:
        """The call's outcome (recorded, denied or fresh), or None when it must wait."""
        outcome = await self.hooks.recorded_result(call.key)
        if outcome is not None and outcome.tool == call.name:
            outcome = msgspec.structs.replace(outcome, replayed=True)
            self.result.replayed_calls += 1
        elif self.replay is not None:  # a replayed or shadow task: never asks, never writes
            outcome = await self.replay.call(call, self.registry, self.ctx)
            await self.hooks.record_result(call.key, outcome)
        else:
            decision = await self.hooks.before_tool(call)
            if decision.kind == "pause":
                return None
            if decision.kind == "deny":
                outcome = ToolOutcome.denied(call.name, decision.reason)
            else:
                outcome = await self.registry.call(call.name, call.request.arguments, self.ctx)
            await self.hooks.record_result(call.key, outcome)
        await self.hooks.on_tool_call(call, outcome)
        return outcome


async def run_tool_loop(
    chat: ChatFn,
    registry: ToolRegistry,
    ctx: ToolContext,
    messages: list[ChatMessage],
    limits: ToolLoopLimits | None = None,
    hooks: ToolHooks | None = None,
    replay: ReplayGuard | None = None,
) -> ToolLoopResult:
    """Let the model use the registry's tools until it answers, a limit or a human stops it.
    With `replay`, every tool call goes through its rules (`tools/replay.py`) instead.

    Never raises for the model's or a tool's faults; a failing `chat` (the provider is down)
    propagates, since the step cannot go on without its model.
    """
    limits = limits or ToolLoopLimits(max_tool_calls=ctx.settings.max_tool_calls)
    run = _Run(chat, registry, ctx, hooks or LocalToolHooks(), messages, replay)
    tools = registry.openai_tools()
    while True:
        if (why := await run.hooks.check_cancelled()) is not None:
            return run.end("cancelled", error=f"cancelled: {why}")
        reply = await run.model_turn(tools)
        if not reply.tool_calls:
            if reply.content and reply.content.strip():
                return run.end("answered", answer=reply.content)
            return run.end("no_answer", error="the model gave neither an answer nor a tool call")
        limit_hit = False
        for request in reply.tool_calls:
            if run.result.tool_calls >= limits.max_tool_calls:
                limit_hit = True
                refusal = (
                    f"REFUSED: this step's limit of {limits.max_tool_calls} tool calls is reached"
                )
                run.result.messages.append(tool_message(request.id, refusal))
                continue
            if (why := await run.hooks.check_cancelled()) is not None:
                return run.end("cancelled", error=f"cancelled: {why}")
            n = run.result.tool_calls
            call = PendingToolCall(
                key=tool_call_key(ctx, n),
                index=n,
                task_id=ctx.task_id,
                step_id=ctx.step_id,
                request=request,
                requires_approval=registry.requires_approval(request.name),
            )
            outcome = await run.tool_call(call)
            if outcome is None:
                return run.end("awaiting_approval", pending=call)
            run.result.tool_calls += 1
            run.result.messages.append(tool_message(request.id, outcome.for_model()))
        if limit_hit:
            return await _at_limit(run, limits)


async def _at_limit(run: _Run, limits: ToolLoopLimits) -> ToolLoopResult:
    error = f"the step reached its limit of {limits.max_tool_calls} tool calls"
    if not limits.final_answer_on_limit:
        return run.end("max_tool_calls", error=error)
    run.result.messages.append(
        {
            "role": "user",
            "content": "The tool call limit is reached. Answer now with what you have.",
        }
    )
    reply = await run.model_turn([])
    answer = reply.content if reply.content and reply.content.strip() else None
    return run.end("max_tool_calls", answer=answer, error=error)

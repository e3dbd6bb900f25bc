"""The tool loop with a scripted model (a plain function choosing each turn; no ML in it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crewbus_agents.tools import (
    ChatMessage,
    ChatReply,
    Decision,
    LocalToolHooks,
    PendingToolCall,
    ToolCallRequest,
    ToolContext,
    ToolLoopLimits,
    ToolOutcome,
    ToolRegistry,
    ToolSettings,
    default_registry,
    run_tool_loop,
)
from crewbus_contracts.tasks import TokenUsage

pytestmark = pytest.mark.anyio

Turn = Callable[[list[ChatMessage], list[dict[str, Any]]], ChatReply]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ScriptedModel:
    """A stand-in model that follows a script: `script(turn, messages, tools)` → reply.

    Like a real model it is stateless: `turn` is read from the conversation (how many
    assistant turns it already holds), so a replayed conversation resumes the script.
    """

    def __init__(self, script: Callable[[int, list[ChatMessage], list[dict[str, Any]]], ChatReply]):
        self.script = script
        self.turns = 0
        self.tools_seen: list[list[str]] = []

    async def __call__(self, messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        self.tools_seen.append([t["function"]["name"] for t in tools])
        turn = sum(1 for m in messages if m["role"] == "assistant")
        reply = self.script(turn, messages, tools)
        self.turns += 1
        return reply


class CountingRegistry(ToolRegistry):
    """The real registry, counting how often each tool really ran."""

    def __init__(self, inner: ToolRegistry) -> None:
        super().__init__()
        self._tools = inner._tools
        self._approval = inner._approval
        self.runs: dict[str, int] = {}

    async def call(self, name: str, arguments_json: str | bytes, ctx: ToolContext) -> ToolOutcome:
        self.runs[name] = self.runs.get(name, 0) + 1
        return await super().call(name, arguments_json, ctx)


def call(name: str, n: int = 0, **args: Any) -> ChatReply:
    request = ToolCallRequest(id=f"call_{name}_{n}", name=name, arguments=json.dumps(args))
    return ChatReply(
        tool_calls=[request], usage=TokenUsage(input_tokens=10, output_tokens=5, calls=1)
    )


def answer(text: str) -> ChatReply:
    return ChatReply(content=text, usage=TokenUsage(input_tokens=20, output_tokens=3, calls=1))


def last_tool_answer(messages: list[ChatMessage]) -> str:
    return str(next(m["content"] for m in reversed(messages) if m["role"] == "tool"))


def make_ctx(tmp_path: Path, **settings: Any) -> ToolContext:
    s = ToolSettings(workspace_root=str(tmp_path), **settings)
    return ToolContext.create(s, task_id="task-loop", step_id="s1")


START: list[ChatMessage] = [{"role": "user", "content": "What is 6 times 7?"}]


async def test_model_calls_the_calculator_then_answers(tmp_path: Path) -> None:
    def script(turn: int, messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        if turn == 0:
            return call("calculator", expression="6 * 7")
        return answer(f"It is {last_tool_answer(messages)}.")

    ctx = make_ctx(tmp_path)
    hooks = LocalToolHooks()
    model = ScriptedModel(script)
    result = await run_tool_loop(model, default_registry(ctx.settings), ctx, START, hooks=hooks)
    assert result.stop_reason == "answered" and result.answer == "It is 42."
    assert result.tool_calls == 1 and result.model_turns == 2
    assert result.usage == TokenUsage(input_tokens=30, output_tokens=8, calls=2)
    assert "calculator" in model.tools_seen[0]
    assistant, tool_msg = result.messages[1], result.messages[2]
    assert assistant["tool_calls"][0]["function"]["name"] == "calculator"
    assert tool_msg == {"role": "tool", "tool_call_id": "call_calculator_0", "content": "42"}
    assert [(c.key, o.output) for c, o in hooks.calls] == [("task-loop.1.s1.call.0", "42")]


async def test_invalid_arguments_reach_the_model_which_can_correct_itself(tmp_path: Path) -> None:
    def script(turn: int, messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        if turn == 0:
            return call("calculator", expr="1+1")
        if turn == 1:
            assert "unknown field `expr`" in last_tool_answer(messages)
            return call("calculator", 1, expression="1+1")
        return answer(last_tool_answer(messages))

    ctx = make_ctx(tmp_path)
    result = await run_tool_loop(ScriptedModel(script), default_registry(ctx.settings), ctx, START)
    assert result.answer == "2" and result.tool_calls == 2


async def test_loop_stops_at_the_call_limit_and_asks_for_a_final_answer(tmp_path: Path) -> None:
    def script(turn: int, messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        if not tools:
            return answer("best effort without more tools")
        return call("calculator", turn, expression=f"{turn} + 1")

    ctx = make_ctx(tmp_path)
    registry = CountingRegistry(default_registry(ctx.settings))
    limits = ToolLoopLimits(max_tool_calls=3)
    result = await run_tool_loop(ScriptedModel(script), registry, ctx, START, limits)
    assert result.stop_reason == "max_tool_calls"
    assert result.tool_calls == 3 and registry.runs == {"calculator": 3}
    assert "limit of 3 tool calls" in (result.error or "")
    assert result.answer == "best effort without more tools"
    refused = [m for m in result.messages if m["role"] == "tool" and "REFUSED" in m["content"]]
    assert len(refused) == 1

    strict = ToolLoopLimits(max_tool_calls=2, final_answer_on_limit=False)
    result = await run_tool_loop(ScriptedModel(script), registry, ctx, START, strict)
    assert result.stop_reason == "max_tool_calls" and result.answer is None


async def test_denied_call_reaches_the_model_as_the_tools_answer(tmp_path: Path) -> None:
    def script(turn: int, messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        if turn == 0:
            return call("python", code="open('ran.txt', 'w').write('yes')")
        return answer(last_tool_answer(messages))

    ctx = make_ctx(tmp_path)
    hooks = LocalToolHooks(approver=lambda c: Decision.deny("not on a Friday"))
    result = await run_tool_loop(
        ScriptedModel(script), default_registry(ctx.settings), ctx, START, hooks=hooks
    )
    assert result.stop_reason == "answered"
    assert result.answer is not None and result.answer.startswith("DENIED")
    assert "not on a Friday" in result.answer
    assert not (ctx.workspace / "ran.txt").exists()
    assert hooks.calls[0][1].status == "denied"

    unattended = await run_tool_loop(
        ScriptedModel(script), default_registry(ctx.settings), ctx, START, hooks=LocalToolHooks()
    )
    assert "requires approval and no approver is connected" in (unattended.answer or "")
    assert not (ctx.workspace / "ran.txt").exists()


def write_then_answer(
    turn: int, messages: list[ChatMessage], tools: list[dict[str, Any]]
) -> ChatReply:
    if turn == 0:
        return call("write_file", path="out.txt", content="effect")
    return answer("wrote it")


async def test_redelivered_step_replays_recorded_results_instead_of_writing_again(
    tmp_path: Path,
) -> None:
    ctx = make_ctx(tmp_path, requires_approval=[])
    registry = CountingRegistry(default_registry(ctx.settings))
    hooks = LocalToolHooks()  # the records survive between the two runs, as KV would

    def killed_after_the_tool(
        turn: int, m: list[ChatMessage], t: list[dict[str, Any]]
    ) -> ChatReply:
        if turn == 0:
            return write_then_answer(turn, m, t)
        raise RuntimeError("executor killed before the step was acked")

    with pytest.raises(RuntimeError):
        await run_tool_loop(ScriptedModel(killed_after_the_tool), registry, ctx, START, hooks=hooks)
    assert registry.runs == {"write_file": 1}
    (ctx.workspace / "out.txt").unlink()  # so a second write would be visible

    redelivered = ScriptedModel(write_then_answer)
    result = await run_tool_loop(redelivered, registry, ctx, START, hooks=hooks)
    assert result.answer == "wrote it"
    assert registry.runs == {"write_file": 1}
    assert not (ctx.workspace / "out.txt").exists()
    assert result.replayed_turns == 1 and result.replayed_calls == 1
    assert redelivered.turns == 1  # only the turn that never got recorded was asked again

    again = await run_tool_loop(ScriptedModel(write_then_answer), registry, ctx, START, hooks=hooks)
    assert again.answer == "wrote it" and registry.runs == {"write_file": 1}
    assert again.replayed_turns == 2


async def test_paused_call_waits_for_approval_then_runs_once_on_rerun(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    registry = CountingRegistry(default_registry(ctx.settings))
    asked: list[PendingToolCall] = []

    def approver(pending: PendingToolCall) -> Decision:
        asked.append(pending)
        return Decision.pause()

    hooks = LocalToolHooks(approver=approver)
    first = await run_tool_loop(ScriptedModel(write_then_answer), registry, ctx, START, hooks=hooks)
    assert first.stop_reason == "awaiting_approval"
    assert first.pending is not None and first.pending.name == "write_file"
    assert json.loads(first.pending.request.arguments)["content"] == "effect"
    assert registry.runs == {}

    hooks.approver = lambda pending: Decision.allow()
    second = await run_tool_loop(
        ScriptedModel(write_then_answer), registry, ctx, START, hooks=hooks
    )
    assert second.answer == "wrote it" and registry.runs == {"write_file": 1}
    assert (ctx.workspace / "out.txt").read_text() == "effect"
    assert len(asked) == 1 and asked[0].key == "task-loop.1.s1.call.0"


class CancelAfterFirstCall(LocalToolHooks):
    async def on_tool_call(self, call: PendingToolCall, outcome: ToolOutcome) -> None:
        await super().on_tool_call(call, outcome)
        self.cancel("user pressed cancel")


async def test_cancel_stops_the_step_at_its_next_tool_or_model_call(tmp_path: Path) -> None:
    def two_calls(turn: int, messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        first, second = (
            call("calculator", 0, expression="1+1"),
            call("calculator", 1, expression="2+2"),
        )
        return ChatReply(tool_calls=[*first.tool_calls, *second.tool_calls])

    ctx = make_ctx(tmp_path)
    registry = CountingRegistry(default_registry(ctx.settings))
    result = await run_tool_loop(
        ScriptedModel(two_calls), registry, ctx, START, hooks=CancelAfterFirstCall()
    )
    assert result.stop_reason == "cancelled" and "user pressed cancel" in (result.error or "")
    assert registry.runs == {"calculator": 1}

    hooks = LocalToolHooks()
    hooks.cancel("before it began")
    model = ScriptedModel(two_calls)
    result = await run_tool_loop(model, registry, ctx, START, hooks=hooks)
    assert result.stop_reason == "cancelled" and model.turns == 0


async def test_a_model_that_says_nothing_ends_the_loop_with_a_clear_error(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    model = ScriptedModel(lambda turn, m, t: ChatReply(content="  "))
    result = await run_tool_loop(model, default_registry(ctx.settings), ctx, START)
    assert result.stop_reason == "no_answer" and "neither an answer nor a tool call" in (
        result.error or ""
    )

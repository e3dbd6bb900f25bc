"""The replay rules in the tool loop, with a model that asks for whatever the test says:
a recorded call is served, a call with side effects never runs whatever its arguments,
a read-only tool runs live only when allowed, nothing asks for approval; a trace's spans
read back as the recording; the filters that pick recorded tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from crewbus.replay.selection import is_production, parse_filters, parse_since, verdict_of
from crewbus.tracing.draft import SpanPlace
from crewbus.tracing.records import write_memory_search, write_tool_call
from crewbus.tracing.tracer import Tracer
from crewbus_agents.recording import recording_of
from crewbus_agents.tools import (
    ChatMessage,
    ChatReply,
    LocalToolHooks,
    PendingToolCall,
    RecordedCall,
    ReplayGuard,
    ToolArgs,
    ToolCallRequest,
    ToolContext,
    ToolOutcome,
    ToolSettings,
    canonical_arguments,
    default_registry,
    make_tool,
    run_tool_loop,
)
from crewbus_agents.tools.replay import replay_outcome
from crewbus_contracts import Critique, RoundState, TaskLimits, TaskState
from crewbus_contracts.memory import MemoryHit
from crewbus_contracts.replay import ReplayOptions

pytestmark = pytest.mark.anyio

HIT = MemoryHit(id="m1", score=0.9, kind="task", text="an earlier task")


class EchoArgs(ToolArgs):
    text: str


def calls_then_answer(calls: list[tuple[str, dict[str, Any]]]) -> Any:
    """A model asking for `calls` one per turn, then answering."""

    async def chat(messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn < len(calls):
            name, args = calls[turn]
            return ChatReply(tool_calls=[ToolCallRequest(id=f"c{turn}", name=name,
                                                         arguments=json.dumps(args))])
        return ChatReply(content="done")

    return chat


def never_asked(call: PendingToolCall) -> Any:
    raise AssertionError(f"approval asked for {call.name} in a replay")


async def test_side_effects_never_run_and_only_allowed_read_only_tools_run_live(
    tmp_path: Path
) -> None:
    settings = ToolSettings(workspace_root=str(tmp_path), requires_approval=frozenset())
    ran: list[str] = []

    def echo(args: EchoArgs) -> str:
        """An unclassified tool (say, from a plugin): it counts as having side effects."""
        ran.append(args.text)
        return args.text

    registry = default_registry(settings)
    registry.register(make_tool(echo))
    recorded = [RecordedCall(tool="write_file", arguments=canonical_arguments(
        '{"path": "a.txt", "content": "x"}'), outcome=ToolOutcome(tool="write_file",
                                                                  output="wrote 1 byte"))]
    guard = ReplayGuard("replay", recorded, live_tools=["calculator", "python"])
    hooks = LocalToolHooks(approver=never_asked)
    ctx = ToolContext.create(settings, "t-replay", "e1")
    chat = calls_then_answer([
        ("write_file", {"content": "x", "path": "a.txt"}),      # recorded, keys reordered
        ("write_file", {"path": "b.txt", "content": "new"}),    # new arguments
        ("python", {"code": "open('c.txt', 'w').write('x')"}),  # listed live, not read-only
        ("echo", {"text": "hi"}),                               # unclassified
        ("calculator", {"expression": "2+2"}),                  # read-only, allowed
        ("read_file", {"path": "a.txt"}),                       # read-only, not allowed
        ("no_such_tool", {}),
    ])
    result = await run_tool_loop(chat, registry, ctx, [{"role": "user", "content": "go"}],
                                 hooks=hooks, replay=guard)
    assert result.answer == "done"
    outcomes = [outcome for _, outcome in hooks.calls]
    assert [(o.tool, o.replay_match, o.status) for o in outcomes] == [
        ("write_file", "hit", "ok"), ("write_file", "miss", "denied"),
        ("python", "miss", "denied"), ("echo", "miss", "denied"),
        ("calculator", "miss", "ok"), ("read_file", "miss", "denied"),
        ("no_such_tool", "miss", "error")]
    assert outcomes[0].output == "wrote 1 byte"
    assert outcomes[4].output == "4"
    assert [o.error_type for o in outcomes[1:4]] == ["replay_side_effect"] * 3
    assert "not available in replay" in outcomes[1].for_model()
    assert outcomes[5].error_type == "replay_not_live"
    assert [replay_outcome(o.replay_match or "", o.status, o.error_type) for o in outcomes] == [
        "served", "blocked", "blocked", "blocked", "live", "refused", "refused"]
    assert list(tmp_path.rglob("*.txt")) == [] and ran == []


async def test_a_recorded_call_repeated_is_served_in_order_then_the_last_again() -> None:
    recorded = [RecordedCall(tool="calculator", arguments='{"expression":"1+1"}',
                             outcome=ToolOutcome(tool="calculator", output=out))
                for out in ("first", "second")]
    guard = ReplayGuard("replay", recorded)
    served = [guard.recorded("calculator", '{ "expression" : "1+1" }') for _ in range(3)]
    assert [o.output for o in served if o] == ["first", "second", "second"]
    assert guard.recorded("calculator", '{"expression": "1+2"}') is None


async def test_a_trace_reads_back_as_the_recording_of_its_calls_and_recalls() -> None:
    tracer = Tracer(None, "executor")  # no bus: each span is returned as it would be written
    place = SpanPlace("t-orig", None, 1, "e1")
    spans = [await write_tool_call(tracer, place, tool="calculator", call_id="c0",
                          arguments='{"expression": "6*7"}',
                          outcome=ToolOutcome(tool="calculator", output="42")),
             await write_tool_call(tracer, place, tool="read_file", call_id="c1",
                          arguments='{"path": "x"}',
                          outcome=ToolOutcome(tool="read_file", status="error",
                                              error="no such file", error_type="ToolFailed")),
             await write_tool_call(tracer, place, tool="calculator", call_id="c0",
                                   arguments='{"expression": "6*7"}',
                                   outcome=ToolOutcome(tool="calculator", output="42",
                                                       replayed=True)),
             await write_memory_search(tracer, place, query="the task", hits=[HIT], start=0.0,
                                       limit=3, kind="task")]
    recording = recording_of([s for s in spans if s is not None])
    assert [(c.tool, c.arguments, c.outcome.status) for c in recording.calls] == [
        ("calculator", '{"expression":"6*7"}', "ok"), ("read_file", '{"path":"x"}', "error")]
    assert recording.calls[0].outcome.output == "42"
    assert recording.calls[1].outcome.for_model() == "ERROR (ToolFailed): no such file"
    assert recording.recalls == {("the task", "task"): [HIT]}


def test_filters_take_status_verdict_and_metadata_and_refuse_anything_else() -> None:
    critique = Critique(score=0.2, verdict="reject", reasons=["wrong"])
    failed = TaskState(task_id="t1", text="x", status="failed", limits=TaskLimits(),
                       created_at=1.0, updated_at=2.0, deadline_at=9.0,
                       metadata={"team": "search"},
                       rounds=[RoundState(number=1, critique=critique)])
    assert verdict_of(failed) == "reject"
    assert parse_filters(["status=failed", "verdict=reject", "metadata.team=search"]
                         ).matches(failed)
    assert not parse_filters(["metadata.team=ads"]).matches(failed)
    assert not parse_filters(["status=completed"]).matches(failed)
    assert parse_filters(["metadata.team=search"]).at_submission
    assert not parse_filters(["status=failed"]).at_submission
    for bad in ("status", "colour=red", "metadata.=x", "verdict="):
        with pytest.raises(ValueError, match="--filter"):
            parse_filters([bad])
    assert parse_since("90s") == 90 and parse_since("24h") == 86_400
    assert parse_since("7d") == 7 * 86_400
    for bad in ("yesterday", "90", ""):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad)
    assert is_production(failed)
    assert not is_production(msgspec.structs.replace(
        failed, replay=ReplayOptions(source_task_id="t0")))

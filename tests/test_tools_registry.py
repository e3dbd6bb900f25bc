"""ToolRegistry: schemas from the argument type, errors the model can read, never a crash."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest

from crewbus_agents.tools import (
    MemoryHit,
    ToolArgs,
    ToolContext,
    ToolDefinitionError,
    ToolFailed,
    ToolRegistry,
    ToolSettings,
    default_registry,
    tool,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext.create(
        ToolSettings(workspace_root=str(tmp_path), output_limit_chars=120, tool_timeout_s=1),
        task_id="task-reg",
        step_id="s1",
    )


class Unit(ToolArgs):
    name: Literal["celsius", "fahrenheit"]


class ConvertArgs(ToolArgs):
    value: Annotated[float, msgspec.Meta(ge=-273.15, description="The temperature to convert.")]
    to: Unit
    precision: int = 1


@tool(name="convert", description="Convert a temperature.")
async def convert(args: ConvertArgs) -> dict[str, float]:
    if args.to.name == "fahrenheit":
        return {"value": round(args.value * 9 / 5 + 32, args.precision)}
    return {"value": args.value}


class EchoArgs(ToolArgs):
    text: str


@tool(requires_approval=True)
def echo(args: EchoArgs, ctx: ToolContext) -> str:
    """Repeat the text, with the step it ran in."""
    return f"{ctx.step_id}: {args.text}"


@tool(description="Always fails the way a tool should.")
def refuse(args: EchoArgs) -> str:
    raise ToolFailed(f"cannot do {args.text!r}")


@tool(description="Has a bug.")
def buggy(args: EchoArgs) -> str:
    data: dict[str, str] = {}
    return data[args.text]


@tool(description="Never finishes in time.")
def slow(args: EchoArgs) -> str:
    time.sleep(3)
    return "late"


def registry() -> ToolRegistry:
    return ToolRegistry([convert, echo, refuse, buggy, slow], approval_required_for={"convert"})


def test_openai_tools_carry_a_self_contained_schema_from_the_struct() -> None:
    tools = {t["function"]["name"]: t for t in registry().openai_tools()}
    assert tools["convert"]["type"] == "function"
    fn = tools["convert"]["function"]
    assert fn["description"] == "Convert a temperature."
    params = fn["parameters"]
    assert "$ref" not in str(params) and "$defs" not in params
    assert params["type"] == "object"
    assert params["required"] == ["value", "to"]
    assert params["properties"]["value"]["minimum"] == -273.15
    assert params["properties"]["value"]["description"] == "The temperature to convert."
    assert params["properties"]["to"]["properties"]["name"]["enum"] == ["celsius", "fahrenheit"]
    assert params["properties"]["precision"]["default"] == 1
    assert tools["echo"]["function"]["description"] == "Repeat the text, with the step it ran in."


def test_approval_comes_from_the_tool_or_the_settings() -> None:
    r = registry()
    assert r.requires_approval("echo") and r.requires_approval("convert")
    assert not r.requires_approval("refuse")


async def test_valid_call_runs_and_encodes_non_text_results_as_json(ctx: ToolContext) -> None:
    outcome = await registry().call("convert", '{"value": 100, "to": {"name": "fahrenheit"}}', ctx)
    assert outcome.ok and outcome.output == '{"value":212.0}'
    assert outcome.duration_s > 0
    echo_outcome = await registry().call("echo", '{"text": "hi"}', ctx)
    assert echo_outcome.output == "s1: hi"


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        (
            '{"value": "hot", "to": {"name": "celsius"}}',
            "Expected `float`, got `str` - at `$.value`",
        ),
        ('{"value": -300, "to": {"name": "celsius"}}', "at `$.value`"),
        ('{"value": 1, "to": {"name": "kelvin"}}', "at `$.to.name`"),
        ('{"value": 1}', "missing required field `to`"),
        ('{"value": 1, "to": {"name": "celsius"}, "extra": 1}', "unknown field `extra`"),
        ('{"value": 1, "to": ', "not valid JSON"),
    ],
)
async def test_invalid_arguments_become_an_error_the_model_can_act_on(
    ctx: ToolContext, arguments: str, detail: str
) -> None:
    outcome = await registry().call("convert", arguments, ctx)
    assert outcome.status == "error"
    assert outcome.error_type == "ToolArgumentsInvalid"
    assert detail in (outcome.error or "")
    assert "Call it again" in outcome.for_model()


async def test_unknown_tool_lists_the_real_ones(ctx: ToolContext) -> None:
    outcome = await registry().call("rm_rf", "{}", ctx)
    assert outcome.error_type == "UnknownTool"
    assert "convert" in (outcome.error or "")


async def test_tool_failures_and_bugs_become_outcomes(ctx: ToolContext) -> None:
    failed = await registry().call("refuse", '{"text": "that"}', ctx)
    assert failed.error == "cannot do 'that'" and failed.error_type == "ToolFailed"
    crashed = await registry().call("buggy", '{"text": "x"}', ctx)
    assert crashed.error_type == "ToolFailed" and "KeyError" in (crashed.error or "")


async def test_a_tool_past_the_timeout_is_abandoned(ctx: ToolContext) -> None:
    outcome = await registry().call("slow", '{"text": "x"}', ctx)
    assert outcome.status == "error" and "did not finish within 1s" in (outcome.error or "")


async def test_long_output_is_truncated(ctx: ToolContext) -> None:
    outcome = await registry().call("echo", '{"text": "%s"}' % ("a" * 200), ctx)
    assert outcome.truncated and outcome.output.endswith("characters]")


def test_functions_the_model_could_not_call_are_refused_at_registration() -> None:
    def untyped(args):  # type: ignore[no-untyped-def]
        """Bad."""

    def not_a_struct(args: dict[str, int]) -> str:
        """Bad."""
        return ""

    def no_description(args: EchoArgs) -> str:
        return ""

    for fn in (untyped, not_a_struct, no_description):
        with pytest.raises(ToolDefinitionError):
            tool()(fn)
    with pytest.raises(ToolDefinitionError, match="must match"):
        tool(name="no spaces allowed", description="x")(refuse.fn)
    with pytest.raises(ToolDefinitionError, match="already registered"):
        ToolRegistry([echo, echo])


async def test_memory_search_is_offered_only_when_a_memory_client_is_plugged_in(
    ctx: ToolContext,
) -> None:
    queries: list[tuple[str, int]] = []

    async def search(query: str, limit: int) -> list[MemoryHit]:
        queries.append((query, limit))
        return [MemoryHit(id="m1", score=0.91, text="NATS is a message bus")]

    assert "memory_search" not in default_registry(ctx.settings)
    registry = default_registry(ctx.settings, memory=search)
    outcome = await registry.call("memory_search", '{"query": "what is NATS"}', ctx)
    assert queries == [("what is NATS", 5)]
    assert json.loads(outcome.output) == [
        {"id": "m1", "score": 0.91, "text": "NATS is a message bus", "source": ""}
    ]

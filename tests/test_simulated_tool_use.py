"""The simulated model uses tools the way an honest model without world knowledge would:
arithmetic and known unit conversions go to the calculator, documents are quoted, and
what it cannot do it says. Over real HTTP with the real openai client and the real tool
loop; the expression and unit finders alone first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import openai
import pytest

from crewbus.llm import (
    HINT_HEADER,
    SIMULATED_MODEL_NAME,
    LLMClient,
    LLMSettings,
    ModelHint,
    ShownMemory,
    SimulatedModel,
    response_schema,
)
from crewbus.llm.simulated_arithmetic import find_expression
from crewbus.llm.simulated_units import UNITS, find_conversion
from crewbus_agents.tools import (
    ChatMessage,
    ChatReply,
    ToolCallRequest,
    ToolContext,
    ToolSettings,
    default_registry,
    run_tool_loop,
)
from crewbus_agents.tools.calculator import evaluate
from crewbus_contracts import StepOutput

CALCULATOR_TOOL = {"type": "function", "function": {
    "name": "calculator", "parameters": {"type": "object", "properties": {
        "expression": {"type": "string"}}}}}


@pytest.mark.parametrize(("text", "expression"), [
    ("What is 17 * 23?", "17 * 23"),
    ("What is 2 + 3 * 4?", "2 + 3 * 4"),
    ("What is (2 + 3) * 4?", "(2 + 3) * 4"),
    ("Compute (12 + 30) * 2.", "(12 + 30) * 2"),
    ("((1+2)*(3+4))/7", "((1+2)*(3+4))/7"),
    ("Calculate 1234.5 / 2.5", "1234.5 / 2.5"),
    ("What is 7.5 * 4 - 0.25?", "7.5 * 4 - 0.25"),
    ("What is 2^10?", "2**10"),
    ("3 \u00d7 4 \u00f7 2 \u2212 1", "3 * 4 / 2 - 1"),
    ("Evaluate sqrt(2025) + 7", "sqrt(2025) + 7"),
    ("What is -5 * 2?", "-5 * 2"),
    ("Draft an answer to: What is 17 * 23? (using r1 and r2)", "17 * 23"),
    ("Compute (2 + 3", "2 + 3"),
    ("then (2 + 3) * 4) and", "(2 + 3) * 4"),
    ("What is 7 * (3 + 2) and then 1 + 1?", "7 * (3 + 2)"),
])
def test_an_expression_is_found_as_written(text: str, expression: str) -> None:
    assert find_expression(text) == expression


@pytest.mark.parametrize("text", [
    "What is nine times eleven?",
    "A crate holds 24 jars. How many jars are in 17 crates?",
    "What is 15% of 240?",
    "Write a 5-7-5 haiku about queues",
    "What happened on 2024-12-25?",
    "Between 10-20 users",
    "How many 8-byte words fit? (key sk-live-0123456789abc)",
    "Review and finalise the draft from e1 (using r1 and r2)",
    "42",
    "-5",
    "Compare NATS and Kafka for small teams",
])
def test_text_without_a_written_expression_has_none(text: str) -> None:
    assert find_expression(text) is None


def test_precedence_and_parentheses_are_the_calculators_not_the_models() -> None:
    """The model copies the expression out; the calculator applies precedence."""
    assert evaluate(find_expression("What is 2 + 3 * 4?") or "") == 14
    assert evaluate(find_expression("What is (2 + 3) * 4?") or "") == 20
    assert evaluate(find_expression("What is 2^3^2?") or "") == 512


@pytest.mark.parametrize(("text", "expression", "value"), [
    ("Convert 5 km to miles", "5 * 1000 / 1609.344", 3.106856),
    ("How many feet are in 2 miles?", "2 * 1609.344 / 0.3048", 10560),
    ("Convert 100 degrees Celsius to Fahrenheit", "(100 + 273.15) / (5 / 9) - 459.67", 212),
    ("Convert 98.6 \u00b0F to \u00b0C", "(98.6 + 459.67) * (5 / 9) - 273.15", 37),
    ("What is 10 pounds in kilograms?", "10 * 0.45359237", 4.5359237),
    ("Convert 60 mph to km/h", "60 * (1609.344 / 3600) / (1000 / 3600)", 96.56064),
])
def test_a_known_conversion_becomes_a_calculator_expression(
    text: str, expression: str, value: float
) -> None:
    conversion = find_conversion(text)
    assert conversion is not None and conversion.expression() == expression
    assert evaluate(expression) == pytest.approx(value)


def test_an_unknown_unit_is_named_only_when_a_conversion_is_plainly_asked() -> None:
    fathoms = find_conversion("Convert 3 fathoms to metres")
    cubits = find_conversion("How many cubits are in 10 metres?")
    assert fathoms is not None and fathoms.unknown == "fathoms" and not fathoms.expression()
    assert cubits is not None and cubits.unknown == "cubits"
    assert "fathom" not in UNITS and "fathoms" not in UNITS
    for text in ("Send 5 messages to Kafka", "Wait 5 s to retry",
                 "How many jars are in 17 crates?", "Give me 2 examples in Python"):
        assert find_conversion(text) is None, text


def _hint(instruction: str, **fields: Any) -> str:
    return ModelHint(task=instruction, step="e1", instruction=instruction,
                     **fields).header_value()


async def _turn(
    model_client: openai.AsyncOpenAI, messages: list[dict[str, Any]], hint: str,
    tools: list[dict[str, Any]] | None = None,
) -> Any:
    extra: dict[str, Any] = {"tools": tools} if tools else {}
    reply = await model_client.chat.completions.create(
        model=SIMULATED_MODEL_NAME, messages=messages,  # type: ignore[arg-type]
        extra_headers={"X-Crewbus-Agent": "executor", HINT_HEADER: hint}, **extra)
    return reply.choices[0]


@pytest.mark.anyio
async def test_an_executor_asks_the_calculator_then_answers_with_its_result(
    model_client: openai.AsyncOpenAI,
) -> None:
    hint = _hint("What is (12 + 30) * 2?")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "the prompt"}]
    first = await _turn(model_client, messages, hint, [CALCULATOR_TOOL])
    assert first.finish_reason == "tool_calls"
    (call,) = first.message.tool_calls
    assert call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "(12 + 30) * 2"}
    messages += [first.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "84"}]
    second = await _turn(model_client, messages, hint, [CALCULATOR_TOOL])
    assert second.finish_reason == "stop" and not second.message.tool_calls
    assert second.message.content == (
        "[simulated] 84 (the calculator tool computed (12 + 30) * 2 = 84)")


@pytest.mark.anyio
async def test_the_same_request_always_gets_the_same_reply(
    model_client: openai.AsyncOpenAI,
) -> None:
    hint = _hint("What is 17 * 23?")
    messages = [{"role": "user", "content": "x"}]
    replies = [await _turn(model_client, messages, hint, [CALCULATOR_TOOL]) for _ in range(3)]
    calls = [[(c.id, c.function.name, c.function.arguments) for c in r.message.tool_calls]
             for r in replies]
    assert calls[0] == calls[1] == calls[2]
    answered = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "calculator", "arguments": '{"expression": "17 * 23"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "391"}]
    texts = {(await _turn(model_client, [*messages, *answered], hint)).message.content
             for _ in range(3)}
    assert texts == {"[simulated] 391 (the calculator tool computed 17 * 23 = 391)"}


@pytest.mark.anyio
async def test_without_an_expression_or_without_the_tool_no_calculator_is_called(
    model_client: openai.AsyncOpenAI,
) -> None:
    prose = await _turn(model_client, [{"role": "user", "content": "What is 6 * 7?"}],
                        _hint("What is six times seven?"), [CALCULATOR_TOOL])
    assert not prose.message.tool_calls
    assert prose.message.content == "[simulated] result of: What is six times seven?"
    no_tool = await _turn(model_client, [{"role": "user", "content": "x"}], _hint("What is 6 * 7?"))
    assert not no_tool.message.tool_calls
    assert no_tool.message.content.startswith("[simulated]")
    assert "42" not in no_tool.message.content


@pytest.mark.anyio
async def test_the_reply_follows_the_hint_not_the_prompt(model_client: openai.AsyncOpenAI) -> None:
    choice = await _turn(model_client, [{"role": "user", "content": "What is 1000 * 1000?"}],
                         _hint("What is 3 * 3?"), [CALCULATOR_TOOL])
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {
        "expression": "3 * 3"}


@pytest.mark.anyio
async def test_a_failed_calculation_and_an_unknown_unit_are_said_honestly(
    model_client: openai.AsyncOpenAI,
) -> None:
    hint = _hint("What is 1 / 0?")
    failed = [{"role": "user", "content": "x"},
              {"role": "assistant", "content": None, "tool_calls": [
                  {"id": "c1", "type": "function", "function": {
                      "name": "calculator", "arguments": '{"expression": "1 / 0"}'}}]},
              {"role": "tool", "tool_call_id": "c1",
               "content": "ERROR (CalculatorError): division by zero"}]
    answer = (await _turn(model_client, failed, hint, [CALCULATOR_TOOL])).message
    assert not answer.tool_calls
    assert answer.content == ("[simulated] The calculator tool did not compute 1 / 0: "
                              "ERROR (CalculatorError): division by zero")
    unknown = await _turn(model_client, [{"role": "user", "content": "x"}],
                          _hint("Convert 3 fathoms to metres"), [CALCULATOR_TOOL])
    assert not unknown.message.tool_calls
    assert "I don't know the unit 'fathoms'" in unknown.message.content
    assert unknown.message.content.startswith("[simulated]")


@pytest.mark.anyio
async def test_the_real_tool_loop_converts_units_with_the_real_calculator(
    model: SimulatedModel, tmp_path: Path
) -> None:
    """The executor's loop as the agent runs it: the simulated model, the adapter, the
    built-in registry. The number in the answer is the calculator's."""
    settings = ToolSettings(workspace_root=str(tmp_path / "ws"))
    hint = ModelHint(task="Convert 5 km to miles", step="e1",
                     instruction="Draft an answer to: Convert 5 km to miles (using r1 and r2)")
    assert model.base_url is not None
    llm = LLMClient(LLMSettings(model=SIMULATED_MODEL_NAME, base_url=model.base_url), "executor")

    async def chat(messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
        turn = await llm.chat(messages, tools or None, hint=hint)
        return ChatReply(content=turn.content, usage=turn.usage, tool_calls=[
            ToolCallRequest(id=c.id, name=c.name, arguments=c.arguments)
            for c in turn.tool_calls])

    async with llm:
        result = await run_tool_loop(
            chat, default_registry(settings), ToolContext.create(settings, "t1", "e1"),
            [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert result.stop_reason == "answered" and result.tool_calls == 1
    assert result.answer == (
        "[simulated] 3.1068559611866697 miles (converting 5 km to miles with the simulated "
        "model's conversion table, the calculator tool computed 5 * 1000 / 1609.344 = "
        "3.1068559611866697)")
    tool_answer = next(m["content"] for m in result.messages if m["role"] == "tool")
    assert tool_answer == "3.1068559611866697"


def _step_output(reply: Any) -> StepOutput:
    return msgspec.json.decode(reply.choices[0].message.content, type=StepOutput)


async def _research(model_client: openai.AsyncOpenAI, hint: ModelHint) -> StepOutput:
    reply = await model_client.chat.completions.create(
        model=SIMULATED_MODEL_NAME, messages=[{"role": "user", "content": "prompt"}],
        response_format={"type": "json_schema", "json_schema": {
            "name": "StepOutput", "schema": response_schema(StepOutput)}},  # type: ignore[typeddict-item]
        extra_headers={HINT_HEADER: msgspec.structs.replace(
            hint, output="StepOutput").header_value()})
    return _step_output(reply)


@pytest.mark.anyio
async def test_a_researcher_quotes_documents_and_only_the_quotes_in_its_own_notes(
    model_client: openai.AsyncOpenAI,
) -> None:
    note = ("Gather the key facts for: the ferry\n\n[simulated] result of: Gather ...\n"
            "From memory chunk-1: The Marigold carries 140 passengers.")
    hint = ModelHint(task="ferry?", step="r1", instruction="Gather the key facts for: ferry?",
                     memory=("finding-1", "chunk-2", "t1-task"),
                     memories=(ShownMemory(id="finding-1", kind="finding", text=note),
                               ShownMemory(id="chunk-2", kind="document",
                                           text="Lake Venn ferries > Crossing\nIt takes\n35 "
                                                "minutes."),
                               ShownMemory(id="t1-task", kind="task",
                                           text="Task: x\nAnswer: 99 balloons")))
    output = await _research(model_client, hint)
    assert output.content.splitlines() == [
        "[simulated] result of: Gather the key facts for: ferry?",
        "From memory chunk-2: Lake Venn ferries > Crossing It takes 35 minutes.",
        "From memory chunk-1: The Marigold carries 140 passengers.",
    ]
    assert output.sources == ["chunk-2", "finding-1"]
    assert "99 balloons" not in output.content


@pytest.mark.anyio
async def test_an_executor_carries_its_inputs_findings_forward(
    model_client: openai.AsyncOpenAI,
) -> None:
    research = ("[simulated] result of: Gather the key facts for: ferry?\n"
                "From memory chunk-2: It takes 35 minutes.")
    hint = _hint("Draft an answer to: ferry? (using r1 and r2)", inputs=("r1", "r2"),
                 input_texts=(research, research))
    choice = await _turn(model_client, [{"role": "user", "content": "x"}], hint, [CALCULATOR_TOOL])
    assert choice.message.content.splitlines() == [
        "[simulated] result of: Draft an answer to: ferry? (using r1 and r2)",
        "From memory chunk-2: It takes 35 minutes.",
    ]

"""What the simulated model answers for a researcher's or an executor's step.

It works like an honest model that knows nothing of the world, from the request's hint
and the conversation's structure (its own tool calls and the tool messages answering
them), never from the wording of a prompt:

- A step's text starts with "[simulated] result of: <instruction>", then quotes the
  recalled documents (the first three the prompt shows, as "From memory <id>: <text>"),
  then carries forward what the steps it builds on found (their lines, minus their own
  "result of" line) and the document quotes in the crew's own earlier notes it was shown
  (findings, results, past tasks: their quotes only, so quotes never nest). So a fact
  found in an ingested document reaches the final answer, and still does when memory
  fills up with earlier runs of the same question.
- An executor's step (the tool loop) whose instruction holds an arithmetic expression
  (`simulated_arithmetic`) or a unit conversion it knows (`simulated_units`) asks the
  `calculator` tool, when the request offers it, and once the conversation holds the
  tool's result answers with it: "[simulated] 391 (the calculator tool computed 17 * 23
  = 391)". The answer's first and last numbers are the tool's result. A conversion with
  a unit it does not know gets "I don't know" instead of a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from crewbus.llm.hint import ModelHint, ShownMemory
from crewbus.llm.simulated_arithmetic import find_expression
from crewbus.llm.simulated_units import Conversion, find_conversion

CALCULATOR = "calculator"
CITED = 3
"""How many of the recalled memories a simulated step output cites and quotes."""
DOCUMENT = "document"
HEADER = "[simulated] result of: "
QUOTE = "From memory "
"""How a line quoting a recalled document starts."""
_MAX_QUOTE = 300
_MAX_MEMORY_QUOTE = 600
_MAX_CARRIED_LINES = 12
_TOOL_FAILED = ("ERROR", "DENIED")
"""How a tool message starts when the call failed or was refused (`ToolOutcome.for_model`)."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One executor turn: a text answer, or a calculator call."""

    content: str | None = None
    expression: str | None = None
    """Call the calculator with this expression (then `content` is None)."""


@dataclass(frozen=True, slots=True)
class Computation:
    """A calculation the instruction asks for, and how to say its result."""

    expression: str
    conversion: Conversion | None = None

    def answer(self, result: str) -> str:
        conversion = self.conversion
        if conversion is None:
            return (f"[simulated] {result} (the calculator tool computed "
                    f"{self.expression} = {result})")
        return (f"[simulated] {result} {conversion.target_text} (converting "
                f"{conversion.value} {conversion.source_text} to {conversion.target_text} "
                f"with the simulated model's conversion table, the calculator tool computed "
                f"{self.expression} = {result})")


def step_content(hint: ModelHint) -> str:
    """A step's text: what it was asked, the documents it quotes, what its inputs found
    and what its own earlier notes quoted."""
    lines = [HEADER + _quote(hint.instruction or hint.task or "the task", _MAX_QUOTE)]
    found = [_quoted(m) for m in quoted_documents(hint)]
    found += carried(hint.input_texts)
    for note in _notes(hint):
        found += _quotes_in(note.text)
    found = [line for line in dict.fromkeys(found) if line not in lines]
    return "\n".join(lines + found[:_MAX_CARRIED_LINES])


def quoted_documents(hint: ModelHint) -> list[ShownMemory]:
    """The documents among the memories shown, the first `CITED`: primary sources."""
    return [m for m in hint.memories if m.kind == DOCUMENT][:CITED]


def step_sources(hint: ModelHint) -> list[str]:
    """The memory ids a step output cites: the documents it quotes and the notes whose
    quotes it carries (the first `CITED`), else the first `CITED` memories shown."""
    relied = [m.id for m in quoted_documents(hint)]
    relied += [m.id for m in _notes(hint) if _quotes_in(m.text)]
    return relied[:CITED] or list(hint.memory[:CITED])


def carried(input_texts: tuple[str, ...]) -> list[str]:
    """What the input steps found, line by line, without their own "result of" lines."""
    found: list[str] = []
    for text in input_texts:
        found += [line.strip() for line in text.splitlines()
                  if line.strip() and not line.strip().startswith(HEADER)]
    return found


def _notes(hint: ModelHint) -> list[ShownMemory]:
    """The crew's own earlier findings, results and tasks among the memories shown. Only
    the document quotes in them are carried: quoting a whole note would quote quotes."""
    return [m for m in hint.memories if m.kind != DOCUMENT]


def _quotes_in(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(QUOTE)]


def _quoted(memory: ShownMemory) -> str:
    return f"{QUOTE}{memory.id}: {_quote(memory.text, _MAX_MEMORY_QUOTE)}"


def executor_turn(body: dict[str, Any], hint: ModelHint) -> Turn:
    """The next turn of an executor's tool loop."""
    instruction = hint.instruction or hint.task
    conversion = find_conversion(instruction)
    if conversion is not None:
        expression = conversion.expression()
        if expression is None:
            return Turn(content=_cannot_convert(conversion))
        return _compute(body, Computation(expression, conversion))
    expression = find_expression(instruction)
    if expression is not None:
        return _compute(body, Computation(expression))
    return Turn(content=step_content(hint))


def calculator_results(body: dict[str, Any]) -> dict[str, str]:
    """Expression → the tool's answer, for every calculator call the conversation holds."""
    asked: dict[str, str] = {}
    results: dict[str, str] = {}
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or []:
            function = (call.get("function") if isinstance(call, dict) else None) or {}
            if function.get("name") == CALCULATOR:
                expression = _expression_argument(function.get("arguments"))
                if expression is not None:
                    asked[str(call.get("id"))] = expression
        if message.get("role") == "tool" and message.get("tool_call_id") in asked:
            results[asked[message["tool_call_id"]]] = str(message.get("content") or "")
    return results


def offers(body: dict[str, Any], tool: str) -> bool:
    """Whether the request lets the model call `tool`."""
    return any(isinstance(t, dict) and (t.get("function") or {}).get("name") == tool
               for t in body.get("tools") or [])


def _compute(body: dict[str, Any], computation: Computation) -> Turn:
    result = calculator_results(body).get(computation.expression)
    if result is not None:
        if result.startswith(_TOOL_FAILED):
            return Turn(content=f"[simulated] The calculator tool did not compute "
                                f"{computation.expression}: {_quote(result, _MAX_QUOTE)}")
        return Turn(content=computation.answer(result.strip()))
    if offers(body, CALCULATOR):
        return Turn(expression=computation.expression)
    return Turn(content=f"[simulated] This needs the calculator tool to compute "
                        f"{computation.expression}, and none is offered here, so I give no "
                        f"result.")


def _cannot_convert(conversion: Conversion) -> str:
    asked = f"{conversion.value} {conversion.source_text} to {conversion.target_text}"
    unknown = conversion.unknown
    if unknown is not None:
        return (f"[simulated] I don't know the unit '{unknown}' (it is not in the simulated "
                f"model's conversion table), so I cannot convert {asked}.")
    source, target = conversion.source, conversion.target
    assert source is not None and target is not None
    return (f"[simulated] I cannot convert {asked}: {source.name} is a {source.dimension} "
            f"and {target.name} a {target.dimension}.")


def _expression_argument(arguments: Any) -> str | None:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return None
    expression = value.get("expression") if isinstance(value, dict) else None
    return expression if isinstance(expression, str) else None


def _quote(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def tool_call_arguments(expression: str) -> str:
    """The calculator call's arguments, as the model sends them."""
    return json.dumps({"expression": expression})

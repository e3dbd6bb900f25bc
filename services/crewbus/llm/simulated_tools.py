"""Explicit tool directives: how a step makes the simulated model call a named tool.

A step's instruction (from the hint, never the prompt) may say

    use tool NAME with {"json": "arguments"}

anywhere in its text, once or several times. In an executor's tool loop the simulated
model then calls each directed tool in order, with exactly those arguments, and once the
conversation holds every answer it replies with them, quoted:

    [simulated] result of: <instruction>
    Tool NAME returned: <the tool's answer>

It never invents a call: no directive, no call. A directed tool the request does not
offer is not called either; the reply says it is not available. This makes any tool
flow, MCP servers included, demonstrable and testable without a real model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from crewbus.llm.hint import ModelHint

_DIRECTIVE = re.compile(r"\buse tool ([A-Za-z0-9_-]{1,64}) with\s*(?=\{)", re.IGNORECASE)
_MAX_QUOTE = 2000


@dataclass(frozen=True, slots=True)
class Directive:
    tool: str
    arguments: str
    """The arguments as compact JSON (an object)."""


@dataclass(frozen=True, slots=True)
class DirectedTurn:
    """A tool call to make, or the text to answer with (exactly one is set)."""

    call: Directive | None = None
    content: str | None = None


def directives(text: str) -> list[Directive]:
    """Every `use tool NAME with {...}` in `text` whose arguments are a JSON object."""
    found: list[Directive] = []
    decoder = json.JSONDecoder()
    for match in _DIRECTIVE.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.end())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(Directive(match.group(1), json.dumps(value, separators=(",", ":"))))
    return found


def directed_turn(body: dict[str, Any], hint: ModelHint | None) -> DirectedTurn | None:
    """The next turn of a tool loop whose step directs tool calls; None without directives
    (the other simulated replies apply)."""
    if hint is None or not hint.instruction:
        return None
    wanted = directives(hint.instruction)
    if not wanted:
        return None
    answers = _tool_answers(body)
    if len(answers) < len(wanted):
        following = wanted[len(answers)]
        if following.tool in _offered(body):
            return DirectedTurn(call=following)
        wanted = wanted[: len(answers)]
        missing = f"Tool {following.tool} is not available to this step."
    else:
        missing = ""
    lines = [f"[simulated] result of: {' '.join(hint.instruction.split())[:_MAX_QUOTE]}"]
    lines += [f"Tool {d.tool} returned: {_clip(a)}" for d, a in zip(wanted, answers, strict=False)]
    if missing:
        lines.append(missing)
    return DirectedTurn(content="\n".join(lines))


def _offered(body: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for spec in body.get("tools") or []:
        function = spec.get("function") if isinstance(spec, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _tool_answers(body: dict[str, Any]) -> list[str]:
    """The tool messages of the conversation, in order."""
    return [str(m.get("content") or "") for m in body.get("messages") or []
            if isinstance(m, dict) and m.get("role") == "tool"]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_QUOTE else text[: _MAX_QUOTE - 3] + "..."

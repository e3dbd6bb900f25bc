"""What the simulated model answers: deterministic replies computed from the request.

The same request always gets the same reply, so tests and demos are repeatable. Every
text says "[simulated]": a reader can never mistake it for a real model's work.

What a reply is made of comes from the request's `ModelHint` (the `X-Crewbus-Hint`
header, see `crewbus.llm.hint`), never from the wording of a prompt:

- `output` `Plan`: four steps that quote the first line of `task`;
- `output` `StepOutput`: a result that quotes `instruction` (else `task`), quotes and
  cites the first three documents of `memories` (else cites the first three ids of
  `memory`), and carries forward what its input steps found (`simulated_steps`);
- `output` `Critique`: a passing score, stable for the request's messages;
- any other `output`, or no hint: a value generated from the request's JSON Schema;
- no schema with a step's hint (an executor's tool loop): a `calculator` call when the
  instruction holds arithmetic or a known unit conversion and the tool is offered, the
  tool's result once the conversation holds it, else the step's text as for
  `StepOutput` (`simulated_steps`);
- no schema and no step (a plain or `json_object` turn): the last user message echoed
  back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from crewbus.llm.hint import ModelHint
from crewbus.llm.schema_values import value_for
from crewbus.llm.simulated_steps import (
    CALCULATOR,
    executor_turn,
    step_content,
    step_sources,
    tool_call_arguments,
)
from crewbus_contracts import Critique, Plan, StepOutput

_MAX_QUOTE = 300


@dataclass(frozen=True, slots=True)
class SimReply:
    """One scripted or computed reply. `status` other than 200 makes it an HTTP error.

    `content` is sent verbatim (it may be invalid JSON on purpose); `tool_calls` are
    (function name, arguments JSON) pairs; `delay_s` is waited before answering.
    """

    content: str | None = None
    tool_calls: list[tuple[str, str]] | None = None
    delay_s: float = 0.0
    status: int = 200


def default_reply(body: dict[str, Any], hint: ModelHint | None = None) -> SimReply:
    """The reply when nothing is scripted: by the hint's output, by schema, or plain text."""
    response_format = body.get("response_format") or {}
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return SimReply(content=json.dumps(_structured(spec, body, hint or ModelHint())))
    if kind == "json_object":
        return SimReply(content=json.dumps({"answer": f"[simulated] {_quote(_last_user(body))}"}))
    if hint is not None and (hint.step or hint.instruction):
        return _executor_turn(body, hint)
    return SimReply(content=f"[simulated] reply to: {_quote(_last_user(body))}")


def estimate_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: about four characters per token."""
    return len(text) // 4 + 1


def _structured(spec: dict[str, Any], body: dict[str, Any], hint: ModelHint) -> Any:
    if hint.output == Plan.__name__:
        return _plan(_first_line(hint.task))
    if hint.output == StepOutput.__name__:
        return {"content": step_content(hint), "sources": step_sources(hint)}
    if hint.output == Critique.__name__:
        return _critique(body)
    name = spec.get("name", "")
    return value_for(spec.get("schema") or {}, seed=name or "value")


def _executor_turn(body: dict[str, Any], hint: ModelHint) -> SimReply:
    turn = executor_turn(body, hint)
    if turn.expression is not None:
        return SimReply(tool_calls=[(CALCULATOR, tool_call_arguments(turn.expression))])
    return SimReply(content=turn.content)


def _plan(task: str) -> dict[str, Any]:
    """Four steps: two researchers in parallel, then an executor, then a second one."""
    quoted = _quote(task)
    return {
        "steps": [
            {
                "id": "r1",
                "role": "researcher",
                "instruction": f"Gather the key facts for: {quoted}",
            },
            {
                "id": "r2",
                "role": "researcher",
                "instruction": f"Find examples, risks and alternatives for: {quoted}",
            },
            {
                "id": "e1",
                "role": "executor",
                "instruction": f"Draft an answer to: {quoted} (using r1 and r2)",
                "depends_on": ["r1", "r2"],
            },
            {
                "id": "e2",
                "role": "executor",
                "instruction": f"Review and finalise the draft from e1 for: {quoted}",
                "depends_on": ["e1"],
            },
        ],
        "rationale": "[simulated] research in parallel, then draft, then finalise",
    }


def _critique(body: dict[str, Any]) -> dict[str, Any]:
    """A passing score in [0.75, 0.95], stable for a given request."""
    digest = hashlib.sha256(json.dumps(body.get("messages", []), sort_keys=True).encode())
    score = 0.75 + (int.from_bytes(digest.digest()[:4], "big") % 2001) / 10_000
    return {
        "score": round(score, 4),
        "verdict": "accept",
        "reasons": ["[simulated] the answer addresses every part of the task"],
        "suggestions": [],
    }


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _text(content: Any) -> str:
    """Message content as text, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _first_line(text: str) -> str:
    """The first line that is not blank: a task's title, or all of a one-line task."""
    return text.strip().split("\n", 1)[0].strip() or "the task"


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_QUOTE else flat[: _MAX_QUOTE - 3] + "..."

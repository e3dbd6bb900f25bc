"""What the simulated model answers: deterministic replies computed from the request.

The same request always gets the same reply, so tests and demos are repeatable. Every
text says "[simulated]": a reader can never mistake it for a real model's work.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from crewbus.llm.schema_values import value_for

_LABELLED = {
    label: re.compile(rf"^\s*{label}\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
    for label in ("task", "instruction")
}
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


def default_reply(body: dict[str, Any]) -> SimReply:
    """The reply when nothing is scripted: by schema name, by schema, or plain text."""
    response_format = body.get("response_format") or {}
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return SimReply(content=json.dumps(_structured(spec, body)))
    if kind == "json_object":
        return SimReply(content=json.dumps({"answer": f"[simulated] {_quote(_last_user(body))}"}))
    return SimReply(content=f"[simulated] reply to: {_quote(_last_user(body))}")


def estimate_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: about four characters per token."""
    return len(text) // 4 + 1


_MEMORY_REF = re.compile(r"\[memory:([A-Za-z0-9_-]+)\]")
"""How crewbus shows recalled memories to a model; the simulated one cites the first few."""


def _structured(spec: dict[str, Any], body: dict[str, Any]) -> Any:
    name = spec.get("name", "")
    text = _last_user(body)
    if name == "Plan":
        return _plan(_labelled(text, "task", "instruction"))
    if name == "StepOutput":
        step = _labelled(text, "instruction", "task")
        cited = _MEMORY_REF.findall(_last_user(body))[:3]
        return {"content": f"[simulated] result of: {_quote(step)}", "sources": cited}
    if name == "Critique":
        return _critique(body)
    return value_for(spec.get("schema") or {}, seed=name or "value")


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


def _labelled(text: str, *labels: str) -> str:
    """The first `Label: ...` line found, by label preference; else the whole prompt."""
    for label in labels:
        match = _LABELLED[label].search(text)
        if match:
            return match.group(1).strip()
    return text.strip() or "the task"


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_QUOTE else flat[: _MAX_QUOTE - 3] + "..."

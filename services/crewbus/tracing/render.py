"""A trace as text for people (`crewbus trace ID`) or as JSON for tools (`--json`).

The text tree shows each span on one line (name, status, duration, the numbers that
matter for its kind) followed by its details, indented under it: the full messages sent
to a model and its reply, a tool's arguments and result, a memory query and its hits.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from crewbus.tracing.reader import TraceNode, build_tree, walk
from crewbus_contracts.traces import EVALUATION_RESULT, Span, SpanEvent

_BRANCH, _LAST, _PIPE, _SPACE = "├─ ", "└─ ", "│  ", "   "


def render_tree(nodes: list[TraceNode]) -> str:
    """The whole tree as text, one span per heading line, details indented below."""
    lines: list[str] = []
    for i, node in enumerate(nodes):
        _render(node, "", i == len(nodes) - 1, lines, top=True)
    return "\n".join(lines) + ("\n" if lines else "")


def to_json(spans: list[Span]) -> bytes:
    """Every span, whole, in tree order: `{"task_id", "trace_ids", "spans": [...]}`."""
    ordered = walk(build_tree(spans))
    document = {
        "task_id": spans[0].task_id if spans else None,
        "trace_ids": sorted({s.trace_id for s in spans}),
        "span_count": len(ordered),
        "spans": ordered,
    }
    return msgspec.json.format(msgspec.json.encode(document), indent=2)


def _render(node: TraceNode, prefix: str, last: bool, lines: list[str], top: bool) -> None:
    span = node.span
    lines.append(("" if top else prefix + (_LAST if last else _BRANCH)) + heading(span))
    inner = "" if top else prefix + (_SPACE if last else _PIPE)
    detail_prefix = inner + (_PIPE if node.children else _SPACE)
    for line in details(span):
        lines.append((detail_prefix + line).rstrip())
    for i, child in enumerate(node.children):
        _render(child, inner, i == len(node.children) - 1, lines, top=False)


def heading(span: Span) -> str:
    """One line: name, status, duration and the kind's key numbers."""
    a = span.attributes
    parts = [span.name, "[ok]" if span.status == "ok" else "[ERROR]", _seconds(span.duration_s)]
    if span.kind == "task":
        parts.append(f"trace {span.trace_id}")
    if span.kind == "agent" and span.step_id:
        parts.append(f"step {span.step_id}")
    if span.kind == "agent" and a.get("crewbus.prompt_version"):
        parts.append(f"variant {a.get('crewbus.variant') or 'production'} prompt "
                     f"{a['crewbus.prompt_version']}")
    if span.kind == "chat":
        parts.append(f"model {a.get('gen_ai.response.model') or a.get('gen_ai.request.model')}")
        parts.append(
            f"tokens {a.get('gen_ai.usage.input_tokens', 0)} in / "
            f"{a.get('gen_ai.usage.output_tokens', 0)} out"
        )
        cost = a.get("crewbus.cost_usd")
        parts.append(f"${cost:.6f}" if isinstance(cost, int | float) else "cost n/a")
        if a.get("crewbus.prompt_version"):
            parts.append(f"prompt {a['crewbus.prompt_version']}")
        if a.get("crewbus.attempt"):
            parts.append(f"attempt {a['crewbus.attempt']}")
    if span.kind == "evaluation" and a.get("crewbus.eval.item"):
        parts.append(f"item {a['crewbus.eval.item']} epoch {a.get('crewbus.eval.epoch', 0)}")
    if span.kind == "memory" and "crewbus.memory.hits" in a:
        parts.append(f"{a['crewbus.memory.hits']} hits")
    if a.get("crewbus.degraded"):
        parts.append(f"degraded {a['crewbus.degraded']}")
    parts.append(f"({span.service})")
    return "  ".join(str(p) for p in parts)


def details(span: Span) -> list[str]:
    """The lines under a span's heading: what went in and out, and the error."""
    if span.kind == "chat":
        lines = _chat(span)
    elif span.kind == "tool":
        lines = _labelled("arguments", span.input) + _labelled("result", span.output)
    elif span.kind == "memory":
        lines = _memory(span)
    elif span.kind == "approval":
        lines = _approval(span)
    else:
        lines = _labelled("input", span.input) + _labelled("output", span.output)
    if span.attributes.get("crewbus.repairs"):
        lines += _labelled("repairs", span.attributes["crewbus.repairs"])
    lines += [_event(event) for event in span.events]
    if span.error:
        lines += _labelled("error", span.error)
    return lines


def _event(event: SpanEvent) -> str:
    """One line per span event; an evaluation result as `name = value label: why`."""
    a = event.attributes
    if event.name == EVALUATION_RESULT:
        value = a.get("gen_ai.evaluation.score.value")
        parts = [f"score {a.get('gen_ai.evaluation.name')}",
                 "=", f"{value:g}" if isinstance(value, int | float) else "n/a"]
        if a.get("gen_ai.evaluation.score.label"):
            parts.append(f"[{a['gen_ai.evaluation.score.label']}]")
        if a.get("error.type"):
            parts.append(f"error {a['error.type']}")
        line = " ".join(parts)
        why = a.get("gen_ai.evaluation.explanation")
        return f"{line}: {why}" if why else line
    shown = ", ".join(f"{k}={v}" for k, v in a.items())
    return f"event {event.name}" + (f" ({shown})" if shown else "")


def _chat(span: Span) -> list[str]:
    lines: list[str] = []
    source = span.input if isinstance(span.input, dict) else {}
    if source.get("tools"):
        lines.append("tools offered: " + ", ".join(str(t) for t in source["tools"]))
    lines.append("messages in:")
    for message in source.get("messages") or []:
        lines += _indent(_message(message))
    reply = span.output if isinstance(span.output, dict) else None
    if reply is not None:
        lines.append("reply:")
        content = reply.get("content")
        lines += _indent(str(content).splitlines() if content else ["(no text)"])
        calls = reply.get("tool_calls") or []
        if calls:
            lines.append("tool calls requested:")
            lines += _indent(
                [f"{c.get('name')}({c.get('arguments')})  id={c.get('id')}" for c in calls]
            )
        if reply.get("validation_error"):
            lines.append(f"validation error: {reply['validation_error']}")
    return lines


def _message(message: Any) -> list[str]:
    if not isinstance(message, dict):
        return [_text(message)]
    role = str(message.get("role", "?"))
    head = f"[{role}]"
    if message.get("tool_call_id"):
        head += f" (answer to {message['tool_call_id']})"
    lines = [head]
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "\n".join(
            str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in content
        )
    if content:
        lines += _indent(str(content).splitlines())
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        lines += _indent([f"calls {function.get('name')}({function.get('arguments')})"])
    return lines


def _memory(span: Span) -> list[str]:
    lines = _labelled("query", span.input)
    hits = span.output.get("hits") if isinstance(span.output, dict) else span.output
    if isinstance(hits, list):
        lines.append(f"hits ({len(hits)}):")
        for hit in hits:
            if isinstance(hit, dict):
                text = str(hit.get("text", ""))
                snippet = text[:80] + ("…" if len(text) > 80 else "")
                score = hit.get("score")
                shown = f"{score:.3f}" if isinstance(score, int | float) else score
                lines.append(f"  {hit.get('id')}  score {shown}  {snippet}".rstrip())
            else:
                lines.append(f"  {_text(hit)}")
    else:
        lines += _labelled("output", span.output)
    return lines


def _approval(span: Span) -> list[str]:
    a = span.attributes
    lines = []
    for key, label in (
        ("crewbus.approval.decision", "decision"),
        ("crewbus.approval.by", "by"),
        ("crewbus.approval.reason", "reason"),
    ):
        if a.get(key) is not None:
            lines.append(f"{label}: {a[key]}")
    return lines + _labelled("arguments", span.input) + _labelled("output", span.output)


def _labelled(label: str, value: Any) -> list[str]:
    if value is None:
        return []
    short = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if "\n" not in short.rstrip("\n") and len(short) <= 100:
        return [f"{label}: {short.rstrip()}"]
    return [f"{label}:", *_indent(_text(value).splitlines())]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"

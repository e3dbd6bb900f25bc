"""A task's scores as `crewbus status` prints them: under its state, or with `--json` as
the state's JSON plus a `"scores"` object."""

from __future__ import annotations

from typing import Any

import msgspec

from crewbus_contracts import TaskState
from crewbus_contracts.feedback import TaskScore


class StatusScores(msgspec.Struct, kw_only=True):
    """`"scores"` in `crewbus status --json`: the online evaluators' scores and people's
    feedback, each as stored (`TaskScore`, which evolves by the contract rules), in the
    order the text output lists them. Both lists are always there, empty when unscored,
    so a script reads `.scores.feedback[]` without checking for the key."""

    evaluators: list[TaskScore] = []
    feedback: list[TaskScore] = []

    @classmethod
    def of(cls, scores: list[TaskScore]) -> StatusScores:
        return cls(evaluators=[s for s in scores if s.source != "human"],
                   feedback=[s for s in scores if s.source == "human"])


def status_document(state: TaskState, scores: list[TaskScore]) -> dict[str, Any]:
    """The state's own JSON object (what `GET /v1/tasks/{id}` returns, so a reader that
    decodes a `TaskState` from it still does: unknown fields are ignored) plus `"scores"`."""
    document: dict[str, Any] = msgspec.to_builtins(state)
    document["scores"] = msgspec.to_builtins(StatusScores.of(scores))
    return document


def scores_block(scores: list[TaskScore]) -> str:
    if not scores:
        return ""
    lines = ["Scores:"]
    for stored in scores:
        score = stored.score
        who = f"human ({stored.by})" if stored.source == "human" else stored.evaluator
        value = "" if score.value is None else f"{score.value:.3g}"
        verdict = ("error" if score.error else "pass" if score.passed
                   else "fail" if score.passed is not None else "-")
        label = f" [{score.label}]" if score.label else ""
        why = score.error or stored.comment or score.explanation
        why = " ".join(why.split())
        lines.append(f"  {who:<16} {score.name:<14} {value:>6} {verdict:<5}{label}"
                     + (f"  {why[:100]}" if why else ""))
    return "\n".join(lines)

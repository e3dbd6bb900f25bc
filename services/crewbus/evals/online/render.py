"""A task's scores as `crewbus status` prints them, under its state."""

from __future__ import annotations

from crewbus_contracts.feedback import TaskScore


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

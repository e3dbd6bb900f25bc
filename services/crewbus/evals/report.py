"""Error analysis: where the failures of an experiment, or of production lately, come from.

A *case* is one judged task: an experiment's run item, or a production task with its
stored scores (`TASK_SCORES_KV`). A case fails when its task did not complete or any of
its scores did not pass (a scorer that could not judge counts, under its own row). Failures
are grouped three ways, each row with a count, its cost and a few example task ids:

- by scorer: each score that failed (`name`, or `name (could not score)`);
- by failure code: the task's error code (`failed`), `cancelled`, or `failed_scores` for a
  task that completed and was judged wanting;
- by the first failing step's role: the first step of the task (planner, steps, critic,
  round by round) whose status is `failed`; `none` when every step succeeded.

Pure: the readers (`eval_cli`) hand it run items or scores and task states.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from crewbus_contracts import TaskState
from crewbus_contracts.evals import RunItem, Score
from crewbus_contracts.feedback import TaskScore

EXAMPLES = 3
"""Example task ids kept per row."""
COMPLETED_BUT_FAILED = "failed_scores"
NO_FAILED_STEP = "none"


@dataclass(frozen=True)
class Case:
    task_id: str
    status: str
    scores: list[Score]
    error_code: str | None = None
    cost_usd: float | None = None
    failing_role: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != "completed" or any(s.passed is not True or s.error
                                                 for s in self.scores)


class ReportRow(msgspec.Struct, kw_only=True):
    key: str
    count: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    """Cases in this row whose cost is unknown (not in `cost_usd`)."""
    examples: list[str] = []


class FailureReport(msgspec.Struct, kw_only=True):
    source: str
    """The experiment's name, or `since <time>`."""
    cases: int
    failed: int
    cost_usd: float = 0.0
    """What the failed cases cost (those with a known cost)."""
    by_scorer: list[ReportRow] = []
    by_code: list[ReportRow] = []
    by_role: list[ReportRow] = []


def first_failing_role(state: TaskState | None) -> str | None:
    """The role of the first step that failed, round by round; None without a state."""
    if state is None:
        return None
    for round_ in state.rounds:
        steps = [round_.planner, *sorted(round_.steps.values(),
                                         key=lambda s: s.finished_at or s.dispatched_at or 0),
                 round_.critic]
        for step in steps:
            if step.status == "failed":
                return step.role
    return NO_FAILED_STEP


def case_of_run(run: RunItem, state: TaskState | None) -> Case:
    return Case(task_id=run.task_id or run.item_id, status=run.status,
                scores=list(run.scores),
                error_code=run.error_code, cost_usd=run.cost_usd,
                failing_role=first_failing_role(state))


def case_of_task(scores: list[TaskScore], state: TaskState | None) -> Case:
    """A production task, from its stored scores (and its state when still kept)."""
    first = scores[0]
    return Case(
        task_id=first.task_id, status=state.status if state else first.status,
        scores=[s.score for s in scores],
        error_code=state.error.code if state and state.error else None,
        cost_usd=None if state is None or state.unpriced_calls else state.spent_usd,
        failing_role=first_failing_role(state))


def failure_code(case: Case) -> str:
    if case.status == "completed":
        return COMPLETED_BUT_FAILED
    return case.error_code or case.status


def scorer_keys(case: Case) -> list[str]:
    return [f"{s.name} (could not score)" if s.error else s.name
            for s in case.scores if s.passed is not True or s.error]


@dataclass
class _Rows:
    rows: dict[str, ReportRow] = field(default_factory=dict)

    def add(self, key: str, case: Case) -> None:
        row = self.rows.setdefault(key, ReportRow(key=key))
        row.count += 1
        if case.cost_usd is None:
            row.unpriced += 1
        else:
            row.cost_usd += case.cost_usd
        if len(row.examples) < EXAMPLES and case.task_id not in row.examples:
            row.examples.append(case.task_id)

    def sorted(self) -> list[ReportRow]:
        return sorted(self.rows.values(), key=lambda r: (-r.count, r.key))


def report(source: str, cases: Iterable[Case]) -> FailureReport:
    all_cases = list(cases)
    failed = [c for c in all_cases if c.failed]
    by_scorer, by_code, by_role = _Rows(), _Rows(), _Rows()
    for case in failed:
        for key in scorer_keys(case):
            by_scorer.add(key, case)
        by_code.add(failure_code(case), case)
        by_role.add(case.failing_role or "unknown (task state expired)", case)
    return FailureReport(
        source=source, cases=len(all_cases), failed=len(failed),
        cost_usd=sum(c.cost_usd or 0.0 for c in failed),
        by_scorer=by_scorer.sorted(), by_code=by_code.sorted(), by_role=by_role.sorted())


def render(found: FailureReport) -> str:
    """The report as `crewbus eval report` prints it."""
    share = f" ({found.failed / found.cases:.0%})" if found.cases else ""
    lines = [f"failures in {found.source}: {found.failed} of {found.cases} judged "
             f"tasks{share}, ${found.cost_usd:.4f} spent on them"]
    for title, rows, header in (("by scorer", found.by_scorer, "SCORER"),
                                ("by failure code", found.by_code, "CODE"),
                                ("by first failing step's role", found.by_role, "ROLE")):
        lines += ["", title]
        if not rows:
            lines.append("  (none)")
            continue
        table = [[header, "FAILED", "COST", "EXAMPLES"]]
        table += [[r.key, str(r.count), f"${r.cost_usd:.4f}"
                   + (f" (+{r.unpriced} unpriced)" if r.unpriced else ""),
                   ", ".join(r.examples)] for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                  .rstrip() for row in table]
    return "\n".join(lines) + "\n"

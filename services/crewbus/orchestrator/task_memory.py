"""What the crew remembers of each finished task: the task with its plan and outcome,
every critique, and the executor's results, so later tasks can learn from them."""

from __future__ import annotations

import logging

from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus_contracts import TaskState
from crewbus_contracts.evals import EXPERIMENT_KEY
from crewbus_contracts.memory import MemoryRecord

log = logging.getLogger(__name__)


def records_for(state: TaskState) -> list[MemoryRecord]:
    outcome = (
        f"completed, score {state.result.score:.2f} ({state.result.verdict})"
        if state.result else f"{state.status}: {state.error.message if state.error else ''}"
    )
    if state.result is not None and state.result.degraded:
        outcome += f", degraded: {state.result.degraded}"
    last_plan = next((r.plan for r in reversed(state.rounds) if r.plan), None)
    plan = "none"
    if last_plan is not None:
        plan = "; ".join(f"{s.id} [{s.role}] {s.instruction}" for s in last_plan.steps)
    answer = state.result.answer if state.result else ""
    base = {"status": state.status, "rounds": str(len(state.rounds))}
    records = [MemoryRecord(
        id=f"{state.task_id}-task", kind="task", task_id=state.task_id, metadata=base,
        text=f"Task: {state.text}\nPlan: {plan}\nOutcome: {outcome}\nAnswer: {answer[:2000]}",
    )]
    for r in state.rounds:
        if r.critique is not None:
            c = r.critique
            records.append(MemoryRecord(
                id=f"{state.task_id}-critique-{r.number}", kind="critique",
                task_id=state.task_id, metadata={**base, "round": str(r.number)},
                text=(f"Task: {state.text}\nCritique of round {r.number} (score {c.score:.2f}, "
                      f"{c.verdict}): {'; '.join(c.reasons)}\n"
                      f"Suggestions: {'; '.join(c.suggestions)}"),
            ))
        for step_id, step in r.steps.items():
            if step.role == "executor" and step.output:
                records.append(MemoryRecord(
                    id=f"{state.task_id}-result-{r.number}-{step_id}", kind="result",
                    task_id=state.task_id, source=f"{state.task_id}/{step_id}",
                    text=step.output[:4000], metadata={**base, "round": str(r.number)},
                ))
    return records


def remembered(state: TaskState) -> bool:
    """Whether the crew learns from this task. Not from an evaluation's tasks: a later
    epoch of the same item (or a production task) recalling an evaluated answer would make
    the evaluation measure memory, not the agents; nor from a single-agent task."""
    return state.target is None and EXPERIMENT_KEY not in state.metadata


class TaskMemory:
    def __init__(self, memory: MemoryClient | None) -> None:
        self.memory = memory

    async def task_finished(self, state: TaskState) -> None:
        """Best effort: a task's outcome never fails because of memory. It is saved before
        this runs; a memory service still opening its store is waited for (bounded, with
        backoff, in `MemoryClient`), one that is not running is skipped."""
        if self.memory is None or not remembered(state):
            return
        try:
            # Ids are per task: similar tasks are separate memories, not near-duplicates.
            await self.memory.upsert(records_for(state), skip_near_duplicates=False)
        except MemoryClientError as exc:
            log.info("task %s not remembered: %s", state.task_id, exc)

"""A production task becomes a dataset item: its input as it was submitted, a link to it.

The task's answer is kept in the item's metadata for reference, never as `expected`: what
the crew answered is not, by itself, what it should have answered. Give `expected` to
make the item score against something.
"""

from __future__ import annotations

from typing import Any

from crewbus.tracing import trace_id_of
from crewbus_contracts import TaskState
from crewbus_contracts.evals import DatasetItem, ItemInput
from crewbus_contracts.tasks import TaskLimits

TRACE_LINK = "/ui/tasks/{task_id}/trace"
"""Where the HTTP gateway's web UI shows a task's trace (`crewbus trace TASK_ID` prints it)."""


def trace_link(task_id: str) -> str:
    return TRACE_LINK.format(task_id=task_id)


def item_from_task(state: TaskState, item_id: str | None = None, expected: Any = None
                   ) -> DatasetItem:
    """The item for `state`; its id is the task id unless given. Limits are kept only when
    the task changed them, so an experiment's own limits apply to a default task."""
    # The task's spans are in the trace derived from its id (`crewbus trace` opens it).
    trace_id = trace_id_of(state)
    reference: dict[str, Any] = {"trace_id": trace_id, "trace_link": trace_link(state.task_id),
                                 "task_status": state.status}
    if state.result is not None:
        reference |= {"task_answer": state.result.answer, "task_score": state.result.score}
    if state.error is not None:
        reference["task_error"] = state.error.code
    return DatasetItem(
        id=item_id or state.task_id,
        input=ItemInput(text=state.text, metadata=dict(state.metadata),
                        limits=None if state.limits == TaskLimits() else state.limits),
        expected=expected,
        metadata=reference,
        source_task_id=state.task_id,
    )

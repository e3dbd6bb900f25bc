"""A regression set from human feedback: the tasks people scored below a bar.

Each becomes a dataset item as `crewbus dataset add --from-task` makes one (its input as
submitted, its trace link), with the feedback in its metadata.
"""

from __future__ import annotations

from typing import Any

import msgspec

from crewbus.evals.online.scores import HUMAN, TaskScoreStore
from crewbus.evals.task_items import item_from_task
from crewbus.taskstore import TaskStore
from crewbus_contracts.evals import DatasetItem
from crewbus_contracts.feedback import TaskScore


def below(scores: list[TaskScore], bar: float) -> dict[str, list[TaskScore]]:
    """Task id → its human scores, for the tasks with at least one under `bar`."""
    by_task: dict[str, list[TaskScore]] = {}
    for stored in scores:
        if stored.source == HUMAN:
            by_task.setdefault(stored.task_id, []).append(stored)
    return {task: found for task, found in sorted(by_task.items())
            if any((s.score.value or 0.0) < bar for s in found)}


def feedback_metadata(found: list[TaskScore]) -> list[dict[str, Any]]:
    return [{"by": s.by, "score": s.score.value, "label": s.score.label,
             "comment": s.comment, "at": s.at} for s in found]


async def feedback_items(scores: TaskScoreStore, tasks: TaskStore, bar: float,
                         since: float) -> tuple[list[DatasetItem], list[str]]:
    """The items of the tasks scored below `bar` by someone since `since` (Unix time), and
    the ids of those whose task state is gone (expired: nothing to rebuild them from)."""
    items, gone = [], []
    for task_id, found in below(await scores.since(since, source=HUMAN), bar).items():
        state = await tasks.get(task_id)
        if state is None:
            gone.append(task_id)
            continue
        item = item_from_task(state[0])
        items.append(msgspec.structs.replace(item, metadata={
            **item.metadata, "feedback": feedback_metadata(found)}))
    return items, gone

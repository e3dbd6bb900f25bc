"""Which finished tasks an online evaluator scores: its filter, then its rate.

The rate is applied by hashing, not by chance, so every replica, every redelivery and
every restart decides the same for a task: a task is sampled by evaluator `E` at rate `r`
when the first 8 bytes of SHA-256(`"<E>:<task id>"`), read as a big-endian integer and
divided by 2^64, are below `r`. The evaluator's name is in the hash so that two evaluators
at 10% sample two independent tenths, not the same one.
"""

from __future__ import annotations

import hashlib

from crewbus.evals.online.config import OnlineEvaluator, TaskFilter
from crewbus_contracts import TaskState

_SCALE = float(2**64)


def sample_point(evaluator: str, task_id: str) -> float:
    """The task's fixed point in [0, 1) for this evaluator."""
    digest = hashlib.sha256(f"{evaluator}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def sampled(evaluator: str, task_id: str, rate: float) -> bool:
    return sample_point(evaluator, task_id) < rate


def matches(task_filter: TaskFilter, state: TaskState) -> bool:
    """Every field of the filter that is set holds for the task."""
    checks = ((task_filter.status, state.status), (task_filter.target, state.target or "crew"),
              (task_filter.variant, state.variant))
    if any(wanted and value not in wanted for wanted, value in checks):
        return False
    return all(state.metadata.get(k) == v for k, v in task_filter.metadata.items())


def selects(evaluator: OnlineEvaluator, state: TaskState) -> bool:
    """The evaluator scores this task: it matches the filter and falls in the sample."""
    return matches(evaluator.filter, state) and sampled(evaluator.name, state.task_id,
                                                        evaluator.rate)

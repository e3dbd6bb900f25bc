"""Scores of production tasks: the online evaluators' and people's (human feedback).

A `TaskScore` is one score of one finished task, kept in `TASK_SCORES_KV` beside every
other score of that task: the evaluator service writes one per (evaluator, scorer, scorer
version), a person's `Feedback` becomes one with `source="human"`. Any client sends
`Feedback` to `FEEDBACK` (request/reply) and gets a `FeedbackAccepted` or an `ErrorReply`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from crewbus_contracts.base import Message
from crewbus_contracts.evals import Score

ScoreSource = Literal["evaluator", "human"]
"""Who judged: an online evaluator (`crewbus serve evaluator`) or a person."""

FEEDBACK_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
"""Who gave feedback (`Feedback.by`): a user name or an email-like id."""


class Feedback(Message, tag="feedback"):
    """A person's judgement of a finished task: a score in 0..1, and optionally a label
    (`good`, `bad`, any word) and a comment. One per person and task: a second feedback
    by the same `by` replaces the first (people change their minds)."""

    task_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    comment: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    by: Annotated[str, msgspec.Meta(pattern=FEEDBACK_NAME)] = "human"


class FeedbackAccepted(Message, tag="feedback_accepted"):
    """The feedback is stored, under `key` in `TASK_SCORES_KV`."""

    task_id: str
    key: str


class TaskScore(Message, tag="task_score"):
    """One score of one finished task, with what the readers (status, report, datasets)
    need without reading the task again."""

    task_id: str
    score: Score
    source: ScoreSource = "evaluator"
    evaluator: str = ""
    """The `[[evaluator]]` that scored (empty for human feedback)."""
    by: str = ""
    """Human feedback: who gave it."""
    comment: str = ""
    at: float = 0.0
    trace_id: str = ""
    status: str = ""
    """The task's status when it was scored (`completed`, `failed`, `cancelled`)."""
    target: str = "crew"
    variant: str = "production"
    role: str = ""
    """The judged role (the executor for the crew: it writes the answer)."""
    prompt_version: str = ""
    """The judged role's prompt version."""

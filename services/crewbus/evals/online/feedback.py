"""Human feedback: `Feedback` on `crewbus.feedback` becomes a `TaskScore` with source
`human`, beside the evaluators' scores of the task.

Answered by the orchestrator process (every stack runs one; the evaluator service is
optional), in a queue group, like submissions. An edge of the public contract, so like
the submit gateway it refuses unknown fields, and every refusal is a clear `ErrorReply`
and a `crewbus_bad_input_total`.
"""

from __future__ import annotations

import re

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from crewbus.bus.codec import BadMessageError, decode
from crewbus.bus.replies import answer
from crewbus.evals.online.scores import (
    HUMAN,
    TaskScoreStore,
    feedback_key,
    record_metric,
    task_score,
)
from crewbus.taskstore import TaskStore
from crewbus.telemetry import metrics
from crewbus_contracts import ErrorReply, TaskState, subjects
from crewbus_contracts.evals import Score
from crewbus_contracts.feedback import Feedback, FeedbackAccepted

FEEDBACK_VERSION = "human/1"
"""The `scorer_version` of every human score."""
PASS_SCORE = 0.5
"""A person's score at or above this counts as a pass (`passed`), below as a fail."""
MAX_FEEDBACK_BYTES = 16 * 1024
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_decoder = msgspec.json.Decoder(Feedback)


def human_score(feedback: Feedback) -> Score:
    return Score(name=HUMAN, type="numeric", scorer_version=FEEDBACK_VERSION,
                 value=feedback.score, label=feedback.label,
                 passed=feedback.score >= PASS_SCORE, explanation=feedback.comment)


class FeedbackDesk:
    def __init__(self, nc: NATS, tasks: TaskStore, scores: TaskScoreStore) -> None:
        self.nc = nc
        self.tasks = tasks
        self.scores = scores

    async def start(self) -> None:
        """Answer feedback from now on (the subscription is on the server on return)."""
        await self.nc.subscribe(subjects.FEEDBACK, queue=subjects.FEEDBACK_QUEUE,
                                cb=self._on_feedback)
        await self.nc.flush()

    async def _on_feedback(self, msg: Msg) -> None:
        await answer(msg, self.accept, "feedback")

    async def accept(self, data: bytes) -> FeedbackAccepted | ErrorReply:
        try:
            feedback = decode(data, _decoder, max_bytes=MAX_FEEDBACK_BYTES,
                              refuse_unknown=True)
        except BadMessageError as exc:
            metrics.record_bad_input(exc.reason, subjects.FEEDBACK)
            return exc.reply
        state = await self._finished_task(feedback)
        if isinstance(state, ErrorReply):
            metrics.record_bad_input(state.code, subjects.FEEDBACK)
            return state
        stored = task_score(state, human_score(feedback), source=HUMAN, by=feedback.by,
                            comment=feedback.comment)
        key = feedback_key(feedback.task_id, feedback.by)
        await self.scores.put(key, stored)
        record_metric(stored)
        return FeedbackAccepted(task_id=feedback.task_id, key=key)

    async def _finished_task(self, feedback: Feedback) -> TaskState | ErrorReply:
        """The finished task the feedback is about, or the reason it cannot be taken."""
        if not _TASK_ID.match(feedback.task_id):
            return ErrorReply(code="invalid_message", message=(
                f"`$.task_id`: {feedback.task_id!r} is not a task id"))
        found = await self.tasks.get(feedback.task_id)
        if found is None:
            return ErrorReply(code="not_found", message=f"no task {feedback.task_id}")
        if not found[0].is_final:
            return ErrorReply(code="conflict", message=(
                f"task {feedback.task_id} is still {found[0].status}: feedback is for "
                "finished tasks"))
        return found[0]


async def start_feedback_desk(nc: NATS) -> FeedbackDesk:
    js = nc.jetstream()
    desk = FeedbackDesk(nc, TaskStore(await js.key_value(subjects.TASKS_KV)),
                        await TaskScoreStore.open(js))
    await desk.start()
    return desk

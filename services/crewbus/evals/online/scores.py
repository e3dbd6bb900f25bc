"""Scores of finished tasks in `TASK_SCORES_KV`: one key per task, evaluator, scorer and
scorer version, and one per task and person for human feedback.

    <task_id>.<evaluator>.<scorer>.v<first 12 hex of SHA-256(scorer version)>
    <task_id>.human.<by>

An evaluator's score is written with KV create, which fails when the key exists: however
often a finished task is redelivered, each scorer version scores it once. A changed scorer
(a new rubric version) has a new key and scores again. A person's feedback is a put: their
second opinion replaces the first.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from crewbus.bus.kv_keys import kv_keys
from crewbus.evals.run_items import judged_role, roles_used
from crewbus.telemetry import metrics
from crewbus.tracing import trace_id_of
from crewbus_contracts import TaskState, subjects
from crewbus_contracts.evals import Score
from crewbus_contracts.feedback import TaskScore

HUMAN = "human"
"""The source of a person's score, and the evaluator part of its key."""
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_decoder = msgspec.json.Decoder(TaskScore)
_encoder = msgspec.json.Encoder()


def version_token(version: str) -> str:
    return "v" + hashlib.sha256(version.encode()).hexdigest()[:12]


def score_key(task_id: str, evaluator: str, scorer: str, scorer_version: str) -> str:
    return f"{task_id}.{evaluator}.{scorer}.{version_token(scorer_version)}"


def feedback_key(task_id: str, by: str) -> str:
    """`by` may hold `.` and `@` (an email): those become `_` in the key (the score keeps
    the name as given)."""
    return f"{task_id}.{HUMAN}.{_TOKEN.sub('_', by)}"


class TaskScoreStore:
    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self.kv = kv
        self.js = js

    @classmethod
    async def open(cls, js: JetStreamContext) -> TaskScoreStore:
        return cls(await js.key_value(subjects.TASK_SCORES_KV), js)

    async def get(self, key: str) -> TaskScore | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        return _decoder.decode(entry.value) if entry.value else None

    async def create(self, key: str, score: TaskScore) -> bool:
        """Store `score` under `key` unless the key holds one already (False then)."""
        try:
            await self.kv.create(key, _encoder.encode(score))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def put(self, key: str, score: TaskScore) -> None:
        await self.kv.put(key, _encoder.encode(score))

    async def of_task(self, task_id: str) -> list[TaskScore]:
        """Every score of the task, automatic ones first, each group by key."""
        found = [await self.get(key) for key in
                 await kv_keys(self.js, subjects.TASK_SCORES_KV, f"{task_id}.")]
        scores = [s for s in found if s is not None]
        return sorted(scores, key=lambda s: (s.source == HUMAN, s.evaluator, s.score.name))

    async def since(self, start: float, source: str | None = None) -> list[TaskScore]:
        """Every score stored at or after `start` (a Unix time), optionally of one source;
        a key written twice (feedback changed) counts once, as it is now."""
        keys = await kv_keys(self.js, subjects.TASK_SCORES_KV)
        found = [await self.get(key) for key in keys]
        return [s for s in found if s is not None and s.at >= start
                and (source is None or s.source == source)]


def task_score(state: TaskState, score: Score, **fields: Any) -> TaskScore:
    """`score` of the finished task `state`, with the task's facts the readers group by
    (its judged role and that role's prompt version, its variant, status, trace)."""
    target = state.target or "crew"
    role = judged_role(target)
    prompts, _ = roles_used(state)
    return TaskScore(
        task_id=state.task_id, score=score, at=time.time(),
        trace_id=trace_id_of(state), status=state.status,
        target=target, variant=state.variant, role=role,
        prompt_version=prompts.get(role, ""), **fields)


def record_metric(stored: TaskScore) -> None:
    """`crewbus_eval_score` for one stored score: `dataset` is `online:<evaluator>` for an
    evaluator's, `feedback` for a person's (both bounded: names people configure); and
    for a judge's score, what it cost (`crewbus_eval_cost_usd`, `crewbus_eval_tokens`)."""
    score = stored.score
    dataset = "feedback" if stored.source == HUMAN else f"online:{stored.evaluator}"
    metrics.record_eval_score(metrics.EvalScore(
        scorer=score.name,
        dataset=dataset,
        prompt_version=stored.prompt_version or "unknown", variant=stored.variant,
        value=score.value, passed=score.passed, error=score.error is not None))
    metrics.record_eval_cost(score.name, dataset, score.usage)


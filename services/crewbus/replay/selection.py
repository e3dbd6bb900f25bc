"""Which recorded tasks a replay takes: finished production tasks of the task-state
bucket, newest first, filtered by age, status, the critic's verdict and metadata."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from crewbus.bus.kv_keys import kv_keys
from crewbus.durations import parse_duration
from crewbus_contracts import TaskState, subjects
from crewbus_contracts.evals import EXPERIMENT_KEY

_state = msgspec.json.Decoder(TaskState)
FILTER_KEYS = ("status", "verdict", "metadata.<key>")


def parse_since(text: str) -> float:
    """`90s`, `30m`, `24h`, `7d` in seconds; a unit is required, since a bare number here is
    more likely a mistake than seconds. ValueError saying the form otherwise."""
    wrong = ValueError(f"--since {text!r}: give a number and a unit, like 30m, 24h or 7d")
    if not text.strip() or text.strip()[-1].isdigit():
        raise wrong
    try:
        return parse_duration(text)
    except ValueError:
        raise wrong from None


@dataclass(frozen=True)
class TaskFilter:
    """What a task must have to be taken; every condition given must hold."""

    status: str | None = None
    verdict: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def at_submission(self) -> bool:
        """Whether it can be decided when a task is submitted (only metadata can)."""
        return self.status is None and self.verdict is None

    def matches(self, state: TaskState) -> bool:
        if self.status is not None and state.status != self.status:
            return False
        if self.verdict is not None and verdict_of(state) != self.verdict:
            return False
        return all(state.metadata.get(k) == v for k, v in self.metadata.items())


def parse_filters(texts: list[str]) -> TaskFilter:
    """`status=failed`, `verdict=reject`, `metadata.team=search` (repeatable, all hold)."""
    status = verdict = None
    metadata: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"--filter {text!r}: give KEY=VALUE ({', '.join(FILTER_KEYS)})")
        if key == "status":
            status = value
        elif key == "verdict":
            verdict = value
        elif key.startswith("metadata.") and len(key) > len("metadata."):
            metadata[key.removeprefix("metadata.")] = value
        else:
            raise ValueError(f"--filter {text!r}: unknown key {key!r} (choose from "
                             f"{', '.join(FILTER_KEYS)})")
    return TaskFilter(status, verdict, metadata)


def verdict_of(state: TaskState) -> str | None:
    """The critic's verdict on the task: its result's, else the last critique's."""
    if state.result is not None:
        return state.result.verdict
    judged = [r.critique.verdict for r in state.rounds if r.critique is not None]
    return judged[-1] if judged else None


def is_production(state: TaskState) -> bool:
    """A task a user sent: not a replay, a shadow or an evaluation's task."""
    return state.replay is None and EXPERIMENT_KEY not in state.metadata


async def recorded_tasks(
    js: JetStreamContext, since_s: float | None, wanted: TaskFilter, limit: int | None,
    now: float | None = None,
) -> list[TaskState]:
    """Finished production crew tasks (not single-agent ones) created within `since_s`,
    matching `wanted`, newest first, at most `limit`."""
    now = time.time() if now is None else now
    kv = await js.key_value(subjects.TASKS_KV)
    found: list[TaskState] = []
    for key in await kv_keys(js, subjects.TASKS_KV):
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue
        if not entry.value:
            continue
        try:
            state = _state.decode(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if since_s is not None and state.created_at < now - since_s:
            continue
        if (state.is_final and is_production(state) and state.target is None
                and wanted.matches(state)):
            found.append(state)
    found.sort(key=lambda s: s.created_at, reverse=True)
    return found[:limit] if limit is not None else found

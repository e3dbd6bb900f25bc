"""Every subject, stream, consumer, queue group and bucket name on the bus, in one place.

A subject with parts that vary is a template, `WORK = "crewbus.work.{role}"`:
- `fill(WORK, role="planner")` puts the parts in; `wildcard(WORK)` is `crewbus.work.*`,
  the filter of the stream that keeps it.
- Each template has a helper named after it in lower case (`work(role)`, `events(task_id,
  kind)`), so `grep -rniw "subjects.work"` finds the template, its producers and its
  consumers in one search.

Each subject's docstring names the modules that publish it (Producer) and read it
(Consumer). `tests/test_wire_names.py` checks that those modules really do, and that no
subject is left without either.
"""

from __future__ import annotations

import re

# -- Subjects ---------------------------------------------------------------------------

SUBMIT = "crewbus.submit"
"""Request/reply entry: a SubmitTask in, a TaskAccepted or ErrorReply out.

Producer: `crewbus.client` (the CLI's and the HTTP gateway's).
Consumer: `crewbus.gateway.submit`."""

CONTROL = "crewbus.control"
"""Request/reply: a CancelTask or ResolveApproval in, a ControlAccepted or ErrorReply out.

Producer: `crewbus.client`. Consumer: `crewbus.orchestrator.service`."""

TASK = "crewbus.tasks.{task_id}"
"""An accepted submission, kept on `TASKS_STREAM` until the orchestrator starts it.

Producer: `crewbus.gateway.submit`, `crewbus.replay.shadow` (a sampled task's twin).
Consumer: `crewbus.orchestrator.service` through `ORCHESTRATOR_TASKS_CONSUMER`."""

WORK = "crewbus.work.{role}"
"""Work for one agent role (a WorkRequest), kept on `WORK_STREAM`.

Producer: `crewbus.orchestrator.service`.
Consumer: `crewbus_agents.runtime` through `WORKER_CONSUMER`."""

RESULTS = "crewbus.results.{task_id}"
"""An agent's answer to one work item (a WorkResult), kept on `RESULTS_STREAM`.

Producer: `crewbus_agents.runtime`, `crewbus.orchestrator.service` (for a worker lost on its
last delivery).
Consumer: `crewbus.orchestrator.service` through `ORCHESTRATOR_RESULTS_CONSUMER`."""

EVENTS = "crewbus.events.{task_id}.{kind}"
"""A task event; `kind` is the event's `type` tag. Kept on `EVENTS_STREAM`.

Producer: `crewbus.orchestrator.service` (from the outbox), `crewbus_agents.runtime`
(`step_started`, best effort).
Consumer: `crewbus.client` (`watch`, `submit --wait`), `crewbus_agents.finished`,
`crewbus.httpapi.events` (the HTTP gateway's SSE streams), `crewbus.evals.online.service`
through `EVALUATOR_CONSUMER` (the terminal events only: the online evaluators)."""

DEAD_LETTER = "crewbus.dlq.{role}"
"""A message delivered for the last time without success, kept on `DLQ_STREAM` with a
`Crewbus-Dead-Letter-Reason` header. Every pull worker publishes its own dead letters
(`crewbus.bus.worker`, given this subject by the agents and the orchestrator).

Producer: `crewbus.orchestrator.service` (for a worker lost on its last delivery).
Consumer: outside crewbus: people read it (`nats stream view CREWBUS_DLQ`)."""

TRACES = "crewbus.traces.{task_id}"
"""Every span of one task (a Span, or a SpanBatch of the spans of one piece of work), written
by any service, kept on `TRACES_STREAM`.

Producer: `crewbus.tracing.tracer`. Consumer: `crewbus.tracing.reader`."""

EVALS = "crewbus.evals.{experiment}"
"""A run item's scores (an EvaluationScored), published once the run item is stored, kept
on `EVALS_STREAM` for the metrics (`crewbus_eval_score`) and anything else that watches
evaluations.

Producer: `crewbus.evals.publish`, for the experiment runner.
Consumer: `crewbus.evals.score_metrics` through `EVALS_METRICS_CONSUMER`."""

FEEDBACK = "crewbus.feedback"
"""Request/reply, part of the public contract: a Feedback (a person's score of a finished
task) in, a FeedbackAccepted or ErrorReply out. Stored as a human TaskScore.

Producer: `crewbus.client` (`crewbus feedback`), or any NATS client.
Consumer: `crewbus.evals.online.feedback` (in the orchestrator process)."""

MEMORY_UPSERT = "crewbus.memory.upsert"
"""Core request/reply: MemoryUpsert in, MemoryUpserted or ErrorReply out.

Producer: `crewbus.memory.client`. Consumer: `crewbus.memory.service`."""

MEMORY_SEARCH = "crewbus.memory.search"
"""Core request/reply: MemorySearch in, MemoryHits or ErrorReply out.

Producer: `crewbus.memory.client`. Consumer: `crewbus.memory.service`."""

MEMORY_DELETE = "crewbus.memory.delete"
"""Core request/reply: MemoryDelete in, MemoryDeleted or ErrorReply out.

Producer: `crewbus.memory.client`. Consumer: `crewbus.memory.service`."""

MEMORY_STATS = "crewbus.memory.stats"
"""Core request/reply: MemoryStats in, MemoryStatsReply or ErrorReply out.

Producer: `crewbus.memory.client`. Consumer: `crewbus.memory.service`."""

# -- Streams, consumers, queue groups, buckets ------------------------------------------

TASKS_STREAM = "CREWBUS_TASKS"
"""Work queue of `TASK`."""
WORK_STREAM = "CREWBUS_WORK"
"""Work queue of `WORK`."""
RESULTS_STREAM = "CREWBUS_RESULTS"
"""Work queue of `RESULTS`."""
EVENTS_STREAM = "CREWBUS_EVENTS"
"""`EVENTS`, kept for `CREWBUS_EVENTS_MAX_AGE_S`."""
EVALS_STREAM = "CREWBUS_EVALS"
"""`EVALS`, kept for `CREWBUS_EVENTS_MAX_AGE_S` (the run items in `EXPERIMENTS_KV` are the
record; the stream only feeds the metrics)."""
DLQ_STREAM = "CREWBUS_DLQ"
"""`DEAD_LETTER`, kept until someone deletes it."""
TRACES_STREAM = "CREWBUS_TRACES"
"""`TRACES`, kept for `CREWBUS_TRACE_RETENTION_S`."""

MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.*"
"""JetStream's notice that a work item was delivered for the last time and not acked
(its worker died holding it).

Producer: outside crewbus: nats-server. Consumer: `crewbus.orchestrator.service`."""

WORKER_CONSUMER = "agent-{role}"
"""The durable consumer of one role's `WORK`, shared by all of that role's replicas."""
ORCHESTRATOR_TASKS_CONSUMER = "orchestrator-tasks"
"""The durable consumer of `TASK`, shared by the orchestrator replicas."""
ORCHESTRATOR_RESULTS_CONSUMER = "orchestrator-results"
"""The durable consumer of `RESULTS`, shared by the orchestrator replicas."""
EVALS_METRICS_CONSUMER = "eval-metrics"
"""The durable consumer of `EVALS` that records `crewbus_eval_score`, shared by the
orchestrator replicas (each score is observed once, by one of them)."""
EVALUATOR_CONSUMER = "evaluator"
"""The durable consumer of `EVENTS` (filtered to the terminal kinds) shared by the
evaluator replicas (`crewbus serve evaluator`): each finished task is evaluated by one."""

SUBMIT_QUEUE = "crewbus-gateway"
"""Queue group of the gateways answering `SUBMIT`."""
CONTROL_QUEUE = "crewbus-control"
"""Queue group of the orchestrators answering `CONTROL`."""
ADVISORY_QUEUE = "crewbus-orchestrator"
"""Queue group of the orchestrators handling `MAX_DELIVERIES_ADVISORY`."""
FEEDBACK_QUEUE = "crewbus-feedback"
"""Queue group of the orchestrators answering `FEEDBACK`."""
MEMORY_QUEUE = "memory"
"""Queue group shared by memory service replicas (only with a Qdrant server)."""

TASKS_KV = "crewbus_tasks"
"""Task state by task id: the one truth about a task."""
ACTIVE_KV = "crewbus_active"
"""Index of unfinished tasks (key task id, value deadline) swept by the orchestrators."""
TOOL_RECORDS_KV = "crewbus_tool_records"
"""Recorded model turns and tool outcomes of executor steps, for exactly-once replay."""
DATASETS_KV = "crewbus_datasets"
"""Dataset index by name (a DatasetInfo: every version, newest last)."""
DATASETS_OBJECTS = "crewbus_dataset_items"
"""Object store holding each dataset version's items as canonical JSONL
(`<name>/v<version>.<nonce>.jsonl`, named by the version's `object_name`)."""
PROMPTS_KV = "crewbus_prompts"
"""Prompt versions and labels per role: a PromptIndex at `<role>`, each version's
PromptText at `<role>.<number>` (`crewbus_contracts.prompts`)."""
VARIANTS_KV = "crewbus_variants"
"""Variants by name (a Variant: per-role prompt, model, endpoint, parameters)."""
API_KEYS_KV = "crewbus_api_keys"
"""API keys of the HTTP gateway by key id (an ApiKey, holding only a hash of the secret)."""
TASK_SCORES_KV = "crewbus_task_scores"
"""Scores of finished tasks (a TaskScore each): `<task_id>.<evaluator>.<scorer>.<version
digest>` from the online evaluators (created once, never overwritten), `<task_id>.human.<by>`
from human feedback (see `crewbus.evals.online.scores`)."""
EXPERIMENTS_KV = "crewbus_experiments"
"""Experiments (`<name>`, an Experiment) and their run items (`<name>.items.<key>.<epoch>`)."""
SHADOW_KV = "crewbus_shadow"
"""The shadow run (`current`, a ShadowConfig): written by `crewbus shadow`, watched by the
orchestrator, which samples live tasks into it and counts its spend."""

# -- Templates --------------------------------------------------------------------------

_PART = re.compile(r"\{(\w+)\}")


def parts(template: str) -> list[str]:
    """The names of the parts a template leaves open, in order: `["task_id", "kind"]`."""
    return _PART.findall(template)


def fill(template: str, **values: str) -> str:
    """The name `template` gives these values; every part must be given, and no other."""
    if set(values) != set(parts(template)):
        raise ValueError(f"{template!r} takes {parts(template)}, given {sorted(values)}")
    return template.format(**values)


def wildcard(template: str) -> str:
    """The filter matching every name of `template`: each part becomes `*`."""
    return _PART.sub("*", template)


def part(template: str, name: str, subject: str) -> str:
    """The value of part `name` in `subject`, a name of `template`:
    `part(EVENTS, "task_id", "crewbus.events.t1.task_failed")` is `t1`."""
    return subject.split(".")[template.split(".").index(f"{{{name}}}")]


def task(task_id: str) -> str:
    return fill(TASK, task_id=task_id)


def work(role: str) -> str:
    return fill(WORK, role=role)


def results(task_id: str) -> str:
    return fill(RESULTS, task_id=task_id)


def events(task_id: str, kind: str = "*") -> str:
    return fill(EVENTS, task_id=task_id, kind=kind)


def dead_letter(role: str) -> str:
    return fill(DEAD_LETTER, role=role)


def traces(task_id: str) -> str:
    return fill(TRACES, task_id=task_id)


def evals(experiment: str) -> str:
    return fill(EVALS, experiment=experiment)


def worker_consumer(role: str) -> str:
    return fill(WORKER_CONSUMER, role=role)


def worker_role(consumer: str) -> str:
    """The role whose work `consumer` reads: `agent-planner` → `planner`."""
    return consumer.removeprefix(WORKER_CONSUMER.removesuffix("{role}"))

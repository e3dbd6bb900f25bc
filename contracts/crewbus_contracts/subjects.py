"""Every subject, stream, consumer and bucket name on the bus, in one place."""

from __future__ import annotations

SUBMIT = "crewbus.submit"
"""Request/reply entry: a SubmitTask in, a TaskAccepted or ErrorReply out."""

CONTROL = "crewbus.control"
"""Request/reply: a CancelTask or ResolveApproval in, a ControlAccepted or ErrorReply out."""

TASKS_STREAM = "CREWBUS_TASKS"
WORK_STREAM = "CREWBUS_WORK"
RESULTS_STREAM = "CREWBUS_RESULTS"
EVENTS_STREAM = "CREWBUS_EVENTS"
DLQ_STREAM = "CREWBUS_DLQ"

TASKS_KV = "crewbus_tasks"
TOOL_RECORDS_KV = "crewbus_tool_records"
"""Recorded model turns and tool outcomes of executor steps, for exactly-once replay."""

MEMORY_UPSERT = "crewbus.memory.upsert"
"""Core request/reply: MemoryUpsert in, MemoryUpserted or ErrorReply out."""
MEMORY_SEARCH = "crewbus.memory.search"
"""Core request/reply: MemorySearch in, MemoryHits or ErrorReply out."""
MEMORY_DELETE = "crewbus.memory.delete"
"""Core request/reply: MemoryDelete in, MemoryDeleted or ErrorReply out."""
MEMORY_STATS = "crewbus.memory.stats"
"""Core request/reply: MemoryStats in, MemoryStatsReply or ErrorReply out."""
MEMORY_QUEUE = "memory"
"""Queue group shared by memory service replicas (only with a Qdrant server)."""

ORCHESTRATOR_TASKS_CONSUMER = "orchestrator-tasks"
ORCHESTRATOR_RESULTS_CONSUMER = "orchestrator-results"


def task(task_id: str) -> str:
    """Where an accepted submission is kept durably until the orchestrator starts it."""
    return f"crewbus.tasks.{task_id}"


def work(role: str) -> str:
    """Work for one agent role; its durable consumer is named after the role."""
    return f"crewbus.work.{role}"


def results(task_id: str) -> str:
    return f"crewbus.results.{task_id}"


def events(task_id: str, kind: str = "*") -> str:
    return f"crewbus.events.{task_id}.{kind}"


def dead_letter(role: str) -> str:
    return f"crewbus.dlq.{role}"


def worker_consumer(role: str) -> str:
    return f"agent-{role}"


TRACES_STREAM = "CREWBUS_TRACES"


def traces(task_id: str) -> str:
    """Where every span of one task is written, by any service."""
    return f"crewbus.traces.{task_id}"

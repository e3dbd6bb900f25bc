"""`crewbus trace ID [--json]`: read a task's spans from the bus and print them."""

from __future__ import annotations

import sys

from crewbus.auth.permissions import ADMIN
from crewbus.bus.connection import connect_for_command
from crewbus.tracing.reader import build_tree, read_trace
from crewbus.tracing.render import render_tree, to_json
from crewbus.tracing.settings import load_trace_settings


async def trace_command(nats_url: str, task_id: str, as_json: bool) -> int:
    """Print the trace of `task_id`; 0 when found, 1 when there is none (or it expired)."""
    settings = load_trace_settings()
    nc = await connect_for_command(nats_url, ADMIN)
    try:
        spans = await read_trace(nc.jetstream(), task_id, max_spans=settings.max_read_spans)
    finally:
        await nc.close()
    if not spans:
        days = settings.retention_s / 86400
        print(f"no trace for task {task_id} (traces are kept {days:g} days)", file=sys.stderr)
        return 1
    if as_json:
        sys.stdout.buffer.write(to_json(spans) + b"\n")
        sys.stdout.flush()
    else:
        sys.stdout.write(render_tree(build_tree(spans)))
    return 0

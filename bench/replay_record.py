"""What the replay record costs, and how faithful a replay is, measured on a live stack.

The orchestrator, one replica of each role and the memory service run in this process
(tests/stack.py's in_process_stack) against nats-server and the simulated model on
127.0.0.1. N production tasks run, each one executor step calling `calculator`,
`write_file` and `read_file` (the simulated model follows the step's tool directives),
the planner recalling past tasks and critiques from memory. Then:

  record   bytes per task in CREWBUS_TRACES (every message as stored; by span kind, each
           span's own JSON, batched or not); what the replay fields add to it
           (`crewbus.memory.kind` on memory spans: the only field added to production
           spans; replay fields appear on replay spans only);
           and, for comparison, the task's exactly-once tool records (crewbus_tool_records).
  same     the tasks replayed under production itself: every tool call and recall should
           be served from the record (fidelity 100%).
  changed  replayed under a candidate whose planner changes one call's arguments and adds
           a `write_file` of a new file: those are misses (the write is blocked).

    PYTHONPATH=contracts:agents:services:. python bench/replay_record.py [--tasks 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats

from crewbus.bus.kv_keys import kv_keys
from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.runner import ExperimentRun, ExperimentRunner
from crewbus.evals.scorers.registry import build_scorers
from crewbus.evals.summary import summarise
from crewbus.llm.simulated import SimulatedModel
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings
from crewbus.replay.pairs import fidelity_of, item_of, pair_configs
from crewbus_agents.tools import ToolSettings
from crewbus_contracts import SubmitTask, TaskLimits, subjects
from crewbus_contracts.evals import ScorerSpec
from crewbus_contracts.replay import ReplayOptions
from crewbus_contracts.traces import Span, SpanBatch
from tests.replay_helpers import CANDIDATE, make_candidate, planner, use
from tests.stack import final_event, in_process_stack

_record = msgspec.json.Decoder(Span | SpanBatch)


def plans(task: str, candidate: bool) -> list[str]:
    n = sum(map(ord, task)) % 90 + 10
    if not candidate:
        return [use("calculator", {"expression": f"{n}*3"}),
                use("write_file", {"path": "notes.txt", "content": f"result {n * 3}"}),
                use("read_file", {"path": "notes.txt"})]
    return [use("calculator", {"expression": f"{n}*3"}),
            use("calculator", {"expression": f"{n}*4"}),
            use("write_file", {"path": "notes.txt", "content": f"result {n * 3}"}),
            use("write_file", {"path": "other.txt", "content": "new"}),
            use("read_file", {"path": "notes.txt"})]


async def trace_bytes(js: Any, task_id: str) -> dict[str, int]:
    """Bytes of the task's stored spans by kind, and what `crewbus.memory.kind` adds."""
    sizes: dict[str, int] = defaultdict(int)
    seq = 1
    while True:
        try:
            msg = await js.get_msg(subjects.TRACES_STREAM, seq=seq,
                                   subject=subjects.traces(task_id), next=True)
        except nats.js.errors.NotFoundError:
            break
        seq = msg.seq + 1
        record = _record.decode(msg.data)
        sizes["total"] += len(msg.data)
        for span in record.spans if isinstance(record, SpanBatch) else [record]:
            size = len(msgspec.json.encode(span))  # its share of a batch
            sizes[span.kind] += size
            if "crewbus.memory.kind" in span.attributes:
                without = {k: v for k, v in span.attributes.items()
                           if k != "crewbus.memory.kind"}
                sizes["added"] += size - len(msgspec.json.encode(
                    msgspec.structs.replace(span, attributes=without)))
    return sizes


async def records_bytes(js: Any, task_id: str) -> int:
    kv = await js.key_value(subjects.TOOL_RECORDS_KV)
    total = 0
    for key in await kv_keys(js, subjects.TOOL_RECORDS_KV, f"{task_id}."):
        entry = await kv.get(key)
        total += len(entry.value or b"")
    return total


async def bench(tasks: int) -> int:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            async with SimulatedModel() as model:
                model.script("planner", planner(plans))
                nc = await nats.connect(server.url)
                memory = await MemoryService(nc, MemorySettings(
                    data_dir=str(Path(tmp) / "mem"))).start()
                tools = ToolSettings(workspace_root=str(Path(tmp) / "ws"),
                                     requires_approval=frozenset())
                async with in_process_stack(server.url, model.base_url or "",
                                            tool_settings=tools) as client:
                    await make_candidate(client)
                    states = []
                    for i in range(tasks):
                        accepted = await client.submit(SubmitTask(
                            text=f"Bench task {i}: compute and note the result",
                            limits=TaskLimits(max_rounds=1)))
                        await final_event(client, accepted.task_id, 60)
                        state = await client.state(accepted.task_id)
                        assert state is not None
                        states.append(state)
                    sizes = [await trace_bytes(client.js, s.task_id) for s in states]
                    records = [await records_bytes(client.js, s.task_id) for s in states]
                    store = await ExperimentStore.open(client.js)
                    fidelity = {}
                    for variant, name in (("production", "same"), (CANDIDATE, "changed")):
                        _, config = pair_configs(variant, [ScorerSpec(kind="no_error")],
                                                 "replay")
                        runner = ExperimentRunner(nc, store, summarise)
                        await runner.run(ExperimentRun(
                            name, config, [item_of(s) for s in states],
                            build_scorers(config.scorers),
                            replay=ReplayOptions(source_task_id="recorded")))
                        runs = await store.items(name)
                        fidelity[name] = await fidelity_of(client.js,
                                                           [r.task_id for r in runs])
                await memory.stop()
                await nc.close()
        finally:
            server.stop()
    kinds = sorted({k for s in sizes for k in s} - {"total", "added"})
    print(f"replay record: {tasks} tasks (1 executor step: calculator, write_file, "
          "read_file; planner recalls from memory)")
    print(f"  trace bytes per task: median {statistics.median(s['total'] for s in sizes):.0f}"
          f" (min {min(s['total'] for s in sizes)}, max {max(s['total'] for s in sizes)})")
    for kind in kinds:
        print(f"    {kind:<10} median {statistics.median(s.get(kind, 0) for s in sizes):.0f}")
    print(f"  added by replay fields: median {statistics.median(s['added'] for s in sizes):.0f}"
          " bytes per task")
    print(f"  tool records (crewbus_tool_records) per task: median "
          f"{statistics.median(records):.0f} bytes")
    for name, found in fidelity.items():
        print(f"  {name:<8} {found.line()}")
    print(json.dumps({"trace_bytes_median": statistics.median(s["total"] for s in sizes),
                      "added_bytes_median": statistics.median(s["added"] for s in sizes)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 tasks")
    args = parser.parse_args(argv)
    return anyio.run(bench, 5 if args.quick else args.tasks)


if __name__ == "__main__":
    sys.exit(main())

"""Trace messages per task: how many messages (and spans) N tasks put on `crewbus.traces.>`.

Drives N sequential tasks through the in-process stack (bus_overhead's inproc layout, the
simulated model as a child process) and counts, with a core subscription of its own, every
message on the trace subjects and the spans they hold (a `span_batch` holds several).
Reads only JSON, so it counts the messages of any version of the tracer:

    PYTHONPATH=contracts:agents:services:. python bench/trace_messages.py [-n 20]

`--cpu N` (this branch's tracer only) times the tracer alone instead: N tasks' worth of
18 spans of about 1.4 kB (a four-step task's), written one message each and then as 7
batches (6 pieces of work of 2-3 spans, the orchestrator's 2), and prints the CPU per
task of this process and of nats-server for each, alternating the two three times.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import msgspec
import nats
import psutil
from nats.aio.msg import Msg

from bench.bus_overhead import SERVICE_DEFAULTS, FinalEvents, drive, inproc_layout
from crewbus.devstack.nats_server import NatsServer


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "js").start()
        try:
            async with inproc_layout(server.url, dict(SERVICE_DEFAULTS), Path(tmp)) as layout:
                client = layout.client
                finals = FinalEvents(client.nc)
                await finals.start()
                await drive(client, finals, "inproc", 3, 1, 60.0, "warm")
                await asyncio.sleep(1.0)  # the warm-up's closing spans
                counts = {"messages": 0, "spans": 0, "bytes": 0}

                async def on_trace(msg: Msg) -> None:
                    value = msgspec.json.decode(msg.data)
                    counts["messages"] += 1
                    counts["bytes"] += len(msg.data)
                    batch = isinstance(value, dict) and value.get("type") == "span_batch"
                    counts["spans"] += len(value["spans"]) if batch else 1

                spy = await nats.connect(server.url)
                await spy.subscribe("crewbus.traces.>", cb=on_trace)
                await spy.flush()
                result = await drive(client, finals, "inproc", n, 1, 300.0, "count")
                await asyncio.sleep(1.5)  # the last task's closing spans
                await spy.close()
        finally:
            server.stop()
    done = result.done or 1
    print(f"tasks done: {result.done}/{n}")
    print(f"trace messages per task: {counts['messages'] / done:.1f}")
    print(f"spans per task:          {counts['spans'] / done:.1f}")
    print(f"trace bytes per task:    {counts['bytes'] / done:.0f}")


GROUPS = (3, 3, 3, 3, 2, 2, 2)
"""A four-step task's 18 spans by the message a batching tracer sends them in."""


async def tracer_cpu(n: int) -> None:
    from crewbus.telemetry.tracecontext import TraceContext
    from crewbus.tracing import SpanDraft, Tracer, TraceSettings, ensure_trace_stream

    def draft(task: int, i: int) -> SpanDraft:
        own = TraceContext(trace_id=f"{task:032x}", span_id=f"{task * 32 + i:016x}")
        return SpanDraft(name=f"chat m{i}", kind="chat", task_id=f"cpu-{task}", context=own,
                         parent_span_id=None, start=1.0, end=2.0,
                         attributes={"gen_ai.request.model": "m"}, input="x" * 1200)

    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "js").start()
        assert server.process is not None
        nats_proc, me = psutil.Process(server.process.pid), psutil.Process()
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_trace_stream(js, TraceSettings())
        tracer = Tracer(js, "bench")
        base = 0

        async def one(batched: bool) -> tuple[float, float]:
            nonlocal base
            cpu = sum(me.cpu_times()[:2]), sum(nats_proc.cpu_times()[:2])
            for task in range(base, base + n):
                i = 0
                for size in GROUPS:
                    if batched:
                        async with tracer.batch():
                            for _ in range(size):
                                await tracer.write(draft(task, i))
                                i += 1
                    else:
                        for _ in range(size):
                            await tracer.write(draft(task, i))
                            i += 1
            await nc.flush()
            time.sleep(0.5)  # the server stores what it was sent
            base += n
            return ((sum(me.cpu_times()[:2]) - cpu[0]) * 1e3 / n,
                    (sum(nats_proc.cpu_times()[:2]) - cpu[1]) * 1e3 / n)

        await one(True)  # warm up
        print(f"tracer alone, {n} tasks x 18 spans: CPU ms per task (client, nats-server)")
        for _ in range(3):
            for batched in (False, True):
                client, srv = await one(batched)
                label = "7 batches " if batched else "18 single "
                print(f"  {label} client {client:6.2f}  nats-server {srv:6.2f}")
        await nc.close()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="tasks, one at a time")
    parser.add_argument("--cpu", type=int, metavar="N", help="time the tracer alone")
    args = parser.parse_args()
    asyncio.run(tracer_cpu(args.cpu) if args.cpu else main(args.n))

"""Trace messages per task: how many messages (and spans) N tasks put on `crewbus.traces.>`.

Drives N sequential tasks through the in-process stack (bus_overhead's inproc layout, the
simulated model as a child process) and counts, with a core subscription of its own, every
message on the trace subjects and the spans they hold (a `span_batch` holds several).
Reads only JSON, so it counts the messages of any version of the tracer:

    PYTHONPATH=contracts:agents:services:. python bench/trace_messages.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import msgspec
import nats
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="tasks, one at a time")
    asyncio.run(main(parser.parse_args().n))

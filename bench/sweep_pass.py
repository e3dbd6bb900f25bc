"""Messages one sweep pass over `crewbus_active` costs on a bucket that has seen N finished
tasks and holds K unfinished ones: right after the finishes, and once the markers of the
finished ones have expired (or 30 s passed, where they never do).

    PYTHONPATH=contracts:agents:services:. python bench/sweep_pass.py 500 5

A spy connection counts every message on the server during one `Orchestrator._timers()`
(deliveries, consumer create and info requests and their replies)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.msg import Msg

from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer
from crewbus.orchestrator.service import Orchestrator
from crewbus.orchestrator.settings import OrchestratorSettings
from crewbus.settings import BusSettings
from crewbus_contracts import subjects

STREAM = f"KV_{subjects.ACTIVE_KV}"


async def measure(finished: int, unfinished: int) -> None:
    with tempfile.TemporaryDirectory() as root, NatsServer(Path(root) / "js").start() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_topology(js, BusSettings(nats_url=server.url))
        orchestrator = await Orchestrator.create(nc, js, OrchestratorSettings(nats_url=server.url))
        for n in range(finished):
            await orchestrator.active.put(f"done{n}", b"1.0")
        for n in range(unfinished):
            await orchestrator.active.put(f"open{n}", b"2.0")
        for n in range(finished):
            await orchestrator._forget_active(f"done{n}")

        spy = await nats.connect(server.url)
        counts: collections.Counter[str] = collections.Counter()
        counting = False

        async def count(msg: Msg) -> None:
            if counting:
                delivery = (msg.reply or "").startswith("$JS.ACK.")
                counts["deliveries" if delivery else "requests and replies"] += 1

        for pattern in ("$JS.>", "$KV.>", "_INBOX.>"):
            await spy.subscribe(pattern, cb=count)
        await spy.flush()

        async def one_pass(label: str) -> None:
            nonlocal counting
            counts.clear()
            counting = True
            timers = await orchestrator._timers()
            await spy.flush()
            await asyncio.sleep(0.3)  # the spy's last deliveries
            counting = False
            print(f"{label}: {len(timers)} timers, {sum(counts.values())} messages "
                  f"({dict(counts)}), stream holds "
                  f"{(await js.stream_info(STREAM)).state.messages}")

        await one_pass("right after the finishes")
        deadline = time.monotonic() + 30
        while ((await js.stream_info(STREAM)).state.messages > unfinished
               and time.monotonic() < deadline):
            await asyncio.sleep(0.2)
        await one_pass("after the markers' TTL (or 30 s)")
        await spy.close()
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("finished", type=int, nargs="?", default=500)
    parser.add_argument("unfinished", type=int, nargs="?", default=5)
    args = parser.parse_args()
    asyncio.run(measure(args.finished, args.unfinished))


if __name__ == "__main__":
    main()

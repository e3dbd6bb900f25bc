"""Evaluation throughput: items per second of `crewbus eval run`'s runner against plain
task submission of the same tasks, on the same bus, in the same run.

A 200-item dataset (distinct texts) runs at concurrency 1, 8 and 32 with the simulated
model at zero latency, the orchestrator and one replica of each role in this process
(tests/stack.py's in_process_stack), everything on 127.0.0.1. At each level:

  plain  each task submitted on `crewbus.submit` and followed to its end through its
         events (`CrewbusClient.events`, what `crewbus submit --wait` does), C at a time;
  eval   the same texts as an experiment: the runner submits each (metadata, idempotency
         key), follows it the same way, reads its state, scores it (`contains`, `no_error`),
         stores the run item in KV, publishes EVALS and the evaluation span; then the
         summary (scipy intervals) and the finished experiment.

The ratio plain items/s : eval items/s is the cost of the evaluation layer (aim <= 1.2x).
The two alternate per level, plain first, `--repeats` times (default 3), on fresh texts
each time, so neither gains from a warmer bus; each side's median rate is reported (on a
shared machine single runs vary by tens of percent). `--quick` runs 40 items at
concurrency 1 and 8.

    PYTHONPATH=contracts:agents:services:. python bench/eval_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.runner import ExperimentRun, ExperimentRunner
from crewbus.evals.scorers.context import ScorerContext  # scipy is imported here, untimed
from crewbus.evals.scorers.registry import build_scorers
from crewbus.evals.summary import summarise
from crewbus.llm.simulated import SimulatedModel
from crewbus.tracing import start_tracer
from crewbus_contracts import AGENT_ROLES, SubmitTask, TaskCompleted
from crewbus_contracts.evals import DatasetItem, ExperimentConfig, ItemInput, ScorerSpec
from crewbus_contracts.events import TERMINAL_EVENTS
from tests.stack import in_process_stack

LEVELS = (1, 8, 32)
ITEMS = 200
SCORERS = [ScorerSpec(kind="contains"), ScorerSpec(kind="no_error")]
SERVICE_DEFAULTS: dict[str, float] = {"ack_wait_s": 30.0, "heartbeat_s": 5.0,
                                      "max_deliver": 3}
"""The services' own defaults (tests/stack.py's faster timers are meant for failure tests)."""


@dataclass
class Level:
    concurrency: int
    items: int
    plain_s: list[float]
    eval_s: list[float]
    plain_ok: int
    eval_ok: int

    @property
    def plain_rate(self) -> float:
        return self.items / statistics.median(self.plain_s)

    @property
    def eval_rate(self) -> float:
        return self.items / statistics.median(self.eval_s)

    @property
    def ratio(self) -> float:
        return self.plain_rate / self.eval_rate


def texts(n: int, tag: str) -> list[str]:
    return [f"Bench {tag} item {i}: what is {i} + {i * 3}?" for i in range(n)]


async def plain(
    client: CrewbusClient, tasks: Sequence[str], concurrency: int
) -> tuple[float, int]:
    """Submit and follow each task to its end, `concurrency` at a time: (seconds, completed)."""
    send, receive = anyio.create_memory_object_stream[str](len(tasks))
    for text in tasks:
        send.send_nowait(text)
    send.close()
    completed = 0

    async def worker() -> None:
        nonlocal completed
        async for text in receive:
            accepted = await client.submit(SubmitTask(text=text, idempotency_key=text))
            async with contextlib.aclosing(client.events(accepted.task_id)) as events:
                async for event in events:
                    if isinstance(event, TERMINAL_EVENTS):
                        completed += isinstance(event, TaskCompleted)
                        break

    start = time.perf_counter()
    async with receive, anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return time.perf_counter() - start, completed


async def evaluate(
    client: CrewbusClient, tasks: Sequence[str], concurrency: int
) -> tuple[float, int]:
    """The same tasks as one experiment through the runner: (seconds, items passing)."""
    items = [DatasetItem(id=f"i{n}", input=ItemInput(text=text), expected="[simulated]")
             for n, text in enumerate(tasks)]
    name = f"bench-{concurrency}-{uuid.uuid4().hex[:6]}"
    config = ExperimentConfig(dataset="bench", dataset_version=1, scorers=SCORERS,
                              concurrency=concurrency)
    store = await ExperimentStore.open(client.js)
    tracer = await start_tracer(client.js, "evaluator")
    async with ScorerContext() as context:
        scorers = build_scorers(SCORERS, context)
        runner = ExperimentRunner(client.nc, store, summarise, tracer=tracer)
        start = time.perf_counter()
        experiment = await runner.run(ExperimentRun(name, config, items, scorers))
        seconds = time.perf_counter() - start
    runs = await store.items(name)
    passing = sum(all(s.passed for s in r.scores) for r in runs)
    assert experiment.summary is not None and experiment.summary.items_done == len(items)
    return seconds, passing


async def bench(items: int, levels: Sequence[int], repeats: int) -> list[Level]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            async with SimulatedModel() as model:
                assert model.base_url is not None
                async with in_process_stack(server.url, model.base_url, AGENT_ROLES, None,
                                            **SERVICE_DEFAULTS) as client:
                    await plain(client, texts(4, "warm-up"), 4)
                    for concurrency in levels:
                        level = Level(concurrency, items, [], [], 0, 0)
                        for n in range(repeats):
                            seconds, ok = await plain(
                                client, texts(items, f"plain-{concurrency}-{n}"), concurrency)
                            level.plain_s.append(seconds)
                            level.plain_ok += ok
                            seconds, ok = await evaluate(
                                client, texts(items, f"eval-{concurrency}-{n}"), concurrency)
                            level.eval_s.append(seconds)
                            level.eval_ok += ok
                        print(row(level), flush=True)
                        results.append(level)
        finally:
            server.stop()
    return results


HEADER = (f"{'concurrency':>11}  {'items':>5}  {'plain items/s':>13}  {'eval items/s':>12}  "
          f"{'ratio':>6}  {'plain ok':>8}  {'eval passing':>12}  runs (s): plain | eval")


def row(level: Level) -> str:
    runs = (" ".join(f"{s:.1f}" for s in level.plain_s) + " | "
            + " ".join(f"{s:.1f}" for s in level.eval_s))
    return (f"{level.concurrency:>11}  {level.items:>5}  {level.plain_rate:>13.2f}  "
            f"{level.eval_rate:>12.2f}  {level.ratio:>5.2f}x  {level.plain_ok:>8}  "
            f"{level.eval_ok:>12}  {runs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 items at concurrency 1 and 8")
    parser.add_argument("--items", type=int, help=f"items per level (default {ITEMS})")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating plain/eval runs per level (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    items = args.items or (40 if args.quick else ITEMS)
    levels = (1, 8) if args.quick else LEVELS
    print(f"eval throughput: {items} items per level x {args.repeats} runs each, simulated "
          "model at zero latency, everything in one process on 127.0.0.1")
    print(HEADER, flush=True)
    results = anyio.run(bench, items, levels, args.repeats)
    worst = max(r.ratio for r in results)
    print(f"cost of the evaluation layer: {worst:.2f}x at worst (aim <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

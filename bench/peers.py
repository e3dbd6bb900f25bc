"""crewbus side by side with its floor and its peers, in one run, on one machine.

Every flow runs the same four-step task against the same simulated model (its own process,
HTTP on 127.0.0.1, zero latency): a plan call, two research calls in parallel, two
executor calls one after the other, a critique call (6 model calls, 5 on the critical
path). Every model call goes through the same `openai` client (its aiohttp transport, a
body encoded once, the reply decoded by msgspec: what crewbus's adapter does), so the
rows differ only in what carries the work between the calls.

  floor           plain nats-py: each call is a JetStream publish, a pull consumer's fetch,
                  the model call, the result's publish (PubAck awaited), its fetch and two
                  acks; no platform around them. The physical limit of this design here.
  langgraph       the same flow as a LangGraph graph in this process (plan -> r1 || r2 ->
                  e1 -> e2 -> critique), no bus and no durability
  agentbus        the `agentbus` task bus on the same nats-server: one AgentBusWorker per
                  role and parallel slot (its worker handles one message at a time), the
                  model call as its runner; results come back over core NATS
  crewbus-inproc  crewbus's orchestrator and one replica per role in this process
  crewbus-procs   the orchestrator and every role as their own processes

CPU per task: user+system CPU time (kernel counters, psutil) of this process plus, for
crewbus-procs, the service processes, over a level, divided by the tasks completed. The
simulated model's process is never counted.

    PYTHONPATH=contracts:agents:services:. .venv/bin/python bench/peers.py [--quick]
        [-n 200] [--levels 1,8,32] [--flows floor,langgraph,agentbus,crewbus-inproc,...]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import anyio
import httpx2
import msgspec
import nats
import openai
import psutil
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from bench.bus_overhead import (
    SERVICE_DEFAULTS,
    FinalEvents,
    Layout,
    LevelResult,
    bench_env,
    inproc_layout,
    loop_options,
    model_process,
    pct,
    procs_layout,
)
from crewbus.devstack.nats_server import NatsServer
from crewbus.ids import task_id_for
from crewbus.llm.hint import HINT_HEADER, ModelHint
from crewbus.llm.schema import response_schema
from crewbus.llm.settings import SIMULATED_MODEL_NAME
from crewbus.llm.wire import reply_decoder
from crewbus_contracts import SubmitTask
from crewbus_contracts.models import Critique, Plan, StepOutput

FLOWS = ("floor", "langgraph", "agentbus", "crewbus-inproc", "crewbus-procs")
PARALLEL_SLOTS = 4
"""Work items one role handles at once in every flow (crewbus's default concurrency)."""

STEPS: dict[str, tuple[str, type[msgspec.Struct]]] = {
    "plan": ("planner", Plan),
    "r1": ("researcher", StepOutput),
    "r2": ("researcher", StepOutput),
    "e1": ("executor", StepOutput),
    "e2": ("executor", StepOutput),
    "critique": ("critic", Critique),
}
OUTPUT_BY_ROLE = {role: output for role, output in STEPS.values()}


# -- the model call every flow makes ------------------------------------------------------


class Model:
    """One openai client for the process; one pre-encoded body per output contract."""

    def __init__(self, url: str) -> None:
        self.client = openai.AsyncOpenAI(base_url=url, api_key="sk-simulated-no-key",
                                         http_client=openai.DefaultAioHttpClient())
        encoder = msgspec.json.Encoder()
        self.bodies: dict[str, bytes] = {}
        self.hints: dict[str, str] = {}
        for _, output in STEPS.values():
            name = output.__name__
            self.bodies[name] = encoder.encode({
                "model": SIMULATED_MODEL_NAME,
                "messages": [{"role": "system", "content": f"You produce a {name}."},
                             {"role": "user", "content": "Compare two message queues."}],
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": name, "schema": response_schema(output), "strict": False}},
            })
            self.hints[name] = ModelHint(output=name, task="Compare two message queues.",
                                         step="r1").header_value()

    async def call(self, output: type[msgspec.Struct]) -> str:
        name = output.__name__
        response = await self.client.post(
            "/chat/completions", cast_to=httpx2.Response, content=self.bodies[name],
            options={"headers": {HINT_HEADER: self.hints[name]}},
        )
        reply = reply_decoder.decode(response.content)
        return reply.choices[0].message.content or ""

    async def close(self) -> None:
        await self.client.close()


# -- flows ----------------------------------------------------------------------------------


class Flow:
    """Runs one task end to end (`run_task`); `cpu_s` counts the processes it uses."""

    name = ""

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start what serves the flow's work in `tg` (cancelled before `stop`)."""

    async def stop(self) -> None:
        """Remove what `start` created."""

    async def run_task(self, i: int) -> None:
        raise NotImplementedError

    def cpu_s(self) -> float:
        times = psutil.Process().cpu_times()
        return times.user + times.system


class Waiting:
    """Futures for the steps in flight, resolved by whatever brings their results back."""

    def __init__(self) -> None:
        self.futures: dict[str, asyncio.Future[None]] = {}

    def expect(self, key: str) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self.futures[key] = future
        return future

    def arrived(self, key: str) -> None:
        future = self.futures.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)


async def four_steps(step: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """plan -> (r1 || r2) -> e1 -> e2 -> critique."""
    await step("plan")
    async with anyio.create_task_group() as tg:
        tg.start_soon(step, "r1")
        tg.start_soon(step, "r2")
    for name in ("e1", "e2", "critique"):
        await step(name)


class FloorFlow(Flow):
    """The same hops with plain nats-py and nothing else."""

    name = "floor"

    def __init__(self, nc: NATS, model: Model) -> None:
        self.nc, self.js, self.model = nc, nc.jetstream(), model
        self.tag = uuid.uuid4().hex[:6]
        self.waiting = Waiting()
        self.work_stream, self.results_stream = f"FLOOR_WORK_{self.tag}", f"FLOOR_RES_{self.tag}"

    def work(self, role: str) -> str:
        return f"floor.{self.tag}.work.{role}"

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        for stream, subject in ((self.work_stream, f"floor.{self.tag}.work.*"),
                                (self.results_stream, f"floor.{self.tag}.results")):
            await self.js.add_stream(StreamConfig(
                name=stream, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE))
        for role in OUTPUT_BY_ROLE:
            await self.js.add_consumer(self.work_stream, ConsumerConfig(
                durable_name=role, filter_subject=self.work(role),
                ack_policy=AckPolicy.EXPLICIT))
            sub = await self.js.pull_subscribe_bind(durable=role, stream=self.work_stream)
            tg.start_soon(self._serve, sub, role)
        await self.js.add_consumer(self.results_stream, ConsumerConfig(
            durable_name="results", ack_policy=AckPolicy.EXPLICIT))
        results = await self.js.pull_subscribe_bind(durable="results", stream=self.results_stream)
        tg.start_soon(self._collect, results)

    async def _serve(self, sub: Any, role: str) -> None:
        slots = anyio.Semaphore(PARALLEL_SLOTS)
        async with anyio.create_task_group() as tg:
            while True:
                await slots.acquire()
                try:
                    msgs = await sub.fetch(1, timeout=1.0)
                except TimeoutError:
                    slots.release()
                    continue
                tg.start_soon(self._work, msgs[0], role, slots)

    async def _work(self, msg: Msg, role: str, slots: anyio.Semaphore) -> None:
        try:
            await self.model.call(OUTPUT_BY_ROLE[role])
            await self.js.publish(f"floor.{self.tag}.results", msg.data,
                                  stream=self.results_stream)
            await msg.ack()
        finally:
            slots.release()

    async def _collect(self, sub: Any) -> None:
        while True:
            try:
                msgs = await sub.fetch(32, timeout=1.0)
            except TimeoutError:
                continue
            for msg in msgs:
                await msg.ack()
                self.waiting.arrived(msg.data.decode())

    async def run_task(self, i: int) -> None:
        async def step(name: str) -> None:
            key = f"{i}:{name}"
            arrived = self.waiting.expect(key)
            await self.js.publish(self.work(STEPS[name][0]), key.encode(),
                                  stream=self.work_stream)
            await arrived

        await four_steps(step)

    async def stop(self) -> None:
        for stream in (self.work_stream, self.results_stream):
            await self.js.delete_stream(stream)


class Outputs(TypedDict):
    task: str
    outputs: Annotated[dict[str, str], operator.or_]


class LangGraphFlow(Flow):
    """The same flow as a LangGraph graph, every node a model call."""

    name = "langgraph"

    def __init__(self, model: Model) -> None:
        from langgraph.graph import END, START, StateGraph

        def node(step: str) -> Callable[[Outputs], Awaitable[dict[str, Any]]]:
            async def call(state: Outputs) -> dict[str, Any]:
                return {"outputs": {step: await model.call(STEPS[step][1])}}
            return call

        graph = StateGraph(Outputs)
        for step in STEPS:
            graph.add_node(step, node(step))  # type: ignore[call-overload,unused-ignore]
        graph.add_edge(START, "plan")
        graph.add_edge("plan", "r1")
        graph.add_edge("plan", "r2")
        graph.add_edge(["r1", "r2"], "e1")
        graph.add_edge("e1", "e2")
        graph.add_edge("e2", "critique")
        graph.add_edge("critique", END)
        self.graph = graph.compile()

    async def run_task(self, i: int) -> None:
        final = await self.graph.ainvoke({"task": f"Benchmark task {i}", "outputs": {}})
        assert len(final["outputs"]) == len(STEPS)


class AgentBusFlow(Flow):
    """The `agentbus` task bus: its workers, the model call as their runner."""

    name = "agentbus"

    def __init__(self, nc: NATS, url: str, model: Model) -> None:
        import agentbus.worker  # noqa: F401  (ImportError here: not installed)

        self.nc, self.js, self.url, self.model = nc, nc.jetstream(), url, model
        self.waiting = Waiting()
        self.workers: list[Any] = []

    async def stop(self) -> None:
        from agentbus.worker import TASK_STREAM

        for worker in self.workers:
            if worker._nc is not None and not worker._nc.is_closed:
                await worker._nc.close()
        await self.js.delete_stream(TASK_STREAM)

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        from agentbus.worker import TASK_STREAM, AgentBusWorker, ProcessResult

        await self.js.add_stream(StreamConfig(
            name=TASK_STREAM, subjects=["agentbus.*.tasks"], storage=StorageType.FILE))

        async def runner(prompt: str, config: Any) -> ProcessResult:
            return ProcessResult(0, await self.model.call(OUTPUT_BY_ROLE[config.agent_id]), "")

        from agentbus.config import WorkerConfig

        for role in OUTPUT_BY_ROLE:
            for _ in range(PARALLEL_SLOTS):
                worker = AgentBusWorker(WorkerConfig(agent_id=role, server_url=self.url,
                                                     agent_chat_cmd=["{input}"]), runner=runner)
                self.workers.append(worker)
                tg.start_soon(worker.run_forever)
        await self.nc.subscribe("agentbus.bench.results", cb=self._on_result)

    async def _on_result(self, msg: Msg) -> None:
        self.waiting.arrived(msgspec.json.decode(msg.data)["task"]["payload"]["content"])

    async def run_task(self, i: int) -> None:
        from agentbus.messages import dump_json
        from agentbus.publish import build_task_message, build_task_subject
        from agentbus.worker import TASK_STREAM

        async def step(name: str) -> None:
            key = f"{i}:{name}"
            arrived = self.waiting.expect(key)
            role = STEPS[name][0]
            message = build_task_message(from_agent="bench", target_agent=role,
                                         task_type="step", content=key)
            await self.js.publish(build_task_subject(role), dump_json(message),
                                  stream=TASK_STREAM)
            await arrived

        await four_steps(step)

class CrewbusFlow(Flow):
    """A task submitted through the gateway, done when its final event arrives."""

    def __init__(self, name: str, layout: Layout) -> None:
        self.name, self.layout = name, layout
        self.finals = FinalEvents(layout.client.nc)
        self.tag = uuid.uuid4().hex[:6]

    async def run_task(self, i: int) -> None:
        key = f"peers-{self.tag}-{i}"
        future = self.finals.expect(task_id_for(key))
        await self.layout.client.submit(SubmitTask(text=f"Benchmark task {i}",
                                                   idempotency_key=key))
        with anyio.fail_after(60):
            _, ok = await future
        if not ok:
            raise RuntimeError(f"task {key} failed")

    def cpu_s(self) -> float:
        own = super().cpu_s()
        return own + (self.layout.cpu_s() if self.name == "crewbus-procs" else 0.0)


# -- driving a level ------------------------------------------------------------------------


CAP_GRACE_S = 120.0


async def drive(flow: Flow, n: int, concurrency: int, cap_s: float, start: int) -> LevelResult:
    row = LevelResult(flow.name, concurrency, n)
    counter = iter(range(start, start + n))

    async def one_client() -> None:
        for i in counter:
            began = time.perf_counter()
            try:
                with anyio.fail_after(60):
                    await flow.run_task(i)
            except Exception:
                row.failed += 1
                continue
            row.latencies.append(time.perf_counter() - began)

    async def cap(scope: anyio.CancelScope) -> None:
        """End the level at `cap_s`, but not before one task ended (a level with no row
        says nothing; on a loaded machine the quick form's 3 s could pass with none)."""
        await anyio.sleep(cap_s)
        with anyio.move_on_after(CAP_GRACE_S):
            while not row.latencies and not row.failed:
                await anyio.sleep(0.05)
        scope.cancel()

    cpu = flow.cpu_s()
    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cap, tg.cancel_scope)
        async with anyio.create_task_group() as clients:
            for _ in range(concurrency):
                clients.start_soon(one_client)
        tg.cancel_scope.cancel()
    row.wall_s = time.perf_counter() - began
    row.cpu_s = flow.cpu_s() - cpu
    return row


async def measure(flow: Flow, config: Config) -> list[LevelResult]:
    await drive(flow, config.warmup, 2, 60.0, 10_000_000)
    rows = []
    for index, level in enumerate(config.levels):
        row = await drive(flow, config.n, level, config.cap_s, index * 1_000_000)
        print(f"  {flow.name:<15} c={level:<3} {row.done} tasks, {row.rate:.1f}/s, "
              f"{row.cpu_ms_per_task:.1f} ms CPU/task", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


# -- the run --------------------------------------------------------------------------------


@dataclass
class Config:
    n: int
    levels: list[int]
    flows: list[str]
    cap_s: float
    warmup: int


async def run_flow(name: str, server: NatsServer, model: Model, url: str, log_dir: Path,
                   config: Config) -> list[LevelResult] | str:
    """The rows of one flow, or why it could not run."""
    async with AsyncExitStack() as stack:
        nc = await nats.connect(server.url)
        stack.push_async_callback(nc.close)
        if name.startswith("crewbus-"):
            settings = dict(SERVICE_DEFAULTS)
            layout = await stack.enter_async_context(
                inproc_layout(server.url, settings, log_dir, model_url=url)
                if name == "crewbus-inproc"
                else procs_layout(server.url, settings, {}, log_dir, model_url=url))
            crewbus = CrewbusFlow(name, layout)
            await crewbus.finals.start()
            return await measure(crewbus, config)
        flow = peer_flow(name, nc, server, model)
        if isinstance(flow, str):
            return flow
        stack.push_async_callback(flow.stop)  # once its tasks below are gone
        async with anyio.create_task_group() as tg:
            await flow.start(tg)
            try:
                return await measure(flow, config)
            finally:
                tg.cancel_scope.cancel()
    raise AssertionError("unreachable")


def peer_flow(name: str, nc: NATS, server: NatsServer, model: Model) -> Flow | str:
    """The flow `name` (not started), or why it cannot run."""
    try:
        if name == "floor":
            return FloorFlow(nc, model)
        if name == "langgraph":
            return LangGraphFlow(model)
        return AgentBusFlow(nc, server.url, model)
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench]')"


def print_table(results: dict[str, list[LevelResult] | str], config: Config) -> None:
    floor = results.get("floor")
    floor_rows = {r.concurrency: r for r in floor} if isinstance(floor, list) else {}
    print()
    print("Same 4-step task (6 model calls), simulated model over HTTP at zero latency, "
          f"{os.cpu_count()} cores, N={config.n} per level")
    header = (f"{'flow':<16}{'conc':>5}{'done':>6}{'tasks/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
              f"{'CPU ms/task':>12}{'tasks/s vs floor':>18}{'CPU vs floor':>14}")
    print(header)
    print("-" * len(header))
    for name in config.flows:
        rows = results[name]
        if isinstance(rows, str):
            print(f"{name:<16} not run: {rows}")
            continue
        for r in rows:
            base = floor_rows.get(r.concurrency)
            rate_ratio = f"{r.rate / base.rate:.2f}x" if base and base.rate else "-"
            cpu_ratio = (f"{r.cpu_ms_per_task / base.cpu_ms_per_task:.1f}x"
                         if base and base.done else "-")
            done = f"{r.done}{'!' if r.failed else ''}"
            print(f"{name:<16}{r.concurrency:>5}{done:>6}{r.rate:>9.1f}"
                  f"{pct(r.latencies, 50) * 1000:>9.1f}{pct(r.latencies, 95) * 1000:>9.1f}"
                  f"{r.cpu_ms_per_task:>12.1f}{rate_ratio:>18}{cpu_ratio:>14}")
    print()
    print("CPU ms/task: this process's CPU (and crewbus-procs' service processes') per task;")
    print("the model server is never counted. ! = some tasks failed or timed out.")
    print(f"load average at the end (other tenants count too): {os.getloadavg()}")


async def main(config: Config) -> None:
    with tempfile.TemporaryDirectory(prefix="crewbus-peers-") as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            env = bench_env(server.url, dict(SERVICE_DEFAULTS))
            async with model_process(env, Path(tmp) / "logs") as url:
                model = Model(url)
                try:
                    results: dict[str, list[LevelResult] | str] = {}
                    for name in config.flows:
                        results[name] = await run_flow(name, server, model, url,
                                                       Path(tmp) / "logs" / name, config)
                finally:
                    await model.close()
            print_table(results, config)
        finally:
            server.stop()


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="tasks per concurrency level")
    parser.add_argument("--levels", default="1,8,32", help="tasks in flight, comma separated")
    parser.add_argument("--flows", default=",".join(FLOWS), help=f"some of {', '.join(FLOWS)}")
    parser.add_argument("--cap", type=float, default=60.0, help="wall-clock cap per level, s")
    parser.add_argument("--quick", action="store_true",
                        help="every flow and level, briefly (N=10, 3 s per level; < 60 s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.cap = 10, 3.0
    flows = [f for f in args.flows.split(",") if f]
    for name in flows:
        if name not in FLOWS:
            parser.error(f"unknown flow {name!r}")
    return Config(n=args.n, levels=[int(x) for x in args.levels.split(",") if x], flows=flows,
                  cap_s=args.cap, warmup=3 if args.quick else 20)


if __name__ == "__main__":
    anyio.run(main, parse_args(None), **loop_options())

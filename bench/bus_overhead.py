"""Bus overhead benchmark: crewbus end to end against the raw JetStream round trip.

Pushes N tasks through the whole bus (gateway -> orchestrator -> planner -> researchers ->
executors -> critic -> completed event) with the simulated model at zero latency, at
several concurrency levels, and measures on the same nats-server the raw nats-py
JetStream publish -> fetch -> ack round trip. Everything listens on 127.0.0.1 only.

    PYTHONPATH=contracts:agents:services:. python bench/bus_overhead.py [--quick]

Layouts:
  inproc  orchestrator and one replica per role in this process's event loop (what
          tests/stack.py's in_process_stack builds); the simulated model is a child process
  procs   the simulated model, the orchestrator and every role as child processes
          (`python -m crewbus serve <svc>`), so they can use every core; `--replicas
          researcher=2,executor=2` starts more replicas of a role

Per-hop overhead (printed with the results): a task with the default simulated plan makes
6 agent hops (plan, r1, r2, e1, e2, critique). For each hop the orchestrator records in
the task state `dispatched_at` (when it decided to dispatch, before publishing) and
`finished_at` (when it applied the result, after reading the state back from KV); the
agent reports `duration_s`, the time it spent inside the model call (openai client +
HTTP + simulated server + validation). So

    hop overhead = (finished_at - dispatched_at) - duration_s

is everything the bus adds to one piece of work: publishing the dispatch (and the
progress events that go with it), saving the state, acking the input, the agent's fetch,
its step_started event, its result publish and ack, the orchestrator's fetch and the KV
read of the state. It is compared with one raw publish -> fetch -> ack round trip.

CPU per task: the user+system CPU time of crewbus's own processes (read from the kernel's
per-process counters, psutil) over a level, divided by the tasks it completed. The
simulated model server is never counted (it is always its own process); in the inproc
layout the count is this process, so it includes the benchmark's client side too.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats
import psutil
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from crewbus.bus.topology import ensure_topology
from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.ids import task_id_for
from crewbus.orchestrator.settings import OrchestratorSettings
from crewbus.taskstore import TaskStore
from crewbus_contracts import (
    AGENT_ROLES,
    SubmitTask,
    TaskCompleted,
    TaskFailed,
    TaskState,
    subjects,
)
from tests.stack import in_process_stack, service_env, spawn_service, wait_for_port

HOPS_PER_TASK = 6
CRITICAL_PATH_LEVELS = 5  # plan, (r1 || r2), e1, e2, critique
SERVICE_DEFAULTS = {"ack_wait_s": 30.0, "heartbeat_s": 5.0, "max_deliver": 3}
"""The services' own defaults (tests/stack.py uses faster timers meant for failure tests)."""

_FINAL_TAGS = (TaskCompleted.__struct_config__.tag, TaskFailed.__struct_config__.tag)
_final_decoder = msgspec.json.Decoder(TaskCompleted | TaskFailed)


# -- statistics ------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.2f}"


# -- the raw JetStream round trip ------------------------------------------------------


@dataclass
class RawResult:
    samples: list[float]
    samples_sync_ack: list[float]

    @property
    def p50(self) -> float:
        return pct(self.samples, 50)


async def raw_round_trip(nc: NATS, iterations: int) -> RawResult:
    """publish (await PubAck) -> fetch(1) -> ack on a file-backed work-queue stream.

    Same storage and retention as crewbus's streams. Measured twice: with the
    fire-and-forget `ack()` crewbus's worker uses, and with `ack_sync()` (waits for the
    server to confirm the ack).
    """
    js = nc.jetstream()
    stream = "BENCH_RAW_" + uuid.uuid4().hex[:8].upper()
    subject = f"bench.raw.{stream.lower()}"
    await js.add_stream(
        StreamConfig(
            name=stream, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
        )
    )
    try:
        await js.add_consumer(
            stream, ConsumerConfig(durable_name="raw", ack_policy=AckPolicy.EXPLICIT)
        )
        sub = await js.pull_subscribe_bind(durable="raw", stream=stream)
        payload = b'{"schema_version":1,"payload":"' + b"x" * 400 + b'"}'
        results: list[list[float]] = []
        for sync_ack in (False, True):
            samples: list[float] = []
            for i in range(iterations + 20):
                start = time.perf_counter()
                await js.publish(subject, payload, stream=stream)
                msgs = await sub.fetch(1, timeout=5.0)
                if sync_ack:
                    await msgs[0].ack_sync()
                else:
                    await msgs[0].ack()
                if i >= 20:  # warm-up
                    samples.append(time.perf_counter() - start)
            results.append(samples)
        await sub.unsubscribe()
        return RawResult(results[0], results[1])
    finally:
        await js.delete_stream(stream)


# -- driving tasks through crewbus ---------------------------------------------------


class FinalEvents:
    """One core-NATS subscription to every task's completed/failed event.

    Cheaper than one ordered JetStream consumer per task (what CrewbusClient.events does),
    so the client side adds as little load as possible to what is measured.
    """

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.waiting: dict[str, asyncio.Future[tuple[float, bool]]] = {}

    async def start(self) -> None:
        for tag in _FINAL_TAGS:
            await self.nc.subscribe(subjects.events("*", str(tag)), cb=self._on_event)
        await self.nc.flush()

    def expect(self, task_id: str) -> asyncio.Future[tuple[float, bool]]:
        future: asyncio.Future[tuple[float, bool]] = asyncio.get_running_loop().create_future()
        self.waiting[task_id] = future
        return future

    async def _on_event(self, msg: Msg) -> None:
        at = time.perf_counter()
        task_id = msg.subject.split(".")[2]
        future = self.waiting.pop(task_id, None)
        if future is not None and not future.done():
            event = _final_decoder.decode(msg.data)
            future.set_result((at, isinstance(event, TaskCompleted)))


@dataclass
class LevelResult:
    layout: str
    concurrency: int
    wanted: int
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    wall_s: float = 0.0
    task_ids: list[str] = field(default_factory=list)
    hop_overheads: list[float] = field(default_factory=list)
    model_times: list[float] = field(default_factory=list)
    path_overheads: list[float] = field(default_factory=list)
    capped: bool = False
    cpu_s: float = float("nan")
    """CPU seconds crewbus's processes spent over the level (model server excluded)."""

    @property
    def cpu_ms_per_task(self) -> float:
        return self.cpu_s * 1000 / self.done if self.done else float("nan")

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.done / self.wall_s if self.wall_s else 0.0


async def drive(
    client: CrewbusClient, finals: FinalEvents, layout: str, n: int, concurrency: int,
    cap_s: float, tag: str,
) -> LevelResult:
    """N tasks, `concurrency` in flight; stops early (capped) after `cap_s` seconds."""
    result = LevelResult(layout, concurrency, n)
    counter = iter(range(n))

    async def one_client() -> None:
        for i in counter:
            key = f"bench-{tag}-{concurrency}-{i}"
            task_id = task_id_for(key)
            future = finals.expect(task_id)
            start = time.perf_counter()
            await client.submit(SubmitTask(text=f"Benchmark task {i}", idempotency_key=key))
            try:
                with anyio.fail_after(30):
                    at, ok = await future
            except TimeoutError:
                result.failed += 1
                continue
            if ok:
                result.latencies.append(at - start)
                result.task_ids.append(task_id)
            else:
                result.failed += 1

    start = time.perf_counter()
    with anyio.move_on_after(cap_s) as scope:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(one_client)
    result.wall_s = time.perf_counter() - start
    result.capped = scope.cancelled_caught
    return result


async def read_hops(client: CrewbusClient, result: LevelResult) -> None:
    """Per-hop bus overhead from the task states (after the run, so it does not perturb it)."""
    store = TaskStore(await client.js.key_value(subjects.TASKS_KV))
    for task_id, latency in zip(result.task_ids, result.latencies, strict=True):
        found = await store.get(task_id)
        if found is None:
            continue
        state: TaskState = found[0]
        if len(state.rounds) != 1:
            continue  # a re-planned task has more hops; the simulated critic never asks
        round_ = state.rounds[0]
        hops = {"plan": round_.planner, **round_.steps, "critique": round_.critic}
        model = {}
        for name, step in hops.items():
            if step.dispatched_at is None or step.finished_at is None or step.duration_s is None:
                continue
            result.hop_overheads.append(step.finished_at - step.dispatched_at - step.duration_s)
            result.model_times.append(step.duration_s)
            model[name] = step.duration_s
        if {"plan", "r1", "r2", "e1", "e2", "critique"} <= model.keys():
            on_path = (model["plan"] + max(model["r1"], model["r2"]) + model["e1"]
                       + model["e2"] + model["critique"])
            result.path_overheads.append((latency - on_path) / CRITICAL_PATH_LEVELS)


# -- layouts -------------------------------------------------------------------------


@dataclass
class Layout:
    """A running layout: its client and the processes whose CPU counts as crewbus's."""

    client: CrewbusClient
    processes: list[psutil.Process]

    def cpu_s(self) -> float:
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds so far per process, by its service name (`serve <name>`)."""
        out: dict[str, float] = {}
        for process in self.processes:
            try:
                times = process.cpu_times()
                name = process.cmdline()[-1] if len(self.processes) > 1 else "inproc"
            except psutil.Error:
                continue
            out[name] = out.get(name, 0.0) + times.user + times.system
        return out


@asynccontextmanager
async def model_process(env: dict[str, str], log_dir: Path) -> AsyncIterator[str]:
    """The simulated model at zero latency as its own process: its CPU is never counted."""
    port = free_port()
    # Not `crewbus serve simulated-model`: that one runs on the event loop crewbus picks,
    # this one always on asyncio's own, so a before/after pair differs only in crewbus.
    code = (
        "import anyio; from crewbus.llm.simulated import serve_simulated_model; "
        f"anyio.run(serve_simulated_model, '127.0.0.1', {port}, 0.0)"
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "simulated-model.log", "wb") as log:
        model = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        await wait_for_port(port, model)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_children([model])


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def bench_env(nats_url: str, settings: dict[str, float], model_url: str = "") -> dict[str, str]:
    env = service_env(nats_url, model_url, **settings)
    env.setdefault("PYTHONPATH", os.pathsep.join(["contracts", "agents", "services", "."]))
    return env


async def wait_for_gateway(nc: NATS, children: list[subprocess.Popen[bytes]]) -> None:
    """Until the orchestrator's gateway answers (an empty submission gets its error reply):
    a busy machine can take many seconds to start the services."""
    with anyio.fail_after(90):
        while True:
            if any(child.poll() is not None for child in children):
                raise RuntimeError("a service exited at start")
            try:
                await nc.request(subjects.SUBMIT, b"", timeout=2)
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await anyio.sleep(0.2)


@asynccontextmanager
async def inproc_layout(
    nats_url: str, settings: dict[str, float], log_dir: Path, model_url: str | None = None
) -> AsyncIterator[Layout]:
    """The stack in this process; a model process of its own unless `model_url` is given."""
    async with AsyncExitStack() as stack:
        if model_url is None:
            model_url = await stack.enter_async_context(
                model_process(bench_env(nats_url, settings), log_dir))
        client = await stack.enter_async_context(
            in_process_stack(nats_url, model_url, AGENT_ROLES, None, **settings))
        yield Layout(client, [psutil.Process()])


@asynccontextmanager
async def procs_layout(
    nats_url: str, settings: dict[str, float], replicas: dict[str, int], log_dir: Path,
    model_url: str | None = None,
) -> AsyncIterator[Layout]:
    """Every service its own process; a model process of its own unless `model_url`."""
    children: list[subprocess.Popen[bytes]] = []
    nc = await nats.connect(nats_url)
    try:
        await ensure_topology(nc.jetstream(), OrchestratorSettings(nats_url=nats_url))
        async with AsyncExitStack() as stack:
            if model_url is None:
                model_url = await stack.enter_async_context(
                    model_process(bench_env(nats_url, settings), log_dir))
            env = bench_env(nats_url, settings, model_url)
            for service in ("orchestrator", "planner", "researcher", "executor", "critic"):
                for _ in range(replicas.get(service, 1)):
                    children.append(spawn_service(service, env, log_dir))
            await wait_for_gateway(nc, children)
            try:
                yield Layout(CrewbusClient(nc), [psutil.Process(c.pid) for c in children])
            finally:
                stop_children(children)
    finally:
        await nc.close()


# -- the run ---------------------------------------------------------------------------


@dataclass
class Config:
    n: int
    levels: list[int]
    layouts: list[str]
    raw_iterations: int
    cap_s: float
    replicas: dict[str, int]
    agent_concurrency: int | None
    profile: str | None


async def run_layout(
    layout: str, server: NatsServer, config: Config, log_dir: Path
) -> list[LevelResult]:
    settings = dict(SERVICE_DEFAULTS)
    if config.agent_concurrency is not None:
        settings["concurrency"] = config.agent_concurrency
    results: list[LevelResult] = []
    tag = uuid.uuid4().hex[:6]
    async with AsyncExitStack() as stack:
        if layout == "inproc":
            running = await stack.enter_async_context(
                inproc_layout(server.url, settings, log_dir))
        else:
            running = await stack.enter_async_context(
                procs_layout(server.url, settings, config.replicas, log_dir)
            )
        client = running.client
        finals = FinalEvents(client.nc)
        await finals.start()
        # Warm-up (and, for child processes, wait until every service answers).
        warm = await drive(client, finals, layout, 10, 2, 60.0, tag + "w")
        if warm.done < 10:
            for path in sorted(log_dir.glob("*.log")):
                print(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}",
                      file=sys.stderr)
            raise RuntimeError(f"{layout}: warm-up finished {warm.done}/10 tasks")
        for level in config.levels:
            profiled = config.profile is not None and level == max(config.levels)
            profiler = cProfile.Profile() if profiled else None
            if profiler is not None:
                profiler.enable()
            cpu_before = running.cpu_by_process()
            result = await drive(client, finals, layout, config.n, level, config.cap_s, tag)
            cpu_after = running.cpu_by_process()
            result.cpu_s = sum(cpu_after.values()) - sum(cpu_before.values())
            if len(cpu_after) > 1 and result.done:
                print("    CPU ms/task by service: " + ", ".join(
                    f"{name} {(spent - cpu_before.get(name, 0.0)) * 1000 / result.done:.1f}"
                    for name, spent in sorted(cpu_after.items())), file=sys.stderr)
            if profiler is not None:
                profiler.disable()
                dump_profile(profiler, config.profile, layout, level)
            await read_hops(client, result)
            results.append(result)
            print(f"  {layout:>14} c={level:<3} {result.done}/{config.n} tasks in "
                  f"{result.wall_s:.1f}s, {result.cpu_ms_per_task:.1f} ms CPU/task",
                  file=sys.stderr, flush=True)
    return results


def dump_profile(profiler: cProfile.Profile, path: str | None, layout: str, level: int) -> None:
    assert path is not None
    profiler.dump_stats(path)
    print(f"\n== cProfile of {layout} at concurrency {level} (saved to {path}) ==")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def print_report(raw: RawResult, results: list[LevelResult], config: Config) -> None:
    rt = raw.p50
    print()
    print("Raw nats-py JetStream round trip (publish+PubAck -> fetch(1) -> ack), "
          f"{len(raw.samples)} iterations, file storage, work-queue stream:")
    print(f"  ack()      p50 {ms(raw.p50)} ms   p95 {ms(pct(raw.samples, 95))} ms")
    print(f"  ack_sync() p50 {ms(pct(raw.samples_sync_ack, 50))} ms   "
          f"p95 {ms(pct(raw.samples_sync_ack, 95))} ms")
    print()
    print("crewbus end to end (simulated model, 0 latency, 4-step plan = "
          f"{HOPS_PER_TASK} agent hops, {CRITICAL_PATH_LEVELS} on the critical path):")
    header = (f"{'layout':<16}{'conc':>5}{'done':>7}{'tasks/s':>9}{'e2e p50':>9}{'e2e p95':>9}"
              f"{'hop p50':>9}{'hop p95':>9}{'model p50':>10}{'path/lvl':>9}{'hop/raw':>8}"
              f"{'CPU/task':>9}")
    print(header)
    print(f"{'':<16}{'':>5}{'':>7}{'':>9}{'ms':>9}{'ms':>9}{'ms':>9}{'ms':>9}{'ms':>10}"
          f"{'ms':>9}{'x':>8}{'ms':>9}")
    print("-" * len(header))
    for r in results:
        hop50 = pct(r.hop_overheads, 50)
        done = f"{r.done}{'*' if r.capped else ''}{'!' if r.failed else ''}"
        print(f"{r.layout:<16}{r.concurrency:>5}{done:>7}{r.rate:>9.1f}"
              f"{ms(pct(r.latencies, 50)):>9}{ms(pct(r.latencies, 95)):>9}"
              f"{ms(hop50):>9}{ms(pct(r.hop_overheads, 95)):>9}"
              f"{ms(pct(r.model_times, 50)):>10}{ms(pct(r.path_overheads, 50)):>9}"
              f"{hop50 / rt:>8.1f}{r.cpu_ms_per_task:>9.1f}")
    print()
    print("hop      = per-hop overhead = (StepState.finished_at - dispatched_at) - duration_s,")
    print("           i.e. one agent hop's time minus the time the agent spent in the model call")
    print("           (dispatch publish + events + KV save + ack -> agent fetch -> step_started")
    print("           -> result publish + ack -> orchestrator fetch -> KV read), over all 6 hops")
    print("model    = WorkReport.duration_s: the agent's model call (openai client, HTTP,")
    print("           simulated server, validation), excluded from the hop overhead")
    print("path/lvl = (e2e latency - model time on the critical path) / 5 levels: the same")
    print("           overhead seen from the client, including submit and the final event")
    print("hop/raw  = hop p50 / raw round-trip p50 (ack()); aim: <= 2x")
    print("tasks/s  = completed tasks / wall time of the level; aim: >= 100 (2-core machine)")
    print("CPU/task = CPU ms of crewbus's processes per completed task (kernel counters; the")
    print("           model server excluded; inproc counts this process, client side included)")
    print("done     = completed tasks; * = stopped at the wall-clock cap, ! = some failed")
    print(f"load average at the end (other tenants' work counts too): {os.getloadavg()}")
    print(f"N = {config.n} tasks per level; cores: {os.cpu_count()}; "
          f"replicas (procs): {config.replicas or 'one per service'}")


def parse_replicas(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        name, _, count = part.partition("=")
        out[name.strip()] = int(count)
    return out


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="tasks per concurrency level")
    parser.add_argument("--levels", default="1,8,32", help="tasks in flight, comma separated")
    parser.add_argument("--layouts", default="inproc,procs",
                        help="inproc, procs and/or procs-replicas (procs with --replicas)")
    parser.add_argument("--replicas", default="researcher=2,executor=2",
                        help="replicas per service for the procs-replicas layout")
    parser.add_argument("--raw-iterations", type=int, default=500)
    parser.add_argument("--cap", type=float, default=120.0,
                        help="wall-clock cap per level, seconds")
    parser.add_argument("--agent-concurrency", type=int,
                        help="work items per replica at once (default: the services' own)")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile the highest level of the inproc layout into FILE")
    parser.add_argument("--quick", action="store_true",
                        help="small run (< 60 s): N=40, levels 1,8, inproc only, 200 raw")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.levels, args.layouts = 40, "1,8", "inproc"
        args.raw_iterations, args.cap = 200, 15.0
    layouts = [x for x in args.layouts.split(",") if x]
    for layout in layouts:
        if layout not in ("inproc", "procs", "procs-replicas"):
            parser.error(f"unknown layout {layout!r}")
    return Config(
        n=args.n,
        levels=[int(x) for x in args.levels.split(",") if x],
        layouts=layouts,
        raw_iterations=args.raw_iterations,
        cap_s=args.cap,
        replicas=parse_replicas(args.replicas),
        agent_concurrency=args.agent_concurrency,
        profile=args.profile,
    )


async def main(config: Config) -> None:
    with tempfile.TemporaryDirectory(prefix="crewbus-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            nc = await nats.connect(server.url)
            try:
                raw = await raw_round_trip(nc, config.raw_iterations)
            finally:
                await nc.close()
            print(f"raw round trip p50 {ms(raw.p50)} ms", file=sys.stderr, flush=True)
            results: list[LevelResult] = []
            for layout in config.layouts:
                sub_config = config
                if layout != "inproc" or config.profile is None:
                    sub_config = Config(**{**config.__dict__, "profile": None})
                if layout == "procs":
                    sub_config = Config(**{**sub_config.__dict__, "replicas": {}})
                for r in await run_layout(layout, server, sub_config, Path(tmp) / "logs" / layout):
                    results.append(r)
            print_report(raw, results, config)
        finally:
            server.stop()


def loop_options() -> dict[str, Any]:
    """The loop crewbus's processes pick (crewbus.event_loop), for the inproc layout too;
    asyncio's own on a checkout that predates the setting (a "before" run)."""
    try:
        from crewbus.event_loop import run_options
    except ImportError:
        return {}
    return run_options()


if __name__ == "__main__":
    anyio.run(main, parse_args(None), **loop_options())

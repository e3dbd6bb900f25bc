"""Soak: the whole stack as separate processes under a steady load, watched for leaks.

Starts what `crewbus up` starts (a nats-server, the orchestrator, the memory service, one
replica of each agent role and the HTTP gateway, each `python -m crewbus serve <svc>`),
with the simulated model in this process (scripted per task, see `SoakModel`), then
submits tasks at a steady rate for the run's length. The mix:

  failing     1 in 10: the planner's reply fails validation twice, the task fails
  replanned   1 in 5:  the critic's first score is below the bar, the planner re-plans
  approval    1 in 4:  both executor steps call the `python` tool (in its jail where
              bubblewrap works), which waits for a human; this script approves 3 in 4
              calls and denies the rest
  plain       the rest

Every sample (each minute by default) prints each process's RSS and open files (read
from /proc) and the JetStream storage (every stream's bytes and messages). At the end it
prints the samples as a table and the end/start ratios after the warm-up (the start is
the sample at the end of the first minute, `--warmup-s`), then checks that no task was lost
(each one reached its final event, with the outcome its kind expects). Exit code 1 when a
task was lost or ended wrongly, or a service died. Everything listens on 127.0.0.1.

    PYTHONPATH=contracts:agents:services:. python bench/soak.py --minutes 30 --rate 1
    python bench/soak.py --seconds 10 --sample-s 5 --warmup-s 5 --rate 1.5   # short (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from crewbus.client import CommandRefusedError, CrewbusClient
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.devstack.processes import spawn_crewbus, stop_all
from crewbus.llm.hint import ModelHint
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.service_names import BUS_SERVICES, GATEWAY
from crewbus_contracts import (
    ApprovalRequested,
    ResolveApproval,
    SubmitTask,
    TaskCompleted,
    TaskFailed,
    TaskLimits,
    subjects,
)
from tests.stack import service_env

SERVICE_SETTINGS = {"ack_wait_s": 30.0, "heartbeat_s": 5.0, "max_deliver": 3}
"""The services' own delivery defaults (tests/stack.py's are faster, for failure tests)."""
FAIL_MARK = "[soak:fail]"
REPLAN_MARK = "[soak:replan]"
LOW_CRITIQUE = {"score": 0.2, "verdict": "revise", "reasons": ["[soak] misses the cost angle"],
                "suggestions": ["compare operating costs"]}
DRAIN_S = 90.0
"""How long the tasks still running when the load stops may take to finish."""

_decoder = msgspec.json.Decoder(TaskCompleted | TaskFailed | ApprovalRequested)


def kind_of(i: int) -> str:
    if i % 10 == 9:
        return "failing"
    if i % 5 == 2:
        return "replanned"
    if i % 4 == 1:
        return "approval"
    return "plain"


def task_for(i: int, run: str) -> SubmitTask:
    kind = kind_of(i)
    text = f"Soak task {i} of run {run}: compare two message brokers"
    if kind == "failing":
        text += f" {FAIL_MARK}"
    elif kind == "replanned":
        text += f" {REPLAN_MARK}"
    elif kind == "approval":
        text += f' and use tool python with {{"code": "print(sum(range({i})))"}}'
    limits = TaskLimits(allow_degraded=False) if kind == "failing" else None
    task = SubmitTask(text=text, idempotency_key=f"soak-{run}-{i}")
    return task if limits is None else msgspec.structs.replace(task, limits=limits)


class SoakModel(SimulatedModel):
    """The simulated model's default replies, except a failing task's plans (invalid) and
    a re-planned task's first critique (below the bar), told apart by the task's text."""

    def __init__(self) -> None:
        super().__init__()
        self.critiqued: Counter[str] = Counter()

    def _next_reply(self, agent: str, body: dict[str, Any], hint: ModelHint | None) -> SimReply:
        task = hint.task if hint is not None else ""
        if agent == "planner" and FAIL_MARK in task:
            return SimReply(content='{"steps": 3}')
        if agent == "critic" and REPLAN_MARK in task:
            self.critiqued[task] += 1
            if self.critiqued[task] == 1:
                return SimReply(content=json.dumps(LOW_CRITIQUE))
        return super()._next_reply(agent, body, hint)

    def forget(self) -> None:
        """Drop what a soak does not read (every request is recorded), to stay flat itself."""
        self.requests.clear()
        self.hints.clear()
        if len(self.critiqued) > 10_000:
            self.critiqued.clear()


@dataclass
class Ledger:
    """Every task submitted, how it ended, and the approvals resolved."""

    kinds: dict[str, str] = field(default_factory=dict)
    ended: dict[str, bool] = field(default_factory=dict)
    approved: int = 0
    denied: int = 0
    refused: int = 0

    @property
    def in_flight(self) -> int:
        return len(self.kinds) - len(self.ended)

    def wrong(self) -> list[str]:
        """Tasks that ended other than their kind expects (a failing one completed...)."""
        return [t for t, ok in self.ended.items() if ok == (self.kinds.get(t) == "failing")]


@dataclass
class Sample:
    at_s: float
    done: int
    rss_mb: dict[str, float]
    fds: dict[str, int]
    js_bytes: int
    js_msgs: int


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def js_storage(nc: NATS) -> tuple[int, int]:
    streams = await nc.jetstream().streams_info()
    return (sum(s.state.bytes for s in streams), sum(s.state.messages for s in streams))


@asynccontextmanager
async def stack(root: Path, model_url: str) -> AsyncIterator[tuple[NatsServer, dict[str, Any]]]:
    """nats-server and every service as child processes (as `crewbus up` lays them out)."""
    server = NatsServer(root / "nats").start()
    env = service_env(server.url, model_url, **SERVICE_SETTINGS)
    env.update({"CREWBUS_DATA_DIR": str(root), "CREWBUS_HTTP_PORT": str(free_port())})
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for service in (*BUS_SERVICES, GATEWAY):
            children[service] = spawn_crewbus(["serve", service], env,
                                              root / "logs" / f"{service}.log")
        yield server, children
    finally:
        stop_all(list(children.values()))
        server.stop()


async def resolve_approvals(client: CrewbusClient, ledger: Ledger,
                            requests: anyio.abc.ObjectReceiveStream[ApprovalRequested]) -> None:
    async for request in requests:
        approve = (ledger.approved + ledger.denied) % 4 != 3
        try:
            await client.control(ResolveApproval(
                task_id=request.task_id, approved=approve, by="soak",
                reason="" if approve else "[soak] denied", call_key=request.call_key))
        except (CommandRefusedError, TimeoutError):
            ledger.refused += 1  # already resolved (a repeated event), or a slow reply
            continue
        if approve:
            ledger.approved += 1
        else:
            ledger.denied += 1


async def watch_events(nc: NATS, ledger: Ledger,
                       approvals: anyio.abc.ObjectSendStream[ApprovalRequested]) -> None:
    async def on_event(msg: Msg) -> None:
        event = _decoder.decode(msg.data)
        if isinstance(event, ApprovalRequested):
            await approvals.send(event)
        elif event.task_id in ledger.kinds:
            ledger.ended.setdefault(event.task_id, isinstance(event, TaskCompleted))

    for tag in ("task_completed", "task_failed", "approval_requested"):
        await nc.subscribe(subjects.events("*", tag), cb=on_event)
    await nc.flush()


async def until_ready(client: CrewbusClient, ledger: Ledger, run: str) -> None:
    """One plain task through the whole stack before the clock starts (not counted)."""
    started = time.monotonic()
    accepted = await client.submit(SubmitTask(text="Soak warm-up", idempotency_key=f"soak-{run}"),
                                   timeout_s=120)
    with anyio.fail_after(180):
        while accepted.task_id not in ledger.ended:
            ledger.kinds[accepted.task_id] = "plain"
            await anyio.sleep(0.1)
    del ledger.kinds[accepted.task_id], ledger.ended[accepted.task_id]
    print(f"stack ready: the warm-up task took {time.monotonic() - started:.1f}s", flush=True)


async def submit_steadily(client: CrewbusClient, ledger: Ledger, run: str, rate: float,
                          duration_s: float, max_in_flight: int) -> None:
    start = time.monotonic()
    i = 0
    while (due := start + i / rate) < start + duration_s:
        await anyio.sleep(max(0.0, due - time.monotonic()))
        while ledger.in_flight >= max_in_flight:
            await anyio.sleep(0.05)
        task = task_for(i, run)
        accepted = await client.submit(task, timeout_s=60)
        ledger.kinds[accepted.task_id] = kind_of(i)
        i += 1


async def sample(start: float, ledger: Ledger, children: dict[str, subprocess.Popen[bytes]],
                 nc: NATS) -> Sample:
    pids = {name: p.pid for name, p in children.items()}
    js_bytes, js_msgs = await js_storage(nc)
    return Sample(at_s=time.monotonic() - start, done=len(ledger.ended),
                  rss_mb={n: rss_mb(pid) for n, pid in pids.items()},
                  fds={n: open_files(pid) for n, pid in pids.items()},
                  js_bytes=js_bytes, js_msgs=js_msgs)


async def count_replanned(client: CrewbusClient, ledger: Ledger) -> tuple[int, int]:
    """How many of the re-planned tasks that completed went through two rounds (their state)."""
    ids = [t for t, k in ledger.kinds.items() if k == "replanned" and ledger.ended.get(t)]
    two = 0
    for task_id in ids:
        state = await client.state(task_id)
        two += state is not None and len(state.rounds) == 2
    return two, len(ids)


def died(children: dict[str, subprocess.Popen[bytes]]) -> list[str]:
    return [name for name, p in children.items() if p.poll() is not None]


SHORT = {"orchestrator": "orch", "memory": "mem", "planner": "plan", "researcher": "res",
         "executor": "exec", "critic": "crit", "gateway": "gw", "nats-server": "nats"}


def print_sample(s: Sample, ledger: Ledger) -> None:
    rss = " ".join(f"{SHORT.get(n, n)} {v:.0f}" for n, v in s.rss_mb.items())
    fds = " ".join(f"{SHORT.get(n, n)} {v}" for n, v in s.fds.items())
    print(f"[{s.at_s / 60:5.1f} min] tasks {s.done} done, {ledger.in_flight} in flight, "
          f"{ledger.approved + ledger.denied} approvals | RSS MB: {rss} | fds: {fds} | "
          f"JetStream {s.js_bytes / 1e6:.2f} MB in {s.js_msgs} msgs", flush=True)


def print_report(samples: list[Sample], ledger: Ledger, warmup: int) -> None:
    names = list(samples[0].rss_mb)
    print("\nSamples (RSS in MB, open files; JetStream storage of every stream):")
    header = ["min", "tasks"] + [f"{SHORT.get(n, n)} MB" for n in names] + \
             [f"{SHORT.get(n, n)} fds" for n in names] + ["JS MB", "JS msgs"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for s in samples:
        row = [f"{s.at_s / 60:.1f}", str(s.done), *(f"{s.rss_mb[n]:.1f}" for n in names),
               *(str(s.fds[n]) for n in names), f"{s.js_bytes / 1e6:.2f}", str(s.js_msgs)]
        print("| " + " | ".join(row) + " |")
    if warmup >= len(samples) - 1:
        print("\nend/start ratios: not enough samples after the warm-up")
        return
    first, last = samples[warmup], samples[-1]
    print(f"\nend/start ratios (start = the sample at {first.at_s / 60:.1f} min, after the "
          f"warm-up; end = {last.at_s / 60:.1f} min; {last.done - first.done} tasks between):")
    for n in names:
        print(f"  {n:<13} RSS {last.rss_mb[n] / first.rss_mb[n]:.3f} "
              f"({first.rss_mb[n]:.1f} -> {last.rss_mb[n]:.1f} MB)   "
              f"fds {last.fds[n] / max(first.fds[n], 1):.3f} ({first.fds[n]} -> {last.fds[n]})")
    grown = last.js_bytes - first.js_bytes
    per_task = grown / max(last.done - first.done, 1)
    print(f"  JetStream     storage {last.js_bytes / max(first.js_bytes, 1):.3f} "
          f"({first.js_bytes / 1e6:.2f} -> {last.js_bytes / 1e6:.2f} MB; "
          f"{per_task / 1e3:.1f} kB per task, the retained events, states and traces)")


async def soak(args: argparse.Namespace) -> int:
    run = time.strftime("%H%M%S")
    ledger = Ledger()
    samples: list[Sample] = []
    replanned = (0, 0)
    model = SoakModel()
    model_url = await model.start()
    with tempfile.TemporaryDirectory(prefix="crewbus-soak-") as tmp:
        root = Path(tmp)
        async with stack(root, model_url) as (server, children):
            watched = {**children}
            assert server.process is not None
            nc = await nats.connect(server.url)
            client = CrewbusClient(nc)
            send, receive = anyio.create_memory_object_stream[ApprovalRequested](1000)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(resolve_approvals, client, ledger, receive)
                    await watch_events(nc, ledger, send)
                    await until_ready(client, ledger, run)
                    start = time.monotonic()
                    watched_all = {**watched, "nats-server": server.process}
                    tg.start_soon(submit_steadily, client, ledger, run, args.rate,
                                  args.duration_s, args.max_in_flight)
                    next_at = start + args.sample_s
                    while next_at <= start + args.duration_s + 0.01:
                        await anyio.sleep(max(0.0, next_at - time.monotonic()))
                        next_at += args.sample_s
                        if died(watched):
                            break
                        samples.append(await sample(start, ledger, watched_all, nc))
                        print_sample(samples[-1], ledger)
                        model.forget()
                    with anyio.move_on_after(DRAIN_S):
                        while ledger.in_flight and not died(watched):
                            await anyio.sleep(0.2)
                    tg.cancel_scope.cancel()
                replanned = await count_replanned(client, ledger)
            finally:
                await nc.close()
            dead = died(watched)
            if dead or not samples:
                for name in dead or watched:
                    log = (root / "logs" / f"{name}.log").read_text(errors="replace")
                    print(f"--- {name}.log\n{log[-2000:]}", file=sys.stderr)
    await model.stop()
    if samples:
        after = [i for i, x in enumerate(samples) if x.at_s >= args.warmup_s - 0.5]
        print_report(samples, ledger, warmup=after[0] if after else len(samples))
    lost = ledger.in_flight
    wrong = ledger.wrong()
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(Counter(ledger.kinds.values()).items()))
    print(f"\ntasks: {len(ledger.kinds)} submitted ({kinds}), "
          f"{len(ledger.ended)} ended, lost {lost}, wrong outcome {len(wrong)}; approvals: "
          f"{ledger.approved} approved, {ledger.denied} denied, {ledger.refused} refused")
    print(f"re-planned tasks with two rounds in their state: {replanned[0]} of {replanned[1]}")
    if dead:
        print(f"services that died: {', '.join(dead)}")
    return 1 if lost or wrong or dead or not samples or replanned[0] < replanned[1] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="how long the load runs (default 10)")
    length.add_argument("--seconds", type=float, help="how long the load runs, in seconds")
    parser.add_argument("--rate", type=float, default=1.0, help="tasks submitted per second")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--warmup-s", type=float, default=60.0,
                        help="the ratios start at the first sample this long into the load")
    parser.add_argument("--max-in-flight", type=int, default=40,
                        help="submit no more while this many tasks are unfinished")
    args = parser.parse_args(argv)
    args.duration_s = args.seconds if args.seconds else (args.minutes or 10.0) * 60
    return anyio.run(soak, args)


if __name__ == "__main__":
    sys.exit(main())

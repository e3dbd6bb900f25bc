"""The agreement check of issue 17: does what a client is told about a finished task (its
terminal event) say what the task's stored state says?

Shared by tests/test_agreement.py (short form, asserted in CI) and bench/agreement.py
(figures, with kills and a nats-server restart). Everything is a real OS process on
127.0.0.1: nats-server, the simulated model over HTTP at zero latency, the orchestrator
(two replicas unless told otherwise), the memory service and one replica of each agent:
the layout `crewbus up` runs, plus a second orchestrator.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy

from crewbus import settings as settings_mod
from crewbus.bus.connection import server_list
from crewbus.bus.topology import ensure_topology
from crewbus.client import CrewbusClient
from crewbus.devstack.cluster import CLUSTER_REPLICAS, NatsCluster, wait_for_jetstream
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.devstack.processes import spawn_crewbus
from crewbus.memory.client import MemoryClient, MemoryClientError
from crewbus.service_names import BUS_SERVICES
from crewbus.settings import BusSettings
from crewbus.taskstore import TaskStore
from crewbus_contracts import (
    AGENT_ROLES,
    TERMINAL_KINDS,
    SubmitTask,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskState,
    TerminalEvent,
    subjects,
)
from tests.stack import service_env, wait_for_port

SERVICES = BUS_SERVICES
"""What `crewbus up` runs besides nats-server and the simulated model; any may be killed."""

Terminal = TerminalEvent
_terminal_decoder: msgspec.json.Decoder[Terminal] = msgspec.json.Decoder(Terminal)
_TERMINAL_KINDS = set(TERMINAL_KINDS)
_STATUS_OF = {TaskCompleted: "completed", TaskFailed: "failed", TaskCancelled: "cancelled"}
_MAX_EXAMPLES = 8


Disruption = Callable[[Callable[[], int], int], Coroutine[Any, Any, None]]
"""Something done to the stack during a run, given the count of final tasks (a function)
and the number of tasks: it waits on the first to act mid-load."""

DEFAULT_REPLICAS = {"orchestrator": 2}
START_TIMEOUT_S = 180.0
"""Nine processes importing at once on 2 cores: 60 s was not enough at load 20 (a wait on
a condition, so an idle machine pays nothing for the margin)."""
"""Two orchestrators, as a scaled deployment runs them ("any replica can continue any
task"). With one, this machine showed no disagreement in 200 tasks; with two, 8-11 of 20."""


class ProcessStack:
    """The whole stack as separate processes, with the tests' fast redelivery timers
    (tests/stack.py FAST) so that work held by a killed process comes back in seconds.
    `replicas` starts more than one process of a service (not memory: its store is
    embedded and belongs to one process)."""

    def __init__(self, root: Path, replicas: Mapping[str, int] = DEFAULT_REPLICAS,
                 cluster: NatsCluster | None = None,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.root = root
        self.start_timeout_s = start_timeout_s
        self.cluster = cluster
        """With a cluster, the services get every node's URL and streams at replicas 3."""
        self.nats = NatsServer(root / "nats") if cluster is None else cluster.nodes[0]
        self.url = self.nats.url if cluster is None else cluster.url
        self.model_port = free_port()
        self.env = service_env(self.url, f"http://127.0.0.1:{self.model_port}/v1")
        self.env["CREWBUS_DATA_DIR"] = str(root)  # memory store and tool workspaces
        if cluster is not None:
            self.env["CREWBUS_STREAM_REPLICAS"] = str(CLUSTER_REPLICAS)
        counts = {service: 1 for service in SERVICES} | dict(replicas)
        if set(counts) != set(SERVICES) or counts["memory"] != 1:
            raise ValueError(f"replicas of {', '.join(SERVICES)}; memory runs once: {replicas}")
        self.service_of = {_instance(s, k): s for s, n in counts.items() for k in range(n)}
        """Instance name (`orchestrator`, `orchestrator-2`, ...) -> service."""
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._spawned = 0
        self._nc: NATS | None = None

    @property
    def nc(self) -> NATS:
        assert self._nc is not None, "stack not started"
        return self._nc

    async def __aenter__(self) -> ProcessStack:
        try:
            await self.start(self.start_timeout_s)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Every process started and ready: tasks submitted next meet every replica."""
        # On the main thread, so nats-server dies with this process.
        if self.cluster is None:
            self.nats.start()
        else:
            self.cluster.start()
            await wait_for_jetstream(self.url, timeout_s)
        # Reconnect for as long as it takes: one run restarts nats-server on purpose.
        self._nc = await nats.connect(
            server_list(self.url), max_reconnect_attempts=-1, reconnect_time_wait=0.25,
            error_cb=_expected_during_restarts,
        )
        await ensure_topology(self.nc.jetstream(), settings_mod.load(BusSettings, env=self.env))
        self._spawn("simulated-model", "simulated-model", "--port", str(self.model_port))
        for name, service in self.service_of.items():
            self._spawn(name, service)
        with anyio.fail_after(timeout_s):
            await wait_for_port(self.model_port, self.children["simulated-model"], timeout_s)
            while not all(self._says_ready(name) for name in self.service_of):
                await anyio.sleep(0.1)
            while True:  # agents recall memory; let it open its store first
                try:
                    await MemoryClient(self.nc, timeout_s=2).stats()
                    break
                except MemoryClientError:
                    await anyio.sleep(0.1)

    def _says_ready(self, name: str) -> bool:
        """`crewbus serve` logs "<role> ready on <url>" once connected and consuming."""
        if self.children[name].poll() is not None:
            raise RuntimeError(f"{name} exited at start-up; see {self.logs[name]}")
        if self.service_of[name] == "memory":
            return True  # answers stats when ready, checked next
        return " ready on " in self.logs[name].read_text(errors="replace")

    def _spawn(self, name: str, service: str, *args: str) -> None:
        """Spawned on the event loop's thread: the child's PR_SET_PDEATHSIG follows the
        spawning thread, so a child made in a worker thread would die with that thread."""
        self._spawned += 1
        self.logs[name] = self.root / "logs" / f"{name}-{self._spawned}.log"
        self.children[name] = spawn_crewbus(["serve", service, *args], self.env, self.logs[name])

    def instances(self, services: Sequence[str]) -> list[str]:
        return [name for name, service in self.service_of.items() if service in services]

    def kill_and_restart(self, name: str) -> None:
        """kill -9, reap, start a fresh process of the same service."""
        doomed = self.children[name]
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        self._spawn(name, self.service_of[name])

    async def kill_and_restart_nats(self) -> None:
        """kill -9 nats-server and start it again on the same port and store."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.nats.kill)
            self.nats.start()  # on the main thread, so nats-server dies with this process

    def exited(self) -> list[str]:
        """Services that are not running although nobody killed them last."""
        return [name for name, p in self.children.items() if p.poll() is not None]

    async def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL whoever is left after `grace_s`: an agent sometimes
        ignores SIGTERM for more than 15 s (seen with the critic and the executor), which
        is not what this suite measures."""
        if self._nc is not None:
            await self._nc.close()
        running = [p for p in self.children.values() if p.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        with anyio.move_on_after(grace_s):
            while any(p.poll() is None for p in running):
                await anyio.sleep(0.05)
        for p in running:
            if p.poll() is None:
                p.kill()
            p.wait()
        await anyio.to_thread.run_sync(self.nats.stop if self.cluster is None
                                       else self.cluster.stop)


@dataclass
class Figures:
    """One run's outcome. Problems: lost, missing_event, disagreeing, duplicated,
    status_disagreeing, wait_disagreeing. `examples` says what went wrong, per task."""

    tasks: int
    tasks_with_problems: int = 0
    """Tasks counted in at least one of the problem figures."""
    kills: int = 0
    nats_restarts: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    """No final state within the time bound."""
    missing_event: int = 0
    """Final state, but no terminal event in CREWBUS_EVENTS."""
    disagreeing: int = 0
    """A terminal event whose status, answer, score or verdict (or error code) is not the
    stored state's, or whose answer is empty."""
    duplicated: int = 0
    """More than one terminal event for the task."""
    status_disagreeing: int = 0
    """`crewbus status` (CrewbusClient.state) does not show the stored state."""
    wait_disagreeing: int = 0
    """`crewbus submit --wait` (the first terminal event via CrewbusClient.events) would
    print something other than the stored state, or never return."""
    empty_in_state: int = 0
    """Completed with an empty answer in the stored state itself (a stale decision saved);
    counted in `disagreeing` too, since the event then has it empty or differs."""
    exited: int = 0
    """Services found dead at the end that were not killed on purpose."""
    settled: bool = True
    """Work and result queues drained before the final reading."""
    wall_s: float = 0.0
    """First submission until every task was final (or the time bound)."""
    seed: int = 0
    replicas: dict[str, int] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def note(self, task_id: str, what: str) -> None:
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"{task_id}: {what}")

    def report(self) -> str:
        lines = [
            f"tasks               {self.tasks}",
            f"tasks w/ problems   {self.tasks_with_problems}",
            f"kills               {self.kills}",
            f"nats restarts       {self.nats_restarts}",
            f"completed           {self.completed}",
            f"failed              {self.failed}",
            f"lost                {self.lost}",
            f"missing event       {self.missing_event}",
            f"disagreeing         {self.disagreeing}",
            f"duplicated          {self.duplicated}",
            f"status disagreeing  {self.status_disagreeing}",
            f"wait disagreeing    {self.wait_disagreeing}",
            f"empty in state      {self.empty_in_state}",
            f"services exited     {self.exited}",
            f"queues settled      {'yes' if self.settled else 'no'}",
            f"wall time           {self.wall_s:.1f} s",
            f"seed                {self.seed}",
            f"replicas            {', '.join(f'{s}={n}' for s, n in self.replicas.items())}",
        ]
        if self.killed:
            lines.append(f"killed              {', '.join(self.killed)}")
        lines += [f"  e.g. {example}" for example in self.examples]
        return "\n".join(lines)


async def run_agreement(
    stack: ProcessStack, tasks: int, kills: int = 0, nats_restart: bool = False,
    timeout_s: float = 120.0, settle_s: float = 20.0, seed: int | None = None,
    victims: Sequence[str] = SERVICES, disruption: Disruption | None = None,
) -> Figures:
    """Submit `tasks` at once; kill -9 (and restart) `kills` random services and, with
    `nats_restart`, nats-server once, at random points of the run; run `disruption` (the
    cluster test's node kill, say) alongside; then compare, for every task, its terminal
    events with its stored state."""
    seed = random.randrange(2**31) if seed is None else seed
    rng = random.Random(seed)
    figures = Figures(tasks=tasks, seed=seed, replicas=dict(Counter(stack.service_of.values())))
    client = CrewbusClient(stack.nc)
    store = TaskStore(await stack.nc.jetstream().key_value(subjects.TASKS_KV))
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    deadline = started + timeout_s
    accepted: dict[int, str] = {}

    async def submit(i: int) -> None:
        accepted[i] = (await client.submit(_task(run, i), timeout_s=30)).task_id

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(tasks):
                tg.start_soon(submit, i)
    ids = [accepted[i] for i in range(tasks)]
    final: set[str] = set()

    def finished() -> int:
        return len(final)

    async with anyio.create_task_group() as tg:
        if kills:
            tg.start_soon(_kill_services, stack, figures, kills, victims, rng, finished, ids)
        if nats_restart:
            tg.start_soon(_restart_nats, stack, figures, rng, finished, ids)
        disrupted = anyio.Event()
        if disruption is not None:
            async def disrupt(run: Disruption) -> None:
                await run(finished, len(ids))
                disrupted.set()

            tg.start_soon(disrupt, disruption)
        await _wait_final(store, ids, final, deadline)
        figures.wall_s = time.monotonic() - started
        if disruption is not None:  # a fast run may end before the disruption has: let it
            with anyio.move_on_after(max(deadline - time.monotonic(), 30.0)):
                await disrupted.wait()
        tg.cancel_scope.cancel()  # kills still due (only at the time bound, tasks lost)
    figures.settled = await _settle(stack.nc, settle_s)
    figures.exited = len(stack.exited())
    await _compare(client, store, ids, figures, settle_s)
    return figures


async def _expected_during_restarts(exc: Exception) -> None:
    """nats-py logs every failed reconnect with a traceback by default; a restart of
    nats-server here is deliberate."""


def _instance(service: str, k: int) -> str:
    return service if k == 0 else f"{service}-{k + 1}"


def _task(run: str, i: int) -> SubmitTask:
    return SubmitTask(
        text=f"Agreement check {run} #{i}: compare two ways to keep task state durable",
        idempotency_key=f"agreement-{run}-{i}",
    )


async def _wait_final(store: TaskStore, ids: list[str], final: set[str], deadline: float) -> None:
    """Read the unfinished tasks' states until all are final or the deadline passes."""
    while len(final) < len(ids) and time.monotonic() < deadline:
        for task_id in ids:
            if task_id in final:
                continue
            try:
                with anyio.fail_after(5):
                    found = await store.get(task_id)
            except Exception:  # nats-server restarting
                break
            if found is not None and found[0].is_final:
                final.add(task_id)
        await anyio.sleep(0.1)


async def _until(finished: Callable[[], int], at_least: float) -> None:
    while finished() < at_least:
        await anyio.sleep(0.05)


async def _kill_services(
    stack: ProcessStack, figures: Figures, kills: int, victims: Sequence[str],
    rng: random.Random, finished: Callable[[], int], ids: list[str],
) -> None:
    """Each kill waits for a random number of tasks to finish, so kills land while tasks
    run; the first comes early. Kills still due when every task is final are skipped.
    Services are taken in a random order, each once before any is taken again; the
    process killed is a random replica of the service."""
    n = len(ids)
    points = sorted([rng.uniform(0, 0.2 * n)] + [rng.uniform(0, 0.7 * n) for _ in range(kills - 1)])
    order = list(victims)
    rng.shuffle(order)
    for i, point in enumerate(points):
        await _until(finished, point)
        if finished() >= n:
            return
        victim = rng.choice(stack.instances([order[i % len(order)]]))
        stack.kill_and_restart(victim)
        figures.kills += 1
        figures.killed.append(victim)
        await anyio.sleep(rng.uniform(0.1, 0.5))


async def _restart_nats(
    stack: ProcessStack, figures: Figures, rng: random.Random, finished: Callable[[], int],
    ids: list[str],
) -> None:
    point = rng.uniform(0.1, 0.5) * len(ids)
    await _until(finished, point)
    if finished() < len(ids):
        await stack.kill_and_restart_nats()
        figures.nats_restarts += 1


async def _settle(nc: NATS, timeout_s: float) -> bool:
    """Until no work, result or submission is pending or unacked, so no process still
    holds an input that could change a task. False if that did not happen in time."""
    js = nc.jetstream()
    consumers = [(subjects.WORK_STREAM, subjects.worker_consumer(r)) for r in AGENT_ROLES]
    consumers += [(subjects.RESULTS_STREAM, subjects.ORCHESTRATOR_RESULTS_CONSUMER),
                  (subjects.TASKS_STREAM, subjects.ORCHESTRATOR_TASKS_CONSUMER)]
    with anyio.move_on_after(timeout_s):
        while True:
            try:
                infos = [await js.consumer_info(s, c) for s, c in consumers]
            except Exception:  # not reconnected yet
                infos = []
            if infos and all(not i.num_pending and not i.num_ack_pending for i in infos):
                return True
            await anyio.sleep(0.2)
    return False


async def terminal_events(nc: NATS, timeout_s: float = 30.0) -> dict[str, list[Terminal]]:
    """Every task_completed / task_failed / task_cancelled in CREWBUS_EVENTS, by task."""
    js = nc.jetstream()
    found: dict[str, list[Terminal]] = {}
    if (await js.stream_info(subjects.EVENTS_STREAM)).state.messages == 0:
        return found
    sub = await js.subscribe(subjects.events("*"), ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    try:
        with anyio.fail_after(timeout_s):
            async for msg in sub.messages:
                _, _, task_id, kind = msg.subject.split(".")
                if kind in _TERMINAL_KINDS:
                    found.setdefault(task_id, []).append(_terminal_decoder.decode(msg.data))
                if msg.metadata.num_pending == 0:
                    break
    finally:
        await sub.unsubscribe()
    return found


async def first_terminal_event(client: CrewbusClient, task_id: str) -> Terminal | None:
    """What `crewbus submit --wait` / `crewbus watch` print: the first terminal event the
    client's event iterator yields (it reads the task's events from its first, and ends
    after that event, which closes its subscription)."""
    first: Terminal | None = None
    with anyio.move_on_after(10):
        async for event in client.events(task_id):
            if isinstance(event, Terminal) and first is None:
                first = event
    return first


def disagreement(event: Terminal, state: TaskState | None) -> str | None:
    """Why `event` does not tell what `state` holds, or None when it does."""
    kind = type(event).__struct_config__.tag
    if state is None or not state.is_final:
        return f"{kind} event, state {state.status if state else 'missing'}"
    if _STATUS_OF[type(event)] != state.status:
        return f"{kind} event, state {state.status}"
    if isinstance(event, TaskCompleted):
        if not event.result.answer:
            answer = state.result.answer if state.result else ""
            return f"empty answer in the event, {len(answer)} chars in the state"
        if state.result is None:
            return "completed without a result in the state"
        for name in ("answer", "score", "verdict"):
            told, stored = getattr(event.result, name), getattr(state.result, name)
            if told != stored:
                return f"{name} differs: event {told!r:.40}, state {stored!r:.40}"
    if isinstance(event, TaskFailed) and (state.error is None
                                          or state.error.code != event.error.code):
        return f"error {event.error.code}, state {state.error.code if state.error else None}"
    return None


def _summary(state: TaskState | None) -> tuple[object, ...]:
    if state is None:
        return (None,)
    result = state.result
    return (state.status, result and result.answer, result and result.score,
            result and result.verdict, state.error and state.error.code)


async def _compare(
    client: CrewbusClient, store: TaskStore, ids: list[str], figures: Figures, wait_s: float
) -> None:
    states: dict[str, TaskState | None] = {}
    for task_id in ids:
        found = await store.get(task_id)
        states[task_id] = found[0] if found else None
    final = {i for i, s in states.items() if s is not None and s.is_final}
    # A design that saves first and publishes after may publish a moment after the save.
    events = await terminal_events(client.nc)
    with anyio.move_on_after(wait_s):
        while not final <= events.keys():
            await anyio.sleep(0.5)
            events = await terminal_events(client.nc)
    for task_id in ids:
        before = _problem_count(figures)
        state = states[task_id]
        mine = events.get(task_id, [])
        if state is None or not state.is_final:
            figures.lost += 1
            figures.note(task_id, f"lost, state {state.status if state else 'missing'}")
        elif state.status == "completed":
            figures.completed += 1
            figures.empty_in_state += not (state.result and state.result.answer)
        elif state.status == "failed":
            figures.failed += 1
        if len(mine) > 1:
            figures.duplicated += 1
            figures.note(task_id, f"{len(mine)} terminal events")
        if not mine and state is not None and state.is_final:
            figures.missing_event += 1
            figures.note(task_id, f"state {state.status}, no terminal event")
        reasons = [r for r in (disagreement(e, state) for e in mine) if r]
        if reasons:
            figures.disagreeing += 1
            figures.note(task_id, reasons[0])
        if _summary(await client.state(task_id)) != _summary(state):
            figures.status_disagreeing += 1
            figures.note(task_id, "crewbus status shows another state")
        first = await first_terminal_event(client, task_id) if mine else None
        if first is None or disagreement(first, state):
            figures.wait_disagreeing += 1
            if mine and not reasons:
                figures.note(task_id, "crewbus submit --wait prints another outcome")
        figures.tasks_with_problems += _problem_count(figures) > before


def _problem_count(f: Figures) -> int:
    return (f.lost + f.missing_event + f.disagreeing + f.duplicated + f.status_disagreeing
            + f.wait_disagreeing)

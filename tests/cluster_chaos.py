"""Issue 14, point 3: kill -9 the leader of a stream of a 3-node JetStream cluster mid-load,
restart it, and count what was lost or repeated.

Shared by tests/test_cluster.py (short form, asserted) and bench/cluster_chaos.py (the full
50 tasks, figures). Everything is a real process on 127.0.0.1: three nats-servers routed
into one cluster (`crewbus.devstack.cluster`), every stream and bucket at replicas 3, and
the stack of tests/agreement.py (`ProcessStack`) connected to all three URLs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy

from crewbus.devstack.cluster import NatsCluster
from crewbus.devstack.nats_server import NatsServer
from crewbus_contracts import StepFinished, subjects
from tests.agreement import Disruption, Figures, ProcessStack, run_agreement

REPLICATED = (subjects.TASKS_STREAM, subjects.WORK_STREAM, subjects.RESULTS_STREAM,
              subjects.EVENTS_STREAM, f"KV_{subjects.TASKS_KV}")
"""The streams a task goes through; the restarted node must be current on each again."""
STEP_FINISHED = "step_finished"
_step_finished: msgspec.json.Decoder[StepFinished] = msgspec.json.Decoder(StepFinished)


@dataclass
class NodeKill:
    """What happened to the killed node, and how long the cluster took to get over it."""

    stream: str
    """The stream whose leader was killed."""
    at_final: float = 0.0
    """Tasks already final when the kill came (it waits for `at_fraction` of them)."""
    killed: str = ""
    """The server name of the killed node (`crewbus-<port>`)."""
    new_leader: str = ""
    new_leader_s: float = -1.0
    """kill -9 until the stream answered with another leader."""
    down_s: float = 0.0
    """How long the node stayed down (load ran on two nodes meanwhile)."""
    caught_up_s: float = -1.0
    """Restart until the node was a current replica of every stream in REPLICATED."""
    duplicated_steps: int = 0
    """Steps with more than one step_finished event: a result applied twice."""
    step_results: int = 0
    examples: list[str] = field(default_factory=list)

    def report(self) -> str:
        return "\n".join([
            f"killed node         {self.killed} (leader of {self.stream}, "
            f"after {self.at_final:.0f} tasks final)",
            f"new leader          {self.new_leader} after {self.new_leader_s:.2f} s",
            f"node down for       {self.down_s:.2f} s",
            f"restarted node current on {len(REPLICATED)} streams after "
            f"{self.caught_up_s:.2f} s",
            f"step results        {self.step_results}",
            f"duplicated steps    {self.duplicated_steps}",
            *(f"  e.g. {e}" for e in self.examples),
        ])


async def stream_leader(nc: NATS, stream: str, timeout_s: float = 30.0,
                        not_: str = "") -> str:
    """The server name leading `stream`, asked until one other than `not_` answers."""
    js = nc.jetstream(timeout=2)
    with anyio.fail_after(timeout_s):
        while True:
            try:
                leader = (await js.stream_info(stream)).cluster.leader  # type: ignore[union-attr]
            except Exception:  # no leader yet, or our connection moving to another node
                leader = None
            if leader and leader != not_:
                return leader
            await anyio.sleep(0.05)


async def wait_current(nc: NATS, node: str, streams: Sequence[str],
                       timeout_s: float = 60.0) -> None:
    """Until `node` leads or is a current replica of every one of `streams`."""
    js = nc.jetstream(timeout=2)
    with anyio.fail_after(timeout_s):
        for stream in streams:
            while True:
                try:
                    cluster = (await js.stream_info(stream)).cluster
                except Exception:
                    cluster = None
                if cluster is not None and (cluster.leader == node or any(
                        p.name == node and p.current for p in cluster.replicas or [])):
                    break
                await anyio.sleep(0.1)


def kill_leader(stack: ProcessStack, kill: NodeKill, at_fraction: float = 0.3,
                down_fraction: float = 0.2, max_down_s: float = 10.0) -> Disruption:
    """A `Disruption` for `run_agreement`: once `at_fraction` of the tasks are final, kill -9
    the leader of `kill.stream`, wait for a new leader, keep the node down while another
    `down_fraction` of the tasks finish (at most `max_down_s`), then restart it on its
    ports and store and wait until it is current again."""
    cluster = stack.cluster
    assert cluster is not None, "the stack runs on one nats-server"

    async def disrupt(finished: Callable[[], int], tasks: int) -> None:
        while finished() < at_fraction * tasks:
            await anyio.sleep(0.05)
        kill.at_final = finished()
        kill.killed = await stream_leader(stack.nc, kill.stream)
        node = cluster.node_named(kill.killed)
        killed_at = time.monotonic()
        await anyio.to_thread.run_sync(node.kill)
        kill.new_leader = await stream_leader(stack.nc, kill.stream, not_=kill.killed)
        kill.new_leader_s = time.monotonic() - killed_at
        with anyio.move_on_after(max_down_s):
            while finished() < min(tasks, kill.at_final + down_fraction * tasks):
                await anyio.sleep(0.05)
        kill.down_s = time.monotonic() - killed_at
        await _restart(node)
        restarted_at = time.monotonic()
        await wait_current(stack.nc, kill.killed, REPLICATED)
        kill.caught_up_s = time.monotonic() - restarted_at

    return disrupt


async def _restart(node: NatsServer) -> None:
    """On the event loop's (main) thread, so the node dies with this process; shielded, so
    a run that ends meanwhile does not leave it half started."""
    with anyio.CancelScope(shield=True):
        node.start()


async def count_step_results(nc: NATS, kill: NodeKill, timeout_s: float = 30.0) -> None:
    """Every step_finished in CREWBUS_EVENTS, counted per (task, round, step): more than one
    is a step result applied twice."""
    js = nc.jetstream()
    seen: Counter[str] = Counter()
    sub = await js.subscribe(subjects.events("*", STEP_FINISHED), ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    try:
        with anyio.fail_after(timeout_s):
            async for msg in sub.messages:
                step = _step_finished.decode(msg.data)
                seen[f"{step.task_id} round {step.round} step {step.step_id}"] += 1
                if msg.metadata.num_pending == 0:
                    break
    finally:
        await sub.unsubscribe()
    kill.step_results = sum(seen.values())
    repeated = [key for key, n in seen.items() if n > 1]
    kill.duplicated_steps = len(repeated)
    kill.examples += [f"{key}: {seen[key]} step_finished" for key in repeated[:5]]


async def run_cluster_chaos(root: Path, tasks: int, stream: str = subjects.RESULTS_STREAM,
                            timeout_s: float = 180.0, seed: int | None = None,
                            start_timeout_s: float = 180.0) -> tuple[Figures, NodeKill]:
    """A 3-node cluster and the whole stack; `tasks` submitted at once; the leader of
    `stream` killed mid-load and restarted; the agreement figures and the kill's."""
    kill = NodeKill(stream=stream)
    cluster = NatsCluster(root / "nats-cluster")
    async with ProcessStack(root, cluster=cluster, start_timeout_s=start_timeout_s) as stack:
        figures = await run_agreement(stack, tasks, timeout_s=timeout_s, seed=seed,
                                      disruption=kill_leader(stack, kill))
        await count_step_results(stack.nc, kill)
    return figures, kill

"""`crewbus shadow` at 50% on a live stack: the sampled tasks (picked by the hash of their
id) get a twin under the candidate variant; the client sees only its production task;
both sides accumulate, scored, in a pair of experiments `crewbus eval compare` reads; the
twins' side-effect tools never run; `shadow stop` stops new twins at once."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import anyio
import pytest

from crewbus.bus.topology import ensure_topology
from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.experiments import ExperimentStore
from crewbus.ids import task_id_for
from crewbus.llm.settings import LLMSettings
from crewbus.llm.simulated import SimulatedModel
from crewbus.replay.shadow import (
    Shadow,
    ShadowStore,
    sample_point,
    sampled,
    shadow_task_id,
    wants,
)
from crewbus.taskstore import TaskStore
from crewbus_agents.tools import ToolSettings
from crewbus_contracts import (
    SubmitTask,
    TaskCompleted,
    TaskLimits,
    TaskPlanned,
    TaskState,
    subjects,
)
from crewbus_contracts.shadow import ShadowConfig
from tests.cli_helpers import crewbus_here, ok
from tests.http_site import local_site
from tests.replay_helpers import CANDIDATE, make_candidate, planner, use
from tests.stack import connect, in_process_stack, orchestrator_settings

pytestmark = pytest.mark.anyio

ONE_ROUND = TaskLimits(max_rounds=1)


def keys(prefix: str, in_sample: bool, count: int) -> list[str]:
    """`count` idempotency keys whose tasks are (or are not) in a 50% sample."""
    found = []
    i = 0
    while len(found) < count:
        key = f"{prefix}-{i}"
        if sampled(task_id_for(key), 0.5) == in_sample:
            found.append(key)
        i += 1
    return found


async def run_production(client: CrewbusClient, key: str) -> tuple[str, list[object]]:
    """Submit a production task and read every event its client sees, to the end."""
    accepted = await client.submit(SubmitTask(text=f"Save the report {key}",
                                              idempotency_key=key, limits=ONE_ROUND))
    seen: list[object] = []
    with anyio.fail_after(60):
        async for event in client.events(accepted.task_id):
            seen.append(event)
    return accepted.task_id, seen


async def items_of(store: ExperimentStore, name: str, count: int) -> set[str]:
    """The item ids of `name`'s run items, once there are `count` of them."""
    with anyio.fail_after(60):
        while len(found := {r.item_id for r in await store.items(name)}) < count:
            await anyio.sleep(0.1)
    return found


def test_sampling_is_a_fixed_hash_of_the_task_id_at_the_given_rate() -> None:
    ids = [task_id_for(f"k{i}") for i in range(4000)]
    assert sample_point("t0") == sample_point("t0")
    assert min(map(sample_point, ids)) >= 0.0 and max(map(sample_point, ids)) < 1.0
    for rate in (0.1, 0.5):
        share = sum(sampled(t, rate) for t in ids) / len(ids)
        assert abs(share - rate) < 0.03, (rate, share)
    assert {t for t in ids if sampled(t, 0.1)} <= {t for t in ids if sampled(t, 0.5)}
    assert shadow_task_id("s", "t1") == shadow_task_id("s", "t1") != shadow_task_id("s", "t2")


async def test_a_half_shadow_pairs_sampled_tasks_invisibly_and_stops_on_stop(
    nats_server: NatsServer, model: SimulatedModel, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cmd = partial(crewbus_here, capsys)
    tools = ToolSettings(workspace_root=str(tmp_path / "ws"), requires_approval=frozenset(),
                         http_allowlist=["127.0.0.1"])
    url = nats_server.url
    with local_site() as site:
        def plans(task: str, candidate: bool) -> list[str]:
            if candidate:
                return [use("write_file", {"path": "shadow.txt", "content": "twin"}),
                        use("http_get", {"url": site.url("/shadow")}),
                        use("calculator", {"expression": "40+2"})]
            return [use("write_file", {"path": "report.txt", "content": "prod"})]

        model.script("planner", planner(plans))
        async with in_process_stack(url, model.base_url, tool_settings=tools) as client:
            await make_candidate(client)
            started = ok(await cmd("shadow", "start", "--variant", CANDIDATE, "--sample",
                                   "50%", "--name", "sh", "--nats", url))
            assert started.startswith("shadow sh: 50% of live tasks also run under variant "
                                      "candidate")
            chosen, others = keys("live", True, 3), keys("live", False, 3)
            results: dict[str, tuple[str, list[object]]] = {}

            async def one(key: str) -> None:
                results[key] = await run_production(client, key)

            async with anyio.create_task_group() as tg:
                for key in chosen + others:
                    tg.start_soon(one, key)
            store = await ExperimentStore.open(client.js)
            sampled_ids = {results[k][0] for k in chosen}
            candidate = await items_of(store, "sh", 3)
            baseline = await items_of(store, "sh-baseline", 3)
            compared = json.loads(ok(await cmd("eval", "compare", "sh-baseline", "sh",
                                               "--json", "--nats", url)))
            runs = await store.items("sh")
            twins = [await client.state(shadow_task_id("sh", t)) for t in sampled_ids]

            ok(await cmd("shadow", "stop", "--nats", url))
            after_stop = keys("late", True, 2)
            for key in after_stop:
                await run_production(client, key)
            status = json.loads(ok(await cmd("shadow", "status", "--json", "--nats", url)))
            late_twins = [await client.state(shadow_task_id("sh", task_id_for(k)))
                          for k in after_stop]

    # The client saw its own production task only: its events, its plan, its answer.
    for key, (task_id, events) in results.items():
        assert events and all(getattr(e, "task_id", task_id) == task_id for e in events)
        planned = [e for e in events if isinstance(e, TaskPlanned)]
        assert planned and all("shadow.txt" not in s.instruction
                               for e in planned for s in e.steps)
        final = events[-1]
        assert isinstance(final, TaskCompleted), (key, final)
        assert "report.txt" in final.result.answer and "shadow.txt" not in final.result.answer
    # Exactly the sampled tasks were shadowed; both sides are stored and scored.
    assert candidate == baseline == sampled_ids
    assert all(t is not None and t.variant == CANDIDATE and t.replay is not None
               and t.replay.mode == "shadow" for t in twins)
    assert all({s.name for s in r.scores} == {"critic", "no_error"} for r in runs)
    assert compared["comparison"]["pairs"] == 3
    # The twins' side effects never happened.
    assert list((tmp_path / "ws").rglob("shadow.txt")) == []
    assert "/shadow" not in site.requests
    assert len(list((tmp_path / "ws").rglob("report.txt"))) == 6 + len(after_stop)
    # Stopped: no twin for the sampled tasks that came after.
    assert status["shadow"]["status"] == "stopped" and status["shadow"]["shadow_tasks"] == 3
    assert status["pairs"] == 3 and late_twins == [None, None]


async def test_a_shadow_over_budget_stops_itself_and_not_production(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await connect(nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, orchestrator_settings(nats_server.url))
        shadows = await ShadowStore.open(js)
        await shadows.put(ShadowConfig(name="b", variant="production", sample_rate=1.0,
                                       started_at=0.0, budget_usd=0.01))
        shadow = Shadow(js, TaskStore(await js.key_value(subjects.TASKS_KV)), LLMSettings())
        async with anyio.create_task_group() as tg:
            await tg.start(shadow.run)
            await shadow.count_spend("b", 0.004)
            still = await shadow.current()
            await shadow.count_spend("b", 0.007)
            over = await shadow.current()
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    live = TaskState(task_id="t1", text="x", status="planning", limits=ONE_ROUND,
                     created_at=1.0, updated_at=1.0, deadline_at=9.0)
    assert still is not None and still.status == "active" and wants(still, live)
    assert over is not None and over.status == "budget_exceeded"
    assert over.spent_usd == pytest.approx(0.011) and "budget" in over.reason
    assert not wants(over, live)


async def test_a_watched_start_and_stop_take_effect_on_every_replica(
    nats_server: NatsServer,
) -> None:
    """Two orchestrator replicas' shadows: with none active a task start reads nothing, yet
    a shadow started after a task began (its `started_at` before the task's creation) still
    gets that task's twin; a stop holds at once, before any watch has brought it."""
    nc = await connect(nats_server.url)
    published: list[str] = []

    async def on_task(msg: object) -> None:
        published.append(msg.subject)  # type: ignore[attr-defined]

    def live(task_id: str, created_at: float) -> TaskState:
        return TaskState(task_id=task_id, text=f"task {task_id}", status="planning",
                         limits=ONE_ROUND, created_at=created_at, updated_at=created_at,
                         deadline_at=created_at + 60)

    async def shadow_tasks(count: int) -> None:
        with anyio.fail_after(30):
            while (found := await shadows.get()) is None or found[0].shadow_tasks < count:
                await anyio.sleep(0.05)

    try:
        js = nc.jetstream()
        await ensure_topology(js, orchestrator_settings(nats_server.url))
        await nc.subscribe(subjects.task("*"), cb=on_task)
        shadows = await ShadowStore.open(js)
        tasks = TaskStore(await js.key_value(subjects.TASKS_KV))
        a, b = (Shadow(js, tasks, LLMSettings()) for _ in range(2))
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            await tg.start(b.run)
            with anyio.fail_after(30):
                while not (a.watching and b.watching):
                    await anyio.sleep(0.05)
            now = time.time()
            await a.task_started(live("before", now - 10))  # older than the shadow: no twin
            await a.task_started(live("t1", now))  # no shadow yet as far as `a` knows
            await shadows.put(ShadowConfig(name="w", variant="production", sample_rate=1.0,
                                           started_at=now - 1))
            await shadow_tasks(1)  # `a`'s watch brought the start: t1's twin, late
            await b.task_started(live("t2", time.time()))
            await shadow_tasks(2)

            def stop(config: ShadowConfig) -> bool:
                config.status, config.stopped_at = "stopped", time.time()
                return True

            await shadows.update(stop)
            await a.task_started(live("t3", time.time()))  # read: stopped, whatever it watched
            with anyio.fail_after(30):
                while not all(s.watching and c is not None and c.status == "stopped"
                              for s, c in [(s, await s.known()) for s in (a, b)]):
                    await anyio.sleep(0.05)
            await b.task_started(live("t4", time.time()))  # watched: stopped, nothing read
            tg.cancel_scope.cancel()
        found = await shadows.get()
    finally:
        await nc.close()
    assert found is not None and found[0].shadow_tasks == 2
    assert sorted(published) == sorted(subjects.task(shadow_task_id("w", t))
                                       for t in ("t1", "t2"))

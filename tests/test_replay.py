"""`crewbus replay` on a live stack: recorded production tasks run again under a candidate
whose planner asks for other tool calls. The recorded calls are served from the trace, the
others are misses (counted in the trace and the metrics), tools with side effects never run
(no file written, no HTTP request made) even with new arguments, the originals stay as they
were, and `crewbus eval compare BASELINE CANDIDATE` reads the pair directly."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import anyio
import msgspec
import pytest
from prometheus_client import REGISTRY

from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimulatedModel
from crewbus.memory.client import MemoryClient
from crewbus.settings import BusSettings
from crewbus.tracing import read_trace
from crewbus_agents.tools import ToolSettings, workspace_for
from crewbus_contracts import SubmitTask, TaskCompleted, TaskLimits, TaskState
from tests.cli_helpers import crewbus_here, ok, one_line_error
from tests.http_site import local_site
from tests.replay_helpers import (
    CANDIDATE,
    MARKER,
    make_candidate,
    planner,
    use,
)
from tests.stack import connect, final_event, in_process_stack

pytestmark = pytest.mark.anyio

ONE_ROUND = TaskLimits(max_rounds=1)


def settled(state: TaskState | None) -> TaskState | None:
    """The state without its outbox (cleared once the final events are out)."""
    return None if state is None else msgspec.structs.replace(state, outbox=[])


async def remembered_task(memory: MemoryClient, task_id: str) -> None:
    """Until the finished task is in memory (it is written after its final event)."""
    with anyio.fail_after(30):
        while not any(h.task_id == task_id for h in await memory.search(
                "Task compute the sum", k=20, kind="task")):
            await anyio.sleep(0.1)


def replay_misses(outcome: str) -> float:
    value = REGISTRY.get_sample_value("crewbus_replay_tool_calls_total",
                                      {"mode": "replay", "match": "miss", "outcome": outcome})
    return value or 0.0


async def test_a_replay_serves_recorded_calls_blocks_side_effects_and_pairs_the_experiments(
    nats_server: NatsServer, model: SimulatedModel, memory: MemoryClient, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cmd = partial(crewbus_here, capsys)
    tools = ToolSettings(workspace_root=str(tmp_path / "ws"), requires_approval=frozenset(),
                         http_allowlist=["127.0.0.1"])
    with local_site() as site:
        def plans(task: str, candidate: bool) -> list[str]:
            if "Task B" in task:
                return [use("calculator", {"expression": "2+3"})]
            if not candidate:
                return [use("calculator", {"expression": "6*7"}),
                        use("write_file", {"path": "a.txt", "content": "one"}),
                        use("http_get", {"url": site.url("/original")})]
            return [use("calculator", {"expression": "6*7"}),          # recorded: hit
                    use("write_file", {"content": "one", "path": "a.txt"}),  # same, reordered
                    use("write_file", {"path": "new.txt", "content": "two"}),  # side effect
                    use("http_get", {"url": site.url("/candidate")}),    # calls out
                    use("calculator", {"expression": "1+1"})]            # read-only: live

        model.script("planner", planner(plans))
        async with in_process_stack(nats_server.url, model.base_url,
                                    tool_settings=tools) as client:
            await make_candidate(client)
            originals = {}
            for text in ("Task A: compute the sum and save it", "Task B: compute the sum"):
                accepted = await client.submit(SubmitTask(text=text, limits=ONE_ROUND))
                assert isinstance(await final_event(client, accepted.task_id, 60), TaskCompleted)
                originals[text[:6]] = await client.state(accepted.task_id)
                await remembered_task(memory, accepted.task_id)  # B's planner recalls A
            task_a = originals["Task A"]
            assert task_a is not None and originals["Task B"] is not None
            a_file = workspace_for(tools, task_a.task_id) / "a.txt"
            assert a_file.read_text() == "one" and site.requests == ["/original"]
            blocked_before = replay_misses("blocked")

            out = ok(await cmd("replay", "--variant", CANDIDATE, "--name", "rp",
                               "--since", "1h", "--live-tools", "calculator", "--quiet",
                               "--nats", nats_server.url))
            compared = json.loads(ok(await cmd("eval", "compare", "rp-baseline", "rp",
                                               "--json", "--nats", nats_server.url)))
            after = {k: await client.state(s.task_id) for k, s in originals.items() if s}
            after = {k: settled(s) for k, s in after.items()}
            shown = json.loads(ok(await cmd("eval", "show", "rp", "--json",
                                            "--nats", nats_server.url)))
            replayed = {r["item_id"]: r["task_id"] for r in shown["run_items"]}
            spans = await read_trace(client.js, replayed[task_a.task_id])
            status = ok(await cmd("status", replayed[task_a.task_id], "--nats", nats_server.url))
            task_b = originals["Task B"]
            b_spans = await read_trace(client.js, replayed[task_b.task_id])
            remembered = await memory.search("Task compute the sum", k=20, kind="task")

    assert ("replay fidelity: tool calls 3 matched, 3 missed (50% matched): 2 blocked "
            "(side effects), 1 run live") in out, out
    assert "memory recalls 4 matched, 0 missed" in out
    assert "compare: crewbus eval compare rp-baseline rp" in out
    # Task B's planner recalled task A when it ran; its replay was served that recall.
    served = [hit["id"] for s in b_spans if s.kind == "memory"
              and s.attributes.get("crewbus.replay.match") == "hit" for hit in s.output["hits"]]
    assert f"{task_a.task_id}-task" in served
    candidate_prompts = [json.dumps(body) for agent, body in model.requests
                         if agent == "planner" and MARKER in json.dumps(body)
                         and "Task B" in json.dumps(body)]
    assert candidate_prompts and all(f"memory:{task_a.task_id}-task" in p
                                     for p in candidate_prompts)
    # A replay writes no memory: only the originals are remembered.
    assert {h.task_id for h in remembered} == {task_a.task_id, task_b.task_id}
    # Nothing with side effects ran: no new file anywhere, no request to the site.
    assert list((tmp_path / "ws").rglob("new.txt")) == []
    assert site.requests == ["/original"]
    assert a_file.read_text() == "one"
    assert not (workspace_for(tools, replayed[task_a.task_id]) / "a.txt").exists()
    assert replay_misses("blocked") - blocked_before == 2
    # The originals are untouched; the replays are other tasks, of the candidate variant.
    assert after == {k: settled(s) for k, s in originals.items()}
    assert set(replayed) == {s.task_id for s in originals.values() if s}
    assert not set(replayed.values()) & set(replayed)
    comparison = compared["comparison"]
    assert comparison["pairs"] == 2 and comparison["only_in_baseline"] == []
    assert {s["name"] for s in comparison["scorers"]} == {"critic", "no_error"}
    # The trace says what each call was: served, blocked, refused or run live.
    tool_spans = {(s.attributes["gen_ai.tool.name"], s.attributes.get("crewbus.replay.match"),
                   s.attributes.get("error.type")) for s in spans if s.kind == "tool"}
    assert tool_spans == {("calculator", "hit", None), ("write_file", "hit", None),
                          ("write_file", "miss", "replay_side_effect"),
                          ("http_get", "miss", "replay_side_effect"),
                          ("calculator", "miss", None)}
    assert shown["experiment"]["config"]["variant"] == CANDIDATE
    assert (f"replay of {task_a.task_id} (live tools: calculator; memory recorded)"
            in status)
    assert shown["experiment"]["config"]["metadata"]["crewbus.replay.tool_missed"] == "3"


async def test_replay_refuses_what_it_cannot_do_in_one_line(
    nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = partial(crewbus_here, capsys)
    one_line_error(await cmd("replay", "--variant", "x", "--since", "yesterday",
                             "--nats", nats_server.url), 2,
                   "crewbus replay: --since 'yesterday': give a number and a unit")
    one_line_error(await cmd("replay", "--variant", "x", "--filter", "colour=red",
                             "--nats", nats_server.url), 2, "unknown key 'colour'")
    nc = await connect(nats_server.url)
    await ensure_topology(nc.jetstream(), BusSettings(nats_url=nats_server.url))
    await nc.close()
    one_line_error(await cmd("replay", "--variant", "nosuch", "--nats", nats_server.url), 1,
                   "crewbus replay:", "'nosuch'")

"""Human feedback on a real stack: `crewbus feedback` stores a human score beside the
evaluators', a bad one gets a clear error, `crewbus dataset add --from-feedback` builds a
regression set from the low ones, and `crewbus eval report` groups failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import anyio
import msgspec
import pytest

from crewbus.client import CommandRefusedError, CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.datasets import DatasetStore
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.online.render import StatusScores
from crewbus.evals.online.scores import TaskScoreStore, score_key, task_score
from crewbus.evals.report import case_of_run, report
from crewbus.evals.runner import ExperimentRun, ExperimentRunner
from crewbus.evals.scorers.registry import build_scorers
from crewbus.evals.summary import summarise
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.llm.simulated_replies import default_reply
from crewbus_contracts import ErrorReply, SubmitTask, TaskState, subjects
from crewbus_contracts.evals import DatasetItem, ExperimentConfig, ItemInput, Score, ScorerSpec
from crewbus_contracts.feedback import Feedback, TaskScore
from tests.online_helpers import run_tasks
from tests.stack import in_process_stack

pytestmark = pytest.mark.anyio


async def crewbus(nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`crewbus ARGS` as a user runs it, in a child process (off this event loop)."""
    env = {**os.environ, "CREWBUS_NATS_URL": nats_url}
    return await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "crewbus", *args], env=env, capture_output=True, text=True,
        timeout=120))


async def test_feedback_round_trip_and_a_regression_set_built_from_it(
    nats_server: NatsServer, model_url: str,
) -> None:
    async with in_process_stack(nats_server.url, model_url, roles=["planner"]) as client:
        states = await run_tasks(client, [
            SubmitTask(text=f"Plan a garden, bed {i}", target="planner") for i in range(3)])
        low, high, other = (s.task_id for s in states)
        cli = await crewbus(nats_server.url, "feedback", low, "--score", "0.2", "--label",
                            "bad", "--comment", "missed the brief", "--by", "ann")
        accepted = await client.feedback(Feedback(task_id=high, score=0.9, label="good"))
        await client.feedback(Feedback(task_id=other, score=0.3, by="bob"))
        await client.feedback(Feedback(task_id=other, score=0.8, by="bob"))  # changed mind
        refusals = await _refusals(client, nats_server.url)
        built = await crewbus(nats_server.url, "dataset", "add", "from-people",
                              "--from-feedback", "--below", "0.5", "--since", "7d")
        again = await crewbus(nats_server.url, "dataset", "add", "from-people",
                              "--from-feedback", "--below", "0.5", "--since", "7d")
        lately = await crewbus(nats_server.url, "eval", "report", "--since", "1h", "--json")
        scores = await TaskScoreStore.open(client.js)
        stored = (await scores.of_task(low))[0]
        changed = await scores.of_task(other)
        version, items = await DatasetStore(client.js).items("from-people")
        judged = await _evaluator_score(client, states[0])
        status = await crewbus(nats_server.url, "status", low)
        status_json = await crewbus(nats_server.url, "status", low, "--json")
        low_state = await client.state(low)  # final and published: its outbox is empty now
    assert cli.returncode == 0, cli.stderr
    assert accepted.key == f"{high}.human.human"
    assert stored.source == "human" and stored.by == "ann" and stored.comment == \
        "missed the brief"
    assert stored.score.value == 0.2 and stored.score.label == "bad"
    assert stored.score.passed is False and stored.role == "planner"
    assert [s.score.value for s in changed] == [0.8]  # one score per person: the latest
    assert "Scores:" in status.stdout and "human (ann)" in status.stdout
    assert "quick" in status.stdout
    assert states[0].trace_id and f"trace {states[0].trace_id}" in status.stdout
    # --json: the state as stored (a TaskState reader still decodes it), and its scores.
    assert status_json.returncode == 0, status_json.stderr
    assert msgspec.json.decode(status_json.stdout, type=TaskState) == low_state
    shown = msgspec.convert(json.loads(status_json.stdout)["scores"], StatusScores)
    assert shown.evaluators == [judged] and shown.feedback == [stored]
    assert built.returncode == 0, built.stderr
    assert [item.id for item in items] == [low] and version.version == 1
    assert items[0].input.text == "Plan a garden, bed 0"
    assert items[0].metadata["trace_link"] == f"/ui/tasks/{low}/trace"
    assert items[0].metadata["feedback"][0]["comment"] == "missed the brief"
    assert again.returncode == 0 and "no new task" in again.stdout
    found = msgspec.json.decode(lately.stdout)
    assert (found["cases"], found["failed"]) == (3, 1)
    assert [(r["key"], r["count"], r["examples"]) for r in found["by_scorer"]] == [
        ("human", 1, [low])]
    assert refusals == {
        "unknown task": "not_found", "score 2": "invalid_message",
        "unknown field": "invalid_message", "not finished": "conflict",
        "not json": "malformed_json"}


async def _evaluator_score(client: CrewbusClient, state: TaskState) -> TaskScore:
    """An online evaluator's score of `state`, stored as the evaluator service stores it."""
    judged = task_score(state, Score(name="says_plan", type="boolean", scorer_version="1",
                                     value=1.0, passed=True), evaluator="quick")
    store = await TaskScoreStore.open(client.js)
    assert await store.create(score_key(state.task_id, "quick", "says_plan", "1"), judged)
    return judged


async def _refusals(client: CrewbusClient, nats_url: str) -> dict[str, str]:
    """The error code each bad feedback gets back, sent as raw JSON by any NATS client."""
    running = await client.submit(SubmitTask(text="A crew task no researcher will run"))
    raw = {
        "unknown task": {"type": "feedback", "task_id": "tnope", "score": 0.5},
        "score 2": {"type": "feedback", "task_id": running.task_id, "score": 2},
        "unknown field": {"type": "feedback", "task_id": running.task_id, "score": 1,
                          "stars": 5},
        "not finished": {"type": "feedback", "task_id": running.task_id, "score": 1},
    }
    codes = {}
    for name, body in raw.items():
        reply = await client.nc.request(subjects.FEEDBACK, msgspec.json.encode(body), timeout=30)
        codes[name] = msgspec.json.decode(reply.data, type=ErrorReply).code
    reply = await client.nc.request(subjects.FEEDBACK, b"{not json", timeout=30)
    codes["not json"] = msgspec.json.decode(reply.data, type=ErrorReply).code
    with pytest.raises(CommandRefusedError):
        await client.feedback(Feedback(task_id="tnope", score=0.5))
    return codes


def overloaded_on_box_3(body: dict[str, Any]) -> SimReply:
    if "box 3" in json.dumps(body):
        return SimReply(content="overloaded", status=503)
    return default_reply(body)


async def test_the_report_of_a_small_experiment_groups_its_failures(
    nats_server: NatsServer, model: SimulatedModel, model_url: str,
) -> None:
    model.script("planner", overloaded_on_box_3)
    items = [DatasetItem(id=f"i{n}", input=ItemInput(text=f"Plan a move, box {n}"),
                         expected="no plan says this") for n in range(4)]
    specs = [ScorerSpec(kind="no_error"), ScorerSpec(kind="exact")]
    config = ExperimentConfig(dataset="moves", dataset_version=1, scorers=specs,
                              target="planner")
    async with in_process_stack(nats_server.url, model_url, roles=["planner"]) as client:
        store = await ExperimentStore.open(client.js)
        runner = ExperimentRunner(client.nc, store, summarise)
        await runner.run(ExperimentRun("moves-1", config, items, build_scorers(specs)))
        runs = await store.items("moves-1")
        cases = [case_of_run(run, await client.state(run.task_id)) for run in runs]
        cli = await crewbus(nats_server.url, "eval", "report", "moves-1")
        cli_json = await crewbus(nats_server.url, "eval", "report", "moves-1", "--json")
        both = await crewbus(nats_server.url, "eval", "report", "moves-1", "--since", "1h")
    found = report("moves-1", cases)
    broken = next(run for run in runs if run.item_id == "i3")
    assert found.cases == 4 and found.failed == 4
    by_scorer = {row.key: (row.count, row.examples) for row in found.by_scorer}
    assert by_scorer["no_error"] == (1, [broken.task_id])
    assert by_scorer["exact"][0] == 4 and len(by_scorer["exact"][1]) == 3
    assert [(r.key, r.count) for r in found.by_code] == [
        ("failed_scores", 3), (str(broken.error_code), 1)]
    assert [(r.key, r.count) for r in found.by_role] == [("none", 3), ("planner", 1)]
    assert cli.returncode == 0, cli.stderr
    assert "failures in moves-1: 4 of 4" in cli.stdout and "by first failing step's role" \
        in cli.stdout
    assert msgspec.json.decode(cli_json.stdout)["by_scorer"][0]["key"] == "exact"
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1

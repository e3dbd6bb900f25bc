"""Experiments on a real nats-server with the in-process crew and the simulated model: the
store keeps one run item per (item, epoch), the runner sends each item through the bus as
a real task, scores it, and tells the rest of the platform (the EVALS stream and the
metric it feeds, an evaluation span with one event per score in the task's trace)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import anyio
import msgspec
import pytest
from nats.aio.client import Client as NATS

from crewbus.bus.kv_keys import kv_keys
from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.experiments import (
    ExperimentMismatchError,
    ExperimentStore,
    run_item_key,
)
from crewbus.evals.run_items import idempotency_key, run_item_of, submission
from crewbus.evals.runner import ExperimentRun, ExperimentRunner, unique_items
from crewbus.evals.scorers.base import Observation
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.telemetry import metrics
from crewbus.tracing import read_trace, start_tracer, task_trace_id
from crewbus_contracts import TaskLimits, TaskState, subjects
from crewbus_contracts.evals import (
    EPOCH_KEY,
    EXPERIMENT_KEY,
    ITEM_KEY,
    DatasetItem,
    EvaluationScored,
    Experiment,
    ExperimentConfig,
    ExperimentSummary,
    ItemInput,
    RunItem,
    Score,
    ScorerSpec,
    ScoreType,
    Threshold,
)
from crewbus_contracts.traces import EVALUATION_RESULT
from tests.stack import in_process_stack

pytestmark = pytest.mark.anyio

DATASET = "arith"


@dataclass
class Contains:
    """A scorer of the test's own (the `Scorer` protocol): the answer contains `needle`."""

    needle: str = "[simulated]"
    name: str = "says_simulated"
    type: ScoreType = "boolean"
    version: str = "test-1"
    seen: list[Observation] = field(default_factory=list)

    def applies_to(self, item: DatasetItem) -> bool:
        return True

    async def score(self, observation: Observation) -> Score:
        self.seen.append(observation)
        ok = self.needle in observation.answer
        return Score(name=self.name, type=self.type, scorer_version=self.version,
                     value=float(ok), passed=ok, explanation=f"looked for {self.needle!r}")


@dataclass
class CalledCalculator(Contains):
    """Reads the trajectory: declares it, so the runner reads each task's trace."""

    name: str = "used_calculator"
    needs_tool_calls: bool = True

    async def score(self, observation: Observation) -> Score:
        self.seen.append(observation)
        ok = any(c.name == "calculator" for c in observation.tool_calls)
        return Score(name=self.name, type=self.type, scorer_version=self.version,
                     value=float(ok), passed=ok)


@dataclass
class Broken(Contains):
    name: str = "broken"

    async def score(self, observation: Observation) -> Score:
        raise RuntimeError("scorer bug")


def item(id_: str, text: str = "What is 6 * 7?", **metadata: str) -> DatasetItem:
    return DatasetItem(id=id_, input=ItemInput(text=text, metadata=metadata), expected="42")


def config(target: str = "crew", epochs: int = 1, **changes: object) -> ExperimentConfig:
    base = ExperimentConfig(dataset=DATASET, dataset_version=1,
                            scorers=[ScorerSpec(kind="contains")], epochs=epochs,
                            target=target)  # type: ignore[arg-type]
    return msgspec.structs.replace(base, **changes)


def no_summary(runs: list[RunItem], scorers: object, thresholds: list[Threshold],
               expected: int) -> ExperimentSummary:
    """Stands in for `crewbus.evals.summary.summarise` where only the run items matter."""
    return ExperimentSummary(items_expected=expected, items_done=len(runs), items_errored=0,
                             passed=len(runs) == expected)


# -- the store --------------------------------------------------------------------------


async def store_on(nc: NATS) -> ExperimentStore:
    from crewbus.bus.topology import ensure_topology
    from crewbus.settings import BusSettings

    await ensure_topology(nc.jetstream(), BusSettings())
    return await ExperimentStore.open(nc.jetstream())


async def test_the_same_name_resumes_and_a_different_configuration_is_refused(nc: NATS) -> None:
    store = await store_on(nc)
    first, resumed = await store.start("e1", config())
    assert not resumed and first.status == "running"
    again, resumed = await store.start("e1", config(concurrency=2))
    assert resumed and again.config.concurrency == 2
    with pytest.raises(ExperimentMismatchError, match="dataset_version: 1 -> 2"):
        await store.start("e1", config(dataset_version=2))
    with pytest.raises(ExperimentMismatchError, match="epochs"):
        await store.start("e1", config(epochs=3))


async def test_a_run_item_is_stored_once_per_item_and_epoch(nc: NATS) -> None:
    store = await store_on(nc)
    await store.start("e2", config(epochs=2))
    odd_id = "item with spaces/and.dots*>"
    first = RunItem(experiment="e2", item_id=odd_id, status="completed", answer="one")
    assert await store.put_item(first)
    assert not await store.put_item(msgspec.structs.replace(first, answer="two"))
    assert await store.put_item(msgspec.structs.replace(first, epoch=1, answer="three"))
    other = await store.start("e2x", config())  # a name that starts like e2
    assert other[0].name == "e2x"
    await store.put_item(RunItem(experiment="e2x", item_id="z", status="failed"))
    items = await store.items("e2")
    assert [(r.item_id, r.epoch, r.answer) for r in items] == [(odd_id, 0, "one"),
                                                                 (odd_id, 1, "three")]
    assert run_item_key("e2", odd_id, 0).startswith("e2.items.")
    names = [e.name for e in await store.all()]
    assert names == ["e2", "e2x"]  # headers only, never run items


async def test_finishing_records_the_summary_and_the_roles(nc: NATS) -> None:
    store = await store_on(nc)
    await store.start("e3", config())
    summary = ExperimentSummary(items_expected=1, items_done=1, items_errored=0, passed=True)
    done = await store.finish("e3", summary, {"executor": "executor@v2"}, {"executor": "m"})
    stored = await store.require("e3")
    assert stored == done and stored.status == "finished" and stored.summary == summary
    assert stored.config.prompt_versions == {"executor": "executor@v2"}


def test_a_run_item_of_a_state_stored_before_trace_ids_links_the_derived_trace() -> None:
    state = TaskState(task_id="t-old", text="q", status="completed", limits=TaskLimits(),
                      created_at=1.0, updated_at=2.0, deadline_at=3.0)
    assert state.trace_id == ""  # as every state stored before the orchestrator filled it
    run = run_item_of("e-old", item("o1"), 0, state, 1.0, 2.0)
    assert run.trace_id == task_trace_id("t-old")


def test_duplicate_ids_run_once_and_are_reported() -> None:
    unique, duplicates = unique_items([item("a"), item("b"), item("a", "other")])
    assert [i.id for i in unique] == ["a", "b"] and duplicates == ["a"]


# -- the runner on the bus --------------------------------------------------------------


async def tasks_on_the_bus(client: CrewbusClient) -> list[str]:
    """Every task id in the tasks bucket (read from its stream's subjects: nats-py's
    `keys()` can answer before what the server sent it has arrived)."""
    return await kv_keys(client.js, subjects.TASKS_KV)


async def eval_messages(client: CrewbusClient, experiment: str, at_least: int
                        ) -> list[EvaluationScored]:
    """Every evaluation message of `experiment`, once `at_least` have come (a read that
    gave up after 2 s could come back short on a loaded machine) and none is pending."""
    sub = await client.js.subscribe(subjects.evals(experiment), ordered_consumer=True)
    found = []
    try:
        with anyio.fail_after(60):
            async for msg in sub.messages:
                found.append(msgspec.json.decode(msg.data, type=EvaluationScored))
                if len(found) >= at_least and msg.metadata.num_pending == 0:
                    break
    finally:
        await sub.unsubscribe()
    return found


async def test_an_item_runs_as_a_real_task_is_scored_stored_and_published(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    scorer, broken = Contains(), Broken()
    async with in_process_stack(nats_server.url, model_url) as client:
        store = await ExperimentStore.open(client.js)
        tracer = await start_tracer(client.js, "evaluator")
        runner = ExperimentRunner(client.nc, store, no_summary, tracer=tracer)
        run = ExperimentRun("e-run", config(), [item("q1")], [scorer, broken])
        await store.start(run.name, run.config)
        stored = await runner.run_one(run, run.items[0], 0)
        state = await client.state(stored.task_id)
        spans = await read_trace(client.js, stored.task_id)
        published = await eval_messages(client, "e-run", 1)
        kept = await store.items("e-run")
    assert state is not None and state.status == "completed"
    # The state names the trace its spans are in, and the run item links to it.
    assert state.trace_id and {s.trace_id for s in spans} == {state.trace_id}
    assert stored.trace_id == state.trace_id and kept[0].trace_id == state.trace_id
    assert state.metadata[EXPERIMENT_KEY] == "e-run" and state.metadata[ITEM_KEY] == "q1"
    assert state.metadata[EPOCH_KEY] == "0"
    assert stored.status == "completed" and stored.answer == state.result.answer  # type: ignore[union-attr]
    assert stored.tokens == state.spent_tokens > 0 and stored.rounds == 1
    assert stored.critic_score == state.result.score  # type: ignore[union-attr]
    assert set(stored.prompt_versions) == {"planner", "researcher", "executor", "critic"}
    assert stored.models["executor"] == "crewbus-simulated"
    assert stored.latency_s is not None and stored.latency_s > 0
    # Every score, the failing scorer's as an evaluation error (never a pass).
    assert [s.name for s in stored.scores] == ["says_simulated", "broken"]
    assert stored.scores[0].passed is True
    assert stored.scores[1].passed is False and "scorer bug" in (stored.scores[1].error or "")
    # Trajectory not read: no scorer asked for it.
    assert scorer.seen[0].tool_calls == [] and scorer.seen[0].state == state
    assert [p.item_id for p in published] == ["q1"] and published[0].scores == stored.scores
    assert published[0].role == "executor"
    assert published[0].prompt_version == stored.prompt_versions["executor"]
    evaluation = [s for s in spans if s.kind == "evaluation"]
    assert len(evaluation) == 1 and evaluation[0].name == "evaluation e-run"
    span = evaluation[0]
    assert span.status == "error" and "broken" in (span.error or "")
    assert [e.name for e in span.events] == [EVALUATION_RESULT] * 2
    first = span.events[0].attributes
    assert first["gen_ai.evaluation.name"] == "says_simulated"
    assert first["gen_ai.evaluation.score.value"] == 1.0
    assert first["gen_ai.evaluation.score.label"] == "pass"
    assert "[simulated]" in str(first["gen_ai.evaluation.explanation"])
    assert span.events[1].attributes["error.type"] == "scorer_error"
    task_span = next(s for s in spans if s.kind == "task")
    assert span.parent_span_id == task_span.span_id and span.trace_id == task_span.trace_id


async def test_the_orchestrator_process_records_the_eval_score_metric(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    async with in_process_stack(nats_server.url, model_url) as client:
        store = await ExperimentStore.open(client.js)
        runner = ExperimentRunner(client.nc, store, no_summary)
        run = ExperimentRun("e-metric", config(dataset="metric-ds"), [item("m1")],
                            [Contains(name="metric_scorer")])
        stored = await runner.run_one(run, run.items[0], 0)
        labels = {"scorer": "metric_scorer", "dataset": "metric-ds",
                  "prompt_version": stored.prompt_versions["executor"],
                  "variant": "production"}
        with anyio.fail_after(30):
            while metrics.registry().get_sample_value("crewbus_eval_score_count", labels) is None:
                await anyio.sleep(0.05)
    assert metrics.registry().get_sample_value("crewbus_eval_score_count", labels) == 1.0
    assert metrics.registry().get_sample_value("crewbus_eval_score_sum", labels) == 1.0
    passes = metrics.registry().get_sample_value(
        "crewbus_eval_results_total", {**labels, "outcome": "pass"})
    assert passes == 1.0


async def test_tool_calls_come_from_the_trace_when_a_scorer_needs_them(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    calls = json.dumps({"expression": "6 * 7"})
    model.script("executor", SimReply(tool_calls=[("calculator", calls)]),
                 SimReply(content="[simulated] 42"))
    scorer = CalledCalculator()
    async with in_process_stack(nats_server.url, model_url) as client:
        runner = ExperimentRunner(client.nc, await ExperimentStore.open(client.js), no_summary)
        run = ExperimentRun("e-tools", config(target="executor"), [item("t1")], [scorer])
        stored = await runner.run_one(run, run.items[0], 0)
    assert [c.name for c in stored.tool_calls] == ["calculator"]
    assert stored.tool_calls[0].ok and stored.scores[0].passed is True
    assert scorer.seen[0].tool_calls == stored.tool_calls


async def test_a_planner_target_runs_only_the_planner_and_keeps_its_plan(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    async with in_process_stack(nats_server.url, model_url) as client:
        runner = ExperimentRunner(client.nc, await ExperimentStore.open(client.js), no_summary)
        run = ExperimentRun("e-plan", config(target="planner"), [item("p1", "Plan a trip")],
                            [Contains(needle="researcher")])
        stored = await runner.run_one(run, run.items[0], 0)
        state = await client.state(stored.task_id)
    assert {agent for agent, _ in model.requests} == {"planner"}
    assert state is not None and state.target == "planner" and state.rounds[0].plan is not None
    assert stored.status == "completed" and stored.rounds == 1
    assert stored.output == msgspec.to_builtins(state.rounds[0].plan)
    assert json.loads(stored.answer) == stored.output and stored.scores[0].passed
    assert stored.critic_score is None and set(stored.prompt_versions) == {"planner"}


async def test_a_critic_target_judges_the_answer_given_by_the_item(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    low = {"score": 0.3, "verdict": "reject", "reasons": ["wrong number"], "suggestions": []}
    model.script("critic", SimReply(content=json.dumps(low)))
    async with in_process_stack(nats_server.url, model_url) as client:
        runner = ExperimentRunner(client.nc, await ExperimentStore.open(client.js), no_summary)
        judged = item("c1", "What is 6 * 7?", answer="41")
        run = ExperimentRun("e-critic", config(target="critic"), [judged],
                            [Contains(needle="reject")])
        stored = await runner.run_one(run, run.items[0], 0)
    assert {agent for agent, _ in model.requests} == {"critic"}
    critic_prompt = json.dumps(model.requests[0].body["messages"])
    assert "41" in critic_prompt
    assert stored.status == "completed" and stored.critic_score == 0.3
    assert stored.output["verdict"] == "reject" and stored.scores[0].passed is True


async def test_a_critic_item_without_an_answer_is_an_error_item_not_a_task(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    async with in_process_stack(nats_server.url, model_url) as client:
        runner = ExperimentRunner(client.nc, await ExperimentStore.open(client.js), no_summary)
        run = ExperimentRun("e-bad", config(target="critic"), [item("c2")], [Contains()])
        stored = await runner.run_one(run, run.items[0], 0)
        tasks = await tasks_on_the_bus(client)
    assert stored.status == "error" and stored.error_code == "invalid_item"
    assert "answer" in (stored.error_message or "") and tasks == []
    assert stored.scores[0].passed is False


async def test_a_whole_run_resumes_without_running_any_item_twice(
    nats_server: NatsServer, model: SimulatedModel, model_url: str
) -> None:
    """In process (the CLI-killed version is test_eval_cli.py): a run stopped after some
    items, then run again, stores each (item, epoch) once, from one task each."""
    items = [item(f"r{i}") for i in range(4)]
    async with in_process_stack(nats_server.url, model_url) as client:
        store = await ExperimentStore.open(client.js)
        run = ExperimentRun("e-resume", config(epochs=2), items, [Contains()])
        seen: list[tuple[int, int]] = []
        runner = ExperimentRunner(client.nc, store, no_summary,
                                  on_progress=lambda p: seen.append((p.done, p.passing)))
        await store.start(run.name, run.config)
        first = await runner.run_one(run, items[0], 0)
        # The task of (r1, 0) was submitted by a run that died before storing it.
        accepted = await client.submit(submission(run.name, run.config, items[1], 0))
        started = time.monotonic()
        experiment = await runner.run(run)
        runs = await store.items(run.name)
        tasks = await tasks_on_the_bus(client)
    assert isinstance(experiment, Experiment) and experiment.status == "finished"
    assert experiment.summary is not None and experiment.summary.passed
    assert len(runs) == 8 and len({(r.item_id, r.epoch) for r in runs}) == 8
    assert len(tasks) == 8 and {r.task_id for r in runs} == set(tasks)
    assert next(r for r in runs if (r.item_id, r.epoch) == ("r0", 0)) == first
    assert next(r for r in runs if (r.item_id, r.epoch) == ("r1", 0)).task_id == (
        accepted.task_id)
    assert seen[0] == (1, 1) and seen[-1] == (8, 8)
    assert time.monotonic() - started < 120
    assert idempotency_key("e-resume", "r1", 0) != idempotency_key("e-resume", "r1", 1)


def test_crewbus_trace_shows_each_score_under_the_evaluation_span() -> None:
    from crewbus.evals.publish import evaluation_event
    from crewbus.tracing.render import details, heading
    from crewbus_contracts.traces import Span

    scores = [Score(name="exact", type="boolean", scorer_version="1", value=0.0, passed=False,
                    explanation="expected '42', got '41'"),
              Score(name="judge", type="numeric", scorer_version="1", passed=False,
                    error="the judge's reply did not validate")]
    span = Span(trace_id="a" * 32, span_id="b" * 16, name="evaluation e1", kind="evaluation",
                task_id="t1", service="evaluator", start=1.0, end=1.5,
                attributes={"crewbus.eval.item": "q7", "crewbus.eval.epoch": 2},
                events=[evaluation_event(s, 1.5) for s in scores])
    assert "item q7 epoch 2" in heading(span)
    assert details(span) == [
        "score exact = 0 [fail]: expected '42', got '41'",
        "score judge = n/a [fail] error scorer_error: the judge's reply did not validate",
    ]

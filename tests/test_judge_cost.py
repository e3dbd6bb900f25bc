"""What evaluating costs, apart from what the tasks cost: the `llm_judge` scorer's tokens
and USD (priced by the agents' table, an unpriced model unknown, not zero) on each Score,
each run item and the experiment's summary; shown by `crewbus eval show`, exported, read
over HTTP and in the UI, and counted in `crewbus_eval_cost_usd` by the online evaluator.

Every figure is derived from what the simulated model reported over HTTP (the real openai
client): its usage is `estimate_tokens` of the request's messages and of the reply."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.compare import compare
from crewbus.evals.compare_render import render_comparison
from crewbus.evals.datasets import DatasetStore
from crewbus.evals.eval_render import show
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.online.scores import TaskScoreStore
from crewbus.evals.results_jsonl import rows_from_run_items
from crewbus.evals.runner import ExperimentRun, ExperimentRunner
from crewbus.evals.scorers.base import Observation
from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.registry import build_scorers
from crewbus.evals.summary import summarise
from crewbus.llm import LLMSettings, SimReply, SimulatedModel
from crewbus.llm.simulated import RecordedRequest
from crewbus.llm.simulated_replies import estimate_tokens
from crewbus.telemetry import metrics, pricing
from crewbus_contracts import SubmitTask
from crewbus_contracts.comparisons import ResultRow
from crewbus_contracts.evals import (
    DatasetItem,
    EvalUsage,
    Experiment,
    ExperimentConfig,
    ItemInput,
    RunItem,
    Score,
    ScorerSpec,
)
from tests.gateway_helpers import http_stack
from tests.online_helpers import evaluator_settings, run_tasks, running_evaluator, wait_keys
from tests.stack import in_process_stack

pytestmark = pytest.mark.anyio

PRICED = "judge-priced"
"""A judge model with a price in the test's table: $1 per million input tokens, $4 output."""
UNPRICED = "judge-unpriced"
IN_PRICE, OUT_PRICE = 1e-6, 4e-6
VERDICT = json.dumps({"score": 0.9, "label": "correct", "reasoning": "It says so."})


@pytest.fixture
def prices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The default price table with the priced judge model added (the agents' model,
    `crewbus-simulated`, keeps its price of 0)."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({PRICED: {"input_cost_per_token": IN_PRICE,
                                         "output_cost_per_token": OUT_PRICE}}))
    monkeypatch.setenv(pricing.PRICES_FILE_ENV, str(path))
    pricing.active_prices.cache_clear()
    yield
    monkeypatch.delenv(pricing.PRICES_FILE_ENV)
    pricing.active_prices.cache_clear()


def reported(request: RecordedRequest, reply: str) -> tuple[int, int]:
    """The (input, output) tokens the simulated model reported for one call."""
    return estimate_tokens(json.dumps(request.body["messages"])), estimate_tokens(reply)


def priced(input_tokens: int, output_tokens: int) -> float:
    return input_tokens * IN_PRICE + output_tokens * OUT_PRICE


def judged(model: SimulatedModel) -> list[RecordedRequest]:
    return [r for r in model.requests if r.agent == "judge"]


def observation(answer: str = "4") -> Observation:
    item = DatasetItem(id="i1", input=ItemInput(text="What is 2 + 2?"), expected="4")
    return Observation(item=item, status="completed", answer=answer)


def judge_context(model: SimulatedModel, judge_model: str) -> ScorerContext:
    return ScorerContext(judge=LLMSettings(base_url=model.base_url, model=judge_model,
                                           max_transport_retries=0))


async def judge_once(model: SimulatedModel, judge_model: str) -> Score:
    """One `llm_judge` score of `observation()` by `judge_model`."""
    async with judge_context(model, judge_model) as context:
        return await build_scorers([ScorerSpec(kind="llm_judge")], context)[0].score(
            observation())


# -- the Score --------------------------------------------------------------------------


async def test_a_judge_score_carries_the_tokens_and_usd_the_model_reported(
    model: SimulatedModel, prices: None
) -> None:
    model.script("judge", SimReply(content=VERDICT))
    score = await judge_once(model, PRICED)
    (request,) = judged(model)
    input_tokens, output_tokens = reported(request, VERDICT)
    assert score.error is None and score.value == 0.9
    assert score.usage == EvalUsage(input_tokens=input_tokens, output_tokens=output_tokens,
                                    calls=1, cost_usd=priced(input_tokens, output_tokens))
    assert input_tokens > 100 and output_tokens == len(VERDICT) // 4 + 1


async def test_a_reply_that_failed_validation_still_costs_every_attempt(
    model: SimulatedModel, prices: None
) -> None:
    bad, worse = json.dumps({"score": 1.7, "label": "x", "reasoning": "r"}), "Looks right!"
    model.script("judge", SimReply(content=bad), SimReply(content=worse))
    score = await judge_once(model, PRICED)
    first, second = judged(model)
    (in1, out1), (in2, out2) = reported(first, bad), reported(second, worse)
    assert score.error is not None and score.passed is False
    assert score.usage is not None
    assert (score.usage.input_tokens, score.usage.output_tokens, score.usage.calls) == (
        in1 + in2, out1 + out2, 2)
    assert score.usage.cost_usd == priced(in1, out1) + priced(in2, out2)


async def test_a_judge_model_without_a_price_costs_unknown_not_zero(
    model: SimulatedModel, prices: None
) -> None:
    model.script("judge", SimReply(content=VERDICT))
    score = await judge_once(model, UNPRICED)
    input_tokens, output_tokens = reported(judged(model)[0], VERDICT)
    assert score.usage == EvalUsage(input_tokens=input_tokens, output_tokens=output_tokens,
                                    calls=1, cost_usd=None)


async def test_a_scorer_that_calls_no_model_has_no_usage() -> None:
    score = await build_scorers([ScorerSpec(kind="contains")])[0].score(observation())
    assert score.usage is None


# -- the summary (pure) -----------------------------------------------------------------


def run(item_id: str, *usages: EvalUsage | None, cost: float | None = 0.5) -> RunItem:
    from crewbus.evals.run_items import evaluation_cost

    scores = [Score(name=f"s{i}", type="numeric", scorer_version="1", value=1.0, usage=u)
              for i, u in enumerate(usages)]
    tokens, eval_cost = evaluation_cost(scores)
    return RunItem(experiment="e", item_id=item_id, status="completed", scores=scores,
                   cost_usd=cost, tokens=7, eval_cost_usd=eval_cost, eval_tokens=tokens)


def test_the_summary_keeps_the_evaluation_cost_apart_and_unknown_out_of_the_total() -> None:
    runs = [run("a", EvalUsage(input_tokens=10, output_tokens=2, calls=1, cost_usd=0.25),
                None),
            run("b", EvalUsage(input_tokens=5, output_tokens=1, calls=1, cost_usd=0.125),
                EvalUsage(input_tokens=3, output_tokens=1, calls=1, cost_usd=None)),
            run("c", cost=None)]
    assert (runs[0].eval_tokens, runs[0].eval_cost_usd) == (12, 0.25)
    assert (runs[1].eval_tokens, runs[1].eval_cost_usd) == (10, None)  # one unpriced call
    assert (runs[2].eval_tokens, runs[2].eval_cost_usd) == (0, 0.0)
    summary = summarise(runs, [])
    assert (summary.cost_usd_total, summary.cost_unknown_items, summary.tokens_total) == (
        1.0, 1, 21)
    assert (summary.eval_cost_usd_total, summary.eval_cost_unknown_items,
            summary.eval_tokens_total) == (0.25, 1, 22)
    experiment = Experiment(name="e", created_at=0.0, updated_at=0.0, summary=summary,
                            config=ExperimentConfig(dataset="d", dataset_version=1, scorers=[]))
    text = show(experiment, runs)
    assert "task cost: $1.000000 total (+1 items unpriced)" in text
    assert "evaluation cost: $0.250000 total (+1 items unpriced); 22 tokens" in text


def test_a_run_item_stored_before_evaluation_costs_reads_as_zero() -> None:
    old = b'{"type":"run_item","experiment":"e","item_id":"a","status":"completed"}'
    decoded = msgspec.json.decode(old, type=RunItem)
    assert (decoded.eval_cost_usd, decoded.eval_tokens) == (0.0, 0)
    score = msgspec.json.decode(b'{"name":"j","type":"numeric","scorer_version":"1"}',
                                type=Score)
    assert score.usage is None


def test_a_comparison_sets_what_judging_cost_per_item_beside_the_task_cost() -> None:
    def row(item_id: str, eval_usd: float | None, eval_tokens: int | None) -> ResultRow:
        return ResultRow(item_id=item_id, scores={"j": 0.5}, cost_usd=0.001,
                         eval_cost_usd=eval_usd, eval_tokens=eval_tokens)

    base = [row("a", 0.002, 100), row("b", 0.004, 200)]
    cand = [row("a", 0.001, 50), row("b", None, 60), row("c", None, None)]  # c: no judge
    runs = compare(base, cand).runs
    assert runs is not None and runs.eval_cost_usd_per_item is not None
    assert (runs.eval_cost_usd_per_item.baseline, runs.eval_cost_usd_per_item.candidate) == (
        0.003, 0.001)
    assert (runs.baseline_eval_cost_unknown, runs.candidate_eval_cost_unknown) == (0, 1)
    text = render_comparison(compare(base, cand))
    assert "eval cost/item  $0.003000 → $0.001000  (-$0.002000)" in text
    assert "evaluation cost unknown for 0 baseline and 1 candidate item(s)" in text


# -- an experiment through the bus, read back over HTTP ---------------------------------


async def test_an_experiment_records_shows_exports_and_serves_its_evaluation_cost(
    nats_server: NatsServer, model: SimulatedModel, prices: None
) -> None:
    texts = ["What is 2 + 2?", "What is 3 + 3?"]
    model.script("judge", *[SimReply(content=VERDICT) for _ in texts])
    async with http_stack(nats_server.url, model.base_url) as s:
        datasets = DatasetStore(s.client.js)
        await datasets.create("jc-ds", [DatasetItem(id=f"q{i}", input=ItemInput(text=t),
                                                    expected="[simulated]")
                                        for i, t in enumerate(texts)])
        version, items = await datasets.items("jc-ds", None)
        specs = [ScorerSpec(kind="contains"),
                 ScorerSpec(kind="llm_judge")]
        config = ExperimentConfig(dataset="jc-ds", dataset_version=version.version,
                                  scorers=specs, concurrency=2)
        store = await ExperimentStore.open(s.client.js, patience_s=30)
        async with judge_context(model, PRICED) as context:
            runner = ExperimentRunner(s.client.nc, store, summarise)
            with anyio.fail_after(180):
                experiment = await runner.run(ExperimentRun(
                    "jc", config, list(items), build_scorers(specs, context)))
        runs = await store.items("jc")
        shown = (await s.http.get("/v1/experiments/jc")).json()
        page = (await s.http.get("/ui/experiments/jc")).text
        # The orchestrator process counts each published judge score's cost once.
        labels = {"scorer": "llm_judge", "dataset": "jc-ds"}
        want = sum(r.eval_cost_usd or 0.0 for r in runs)
        with anyio.fail_after(60):
            while metrics.registry().get_sample_value(
                    "crewbus_eval_cost_usd_total", labels) != pytest.approx(want, rel=1e-12):
                await anyio.sleep(0.05)
        eval_input_tokens = metrics.registry().get_sample_value(
            "crewbus_eval_tokens_total", {**labels, "token_type": "input"})

    requests = judged(model)
    assert len(requests) == 2
    by_item: dict[str, tuple[int, int]] = {}
    for request in requests:
        user = request.body["messages"][1]["content"]
        item_id = next(f"q{i}" for i, t in enumerate(texts) if f"## Task\n{t}" in user)
        by_item[item_id] = reported(request, VERDICT)
    for r in runs:
        input_tokens, output_tokens = by_item[r.item_id]
        judge = next(sc for sc in r.scores if sc.name == "llm_judge")
        assert judge.usage == EvalUsage(input_tokens=input_tokens, output_tokens=output_tokens,
                                        calls=1, cost_usd=priced(input_tokens, output_tokens))
        assert r.eval_tokens == input_tokens + output_tokens
        assert r.eval_cost_usd == priced(input_tokens, output_tokens)
        assert r.cost_usd == 0.0 and r.tokens > 0  # the task: the simulated model, free
    summary = experiment.summary
    assert summary is not None
    eval_usd = sum(priced(*by_item[r.item_id]) for r in sorted(runs, key=lambda r: r.item_id))
    eval_tokens = sum(i + o for i, o in by_item.values())
    assert summary.eval_cost_usd_total == pytest.approx(eval_usd, rel=1e-12)
    assert summary.eval_tokens_total == eval_tokens and summary.eval_cost_unknown_items == 0
    assert summary.cost_usd_total == 0.0 and summary.tokens_total == sum(r.tokens for r in runs)

    text = show(experiment, runs)
    assert f"evaluation cost: ${eval_usd:.6f} total; {eval_tokens} tokens" in text
    assert "task cost: $0.000000 total" in text
    exported = {row.item_id: row for row in rows_from_run_items(runs)}
    for r in runs:
        assert exported[r.item_id].eval_cost_usd == r.eval_cost_usd
        assert exported[r.item_id].eval_tokens == r.eval_tokens

    assert shown["experiment"]["summary"]["eval_cost_usd_total"] == pytest.approx(eval_usd)
    assert shown["experiment"]["summary"]["eval_tokens_total"] == eval_tokens
    served = {r["item_id"]: r for r in shown["run_items"]}
    for r in runs:
        assert served[r.item_id]["eval_cost_usd"] == r.eval_cost_usd
        judge_json = next(sc for sc in served[r.item_id]["scores"] if sc["name"] == "llm_judge")
        assert judge_json["usage"]["input_tokens"] == by_item[r.item_id][0]
    assert eval_input_tokens == sum(i for i, _ in by_item.values())
    found = re.search(r'<span id="evaluation-cost">(.*?)</span>', page, re.S)
    assert found is not None
    assert " ".join(found.group(1).split()) == (
        f"evaluation cost ${eval_usd:.6f} · {eval_tokens} tokens")
    for r in runs:
        assert f"eval ${r.eval_cost_usd:.6f}" in page


# -- the online evaluator's metric ------------------------------------------------------


async def test_the_online_evaluator_counts_the_judges_cost_in_prometheus(
    nats_server: NatsServer, model: SimulatedModel, prices: None, tmp_path: Path
) -> None:
    toml = tmp_path / "evaluators.toml"
    toml.write_text('[[evaluator]]\nname = "costly"\n[[evaluator.scorer]]\nkind = "llm_judge"\n'
                    '[[evaluator.scorer]]\nkind = "no_error"\n')
    settings = evaluator_settings(nats_server.url, model.base_url or "", toml)
    settings = msgspec.structs.replace(settings, judge=LLMSettings(
        base_url=model.base_url, model=PRICED, max_transport_retries=0))
    tasks = [SubmitTask(text=f"Plan a cheap trip {i}", target="planner") for i in range(3)]
    model.script("judge", *[SimReply(content=VERDICT) for _ in tasks])
    labels = {"scorer": "llm_judge", "dataset": "online:costly"}
    async with in_process_stack(nats_server.url, model.base_url or "",
                                roles=["planner"]) as client:
        states = await run_tasks(client, tasks)
        async with running_evaluator(client, settings):
            await wait_keys(client, 2 * len(tasks))
            store = await TaskScoreStore.open(client.js)
            with anyio.fail_after(30):  # the metric is recorded right after the store
                while metrics.registry().get_sample_value(
                        "crewbus_eval_tokens_total", {**labels, "token_type": "input"}) != \
                        sum(reported(r, VERDICT)[0] for r in judged(model)):
                    await anyio.sleep(0.05)
            stored = [s for st in states for s in await store.of_task(st.task_id)
                      if s.score.name == "llm_judge"]

    requests = judged(model)
    assert len(requests) == len(stored) == len(tasks)
    expected_usd = [priced(*reported(r, VERDICT)) for r in requests]
    assert sorted(s.score.usage.cost_usd for s in stored  # type: ignore[union-attr]
                  ) == sorted(expected_usd)
    sample = metrics.registry().get_sample_value
    assert sample("crewbus_eval_cost_usd_total", labels) == pytest.approx(sum(expected_usd),
                                                                          rel=1e-12)
    assert sample("crewbus_eval_tokens_total", {**labels, "token_type": "output"}) == \
        len(tasks) * (len(VERDICT) // 4 + 1)
    assert sample("crewbus_eval_unpriced_scores_total", labels) is None
    # `no_error` calls no model: it has no cost series at all.
    assert sample("crewbus_eval_tokens_total", {"scorer": "no_error", "dataset": "online:costly",
                                                "token_type": "input"}) is None

"""The evaluator service on a real stack: it scores the sampled share of finished tasks,
stores each score once, shows it in the trace, and sends failing tasks to a dataset."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.datasets import DatasetStore
from crewbus.evals.online.sampling import sampled
from crewbus.evals.online.scores import TaskScoreStore
from crewbus.tracing import read_trace, task_trace_id
from crewbus_contracts import SubmitTask
from crewbus_contracts.traces import EVALUATION_RESULT
from tests.online_helpers import (
    evaluator_settings,
    run_tasks,
    running_evaluator,
    score_keys,
    wait_idle,
    wait_keys,
)
from tests.stack import in_process_stack

pytestmark = pytest.mark.anyio

SAMPLED_TASKS = 200
RATE = 0.3


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def test_an_evaluator_scores_the_sampled_share_of_200_finished_tasks_and_no_other(
    nats_server: NatsServer, model_url: str, tmp_path: Path,
) -> None:
    toml = write(tmp_path / "evaluators.toml", f"""
[[evaluator]]
name = "sample"
rate = {RATE}
[[evaluator.scorer]]
kind = "no_error"
""")
    settings = evaluator_settings(nats_server.url, model_url, toml)
    tasks = [SubmitTask(text=f"Plan step {i}", target="planner", idempotency_key=f"s{i}")
             for i in range(SAMPLED_TASKS)]
    async with in_process_stack(nats_server.url, model_url, roles=["planner"]) as client:
        started = time.monotonic()
        states = await run_tasks(client, tasks, timeout_s=180)
        ran_s = time.monotonic() - started
        expected = {s.task_id for s in states if sampled("sample", s.task_id, RATE)}
        started = time.monotonic()
        async with running_evaluator(client, settings):
            keys = await wait_keys(client, len(expected))
            await wait_idle(client)
            keys = await score_keys(client)
        scored_s = time.monotonic() - started
    scored = {key.split(".")[0] for key in keys}
    measured = len(scored) / SAMPLED_TASKS
    print(f"\n{SAMPLED_TASKS} tasks in {ran_s:.1f}s; sampled {len(scored)} at rate {RATE}: "
          f"measured {measured:.3f}; {len(keys)} scores in {scored_s:.1f}s")
    assert scored == expected
    assert len(keys) == len(expected)  # one scorer: one key per sampled task
    # Three standard deviations of a binomial share: fails by chance about once in 370.
    assert abs(measured - RATE) <= 3 * math.sqrt(RATE * (1 - RATE) / SAMPLED_TASKS)


async def test_failing_tasks_join_the_dataset_with_their_trace_and_the_scores_show_in_the_trace(
    nats_server: NatsServer, model_url: str, tmp_path: Path,
) -> None:
    toml = write(tmp_path / "evaluators.toml", """
[[evaluator]]
name = "strict"
add_to = "regressions"
[evaluator.filter]
metadata = { suite = "hard" }
[[evaluator.scorer]]
kind = "latency_s"
max = 0.0

[[evaluator]]
name = "basic"
add_to = "regressions"
[[evaluator.scorer]]
kind = "no_error"
[[evaluator.scorer]]
kind = "llm_judge"
rubric = "helpfulness"
""")
    settings = evaluator_settings(nats_server.url, model_url, toml)
    tasks = [SubmitTask(text=f"Plan a trip number {i}", target="planner",
                        metadata={"suite": "hard" if i % 2 else "easy"}) for i in range(6)]
    async with in_process_stack(nats_server.url, model_url, roles=["planner"]) as client:
        states = await run_tasks(client, tasks)
        hard = sorted(s.task_id for s in states if s.metadata["suite"] == "hard")
        async with running_evaluator(client, settings):
            await wait_keys(client, len(hard) + 2 * len(states))
            await wait_idle(client)
        keys = await score_keys(client)
        store = await TaskScoreStore.open(client.js)
        first = await store.of_task(hard[0])
        spans = await read_trace(client.js, hard[0])
        version, items = await DatasetStore(client.js).items("regressions")
    assert all(s.status == "completed" for s in states)
    assert len(keys) == len(hard) + 2 * len(states)
    assert {(s.evaluator, s.score.name, s.score.passed) for s in first} == {
        ("strict", "latency_s", False), ("basic", "no_error", True),
        ("basic", "llm_judge", True)}
    judged = next(s for s in first if s.score.name == "llm_judge")
    assert judged.score.value is not None and judged.role == "planner"
    assert judged.prompt_version == "1" and judged.trace_id == task_trace_id(hard[0])
    evaluations = [s for s in spans if s.kind == "evaluation"]
    assert {s.name for s in evaluations} == {"evaluation strict", "evaluation basic"}
    events = [e for s in evaluations for e in s.events if e.name == EVALUATION_RESULT]
    assert sorted(str(e.attributes["gen_ai.evaluation.name"]) for e in events) == [
        "latency_s", "llm_judge", "no_error"]
    assert sorted(item.id for item in items) == hard  # the easy ones passed everything
    for item in items:
        assert item.source_task_id == item.id
        assert item.metadata["trace_link"] == f"/ui/tasks/{item.id}/trace"
        assert item.metadata["trace_id"]
        assert item.metadata["failed_scores"] == ["latency_s"]
        assert item.input.text.startswith("Plan a trip number")
    assert version.items == len(hard)


async def test_a_bad_evaluators_file_is_one_line_naming_the_key(tmp_path: Path) -> None:
    from crewbus.evals.online.config import load_evaluators_file
    from crewbus.evals.scorers.errors import ScorerConfigError

    toml = write(tmp_path / "evaluators.toml", """
[[evaluator]]
name = "x"
rate = 1.5
[[evaluator.scorer]]
kind = "no_error"
""")
    with pytest.raises(ScorerConfigError) as raised:
        load_evaluators_file(toml)
    assert "evaluator[1] (x).rate" in str(raised.value) and "\n" not in str(raised.value)


def test_a_bad_evaluators_file_stops_crewbus_serve_evaluator_with_one_line(
    tmp_path: Path,
) -> None:
    bad = write(tmp_path / "evaluators.toml", """
[[evaluator]]
name = "x"
[evaluator.filter]
status = ["done"]
[[evaluator.scorer]]
kind = "no_error"
""")
    env = {**os.environ, "CREWBUS_NATS_URL": "nats://127.0.0.1:1"}
    run = subprocess.run([sys.executable, "-m", "crewbus", "serve", "evaluator", "--file",
                          str(bad)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"crewbus serve: {bad}: evaluator[1] (x).filter.status: 'done' is not one of "
        "completed, failed, cancelled"]


def test_crewbus_up_starts_an_evaluator_only_when_an_evaluators_file_is_set() -> None:
    from crewbus.config import load_settings
    from crewbus.devstack.up import bus_services

    example = Path(__file__).parent.parent / "examples" / "evaluators.toml"
    assert "evaluator" not in bus_services(load_settings({}))
    with_file = load_settings({"CREWBUS_EVALUATORS_FILE": str(example)})
    assert bus_services(with_file)[-1] == "evaluator"

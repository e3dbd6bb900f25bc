"""kill -9 of an evaluator process mid-batch: another replica finishes the batch, and every
score of every task is stored exactly once (no loss, no second write of any key)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.online.scores import TaskScoreStore
from crewbus.llm.settings import SIMULATED_MODEL_NAME
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus.llm.simulated_replies import default_reply
from crewbus_contracts import SubmitTask, subjects
from tests.online_helpers import run_tasks, score_keys, wait_idle, wait_keys
from tests.stack import in_process_stack, service_env, spawn_service

pytestmark = pytest.mark.anyio

TASKS = 12
JUDGE_DELAY_S = 0.8


def slow_judge(body: dict[str, Any]) -> SimReply:
    return dataclasses.replace(default_reply(body), delay_s=JUDGE_DELAY_S)


async def test_kill_9_of_an_evaluator_mid_batch_loses_and_duplicates_no_score(
    nats_server: NatsServer, model: SimulatedModel, model_url: str, tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    model.script("judge", slow_judge)
    toml = tmp_path / "evaluators.toml"
    toml.write_text("""
[[evaluator]]
name = "judged"
[[evaluator.scorer]]
kind = "llm_judge"
rubric = "helpfulness"
[[evaluator.scorer]]
kind = "no_error"
""", encoding="utf-8")
    env = {**service_env(nats_server.url, model_url), "CREWBUS_EVALUATORS_FILE": str(toml),
           "CREWBUS_EVALUATOR_FROM_START": "true", "CREWBUS_EVALUATOR_CONCURRENCY": "4",
           "CREWBUS_JUDGE_BASE_URL": model_url, "CREWBUS_JUDGE_MODEL": SIMULATED_MODEL_NAME}
    expected = 2 * TASKS
    async with in_process_stack(nats_server.url, model_url, roles=["planner"]) as client:
        states = await run_tasks(client, [SubmitTask(text=f"Plan a bake sale, table {i}",
                                                     target="planner") for i in range(TASKS)])
        doomed = spawn_service("evaluator", env, tmp_path / "logs")
        processes.append(doomed)
        at_kill = await wait_keys(client, 2, timeout_s=60)
        info = await client.js.consumer_info(subjects.EVENTS_STREAM,
                                             subjects.EVALUATOR_CONSUMER)
        os.kill(doomed.pid, signal.SIGKILL)
        await anyio.to_thread.run_sync(doomed.wait)
        survivor = spawn_service("evaluator", env, tmp_path / "logs")
        processes.append(survivor)
        keys = await wait_keys(client, expected, timeout_s=90)
        await wait_idle(client, timeout_s=60)
        keys = await score_keys(client)
        stream = await client.js.stream_info(f"KV_{subjects.TASK_SCORES_KV}")
        store = await TaskScoreStore.open(client.js)
        stored = [await store.get(key) for key in keys]
    print(f"\nkilled with {len(at_kill)} of {expected} scores stored and "
          f"{info.num_ack_pending} tasks in flight")
    assert len(at_kill) < expected and info.num_ack_pending > 0  # it died mid-batch
    assert len(keys) == expected
    assert stream.state.messages == expected  # no key was ever written twice
    assert {s.task_id for s in stored if s is not None} == {s.task_id for s in states}
    assert sorted(s.score.name for s in stored if s is not None) == sorted(
        ["llm_judge", "no_error"] * TASKS)
    assert all(s is not None and s.score.error is None for s in stored)

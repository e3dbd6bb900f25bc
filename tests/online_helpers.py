"""Helpers of the online evaluator tests: an evaluator wired by its bootstrap (in this event
loop), tasks run to their end in bulk, and the stored scores read back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import msgspec

from crewbus import bootstrap
from crewbus.bus.kv_keys import kv_keys
from crewbus.client import CrewbusClient
from crewbus.config import Settings
from crewbus.evals.online.settings import EvaluatorSettings
from crewbus.llm.settings import SIMULATED_MODEL_NAME, LLMSettings
from crewbus.tracing import start_tracer
from crewbus_contracts import SubmitTask, TaskState, subjects
from tests.stack import FAST, stack_settings


def evaluator_settings(nats_url: str, model_url: str, evaluators_file: Path,
                       **changes: object) -> Settings:
    """The in-process stack's settings with an evaluator on `evaluators_file`, reading
    every finished task from the first, its judge the simulated model."""
    base = stack_settings(nats_url)
    evaluator = EvaluatorSettings(nats_url=nats_url, evaluators_file=str(evaluators_file),
                                  evaluator_from_start=True, **FAST,  # type: ignore[arg-type]
                                  **changes)  # type: ignore[arg-type]
    judge = LLMSettings(model=SIMULATED_MODEL_NAME, base_url=model_url)
    return msgspec.structs.replace(base, evaluator=evaluator, judge=judge)


@asynccontextmanager
async def running_evaluator(client: CrewbusClient, settings: Settings) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tracer = await start_tracer(client.js, "test-evaluator")
        async with bootstrap.evaluator(settings, client.nc, tracer=tracer) as run:
            tg.start_soon(run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()


async def run_tasks(client: CrewbusClient, tasks: Iterable[SubmitTask],
                    timeout_s: float = 120.0) -> list[TaskState]:
    """Submit every task, then wait for all of them to end; their final states, in order."""
    ids = [(await client.submit(task, timeout_s=30)).task_id for task in tasks]
    return await wait_final(client, ids, timeout_s)


async def wait_final(client: CrewbusClient, ids: list[str], timeout_s: float = 120.0
                     ) -> list[TaskState]:
    finals: dict[str, TaskState] = {}
    with anyio.fail_after(timeout_s):
        while len(finals) < len(ids):
            for task_id in ids:
                if task_id not in finals:
                    state = await client.state(task_id)
                    if state is not None and state.is_final:
                        finals[task_id] = state
            if len(finals) < len(ids):
                await anyio.sleep(0.2)
    return [finals[task_id] for task_id in ids]


async def score_keys(client: CrewbusClient) -> list[str]:
    return await kv_keys(client.js, subjects.TASK_SCORES_KV)


async def wait_idle(client: CrewbusClient, timeout_s: float = 60.0) -> None:
    """Until the evaluator consumer has nothing left: no message pending, none unacked."""
    with anyio.fail_after(timeout_s):
        while True:
            info = await client.js.consumer_info(subjects.EVENTS_STREAM,
                                                 subjects.EVALUATOR_CONSUMER)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await anyio.sleep(0.1)


async def wait_keys(client: CrewbusClient, count: int, timeout_s: float = 60.0) -> list[str]:
    with anyio.fail_after(timeout_s):
        while len(keys := await score_keys(client)) < count:
            await anyio.sleep(0.1)
    return keys

"""Issue 17: the terminal event a client reads must say what the stored state says: no
task lost, no empty or different answer, one terminal event per task. Short form of
bench/agreement.py, on one stack of real processes (two orchestrator replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agreement import Figures, ProcessStack, run_agreement

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so both tests share the stack below


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProcessStack]:
    async with ProcessStack(Path(tmp_path_factory.mktemp("agreement"))) as running:
        yield running


def assert_agree(figures: Figures) -> None:
    report = "\n" + figures.report()
    assert figures.lost == 0, report
    assert figures.missing_event == 0, report
    assert figures.disagreeing == 0, report
    assert figures.duplicated == 0, report
    assert figures.status_disagreeing == 0, report
    assert figures.wait_disagreeing == 0, report


async def test_twenty_tasks_at_once_each_end_with_one_event_that_matches_the_state(
    stack: ProcessStack,
) -> None:
    figures = await run_agreement(stack, tasks=20, timeout_s=45, seed=17)
    assert_agree(figures)
    assert figures.completed == 20, figures.report()


async def test_with_an_orchestrator_and_an_agent_killed_mid_run_events_still_match(
    stack: ProcessStack,
) -> None:
    figures = await run_agreement(stack, tasks=20, kills=2, timeout_s=60, seed=17,
                                  victims=("orchestrator", "researcher"))
    assert figures.kills >= 1, figures.report()
    assert_agree(figures)

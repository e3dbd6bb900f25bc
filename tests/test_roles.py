"""Each agent role is one object whose hooks the runtime calls: its prompt, its message,
its hint to the simulated model, its repair and its after-work. Tested here alone; the
end-to-end tests run them on the bus."""

from __future__ import annotations

import re

import pytest

from crewbus.llm import ModelHint, ShownMemory
from crewbus_agents.outcome import WorkOutcome
from crewbus_agents.recall import NOTHING, Recall, Recalled
from crewbus_agents.roles import AGENTS, WrongRoleError
from crewbus_agents.roles.plan_repair import repair_plan_reply
from crewbus_contracts import (
    AGENT_ROLES,
    CritiqueRequest,
    Plan,
    PlanRequest,
    PlanStep,
    StepOutput,
    StepRequest,
    WorkRequest,
)
from crewbus_contracts.memory import MemoryHit
from crewbus_contracts.models import MAX_PLAN_STEPS

PLAN = Plan(steps=[PlanStep(id="r1", role="researcher", instruction="Find the facts")])
STEP = StepRequest(
    task_id="t1", round=1, task_text="Compare brokers", inputs={"r1": "the facts"},
    step=PlanStep(id="e1", role="executor", instruction="Write it up", depends_on=["r1"]),
)
RESEARCH = StepRequest(task_id="t1", round=1, task_text="Compare brokers", step=PLAN.steps[0])
CRITIQUE = CritiqueRequest(task_id="t1", round=1, task_text="Compare brokers", plan=PLAN,
                           answer="Use NATS", min_score=0.85)
PLANNING = PlanRequest(task_id="t1", round=1, task_text="Compare brokers")


def test_every_role_is_registered_under_its_name_with_a_versioned_prompt() -> None:
    assert list(AGENTS) == list(AGENT_ROLES)
    for name, role in AGENTS.items():
        assert role.name == name
        assert role.prompt.version.startswith(f"{name}-v")
        assert role.prompt.text


@pytest.mark.parametrize(("role", "request_"), [
    ("researcher", STEP), ("executor", RESEARCH), ("planner", CRITIQUE), ("critic", PLANNING),
])
def test_a_role_refuses_work_meant_for_another(role: str, request_: WorkRequest) -> None:
    with pytest.raises(WrongRoleError, match=f"the {role} cannot handle a"):
        AGENTS[role].accept(request_)


def test_a_role_takes_its_own_work_as_it_came() -> None:
    for role, request in [("planner", PLANNING), ("researcher", RESEARCH), ("executor", STEP),
                          ("critic", CRITIQUE)]:
        assert AGENTS[role].accept(request) is request


def test_the_critic_judges_against_the_tasks_bar_not_a_fixed_one() -> None:
    critic = AGENTS["critic"]
    assert critic.user_message(CRITIQUE).endswith("The task's bar: 0.85")
    assert "0.7" not in critic.prompt.text
    assert "the task's bar, given" in critic.prompt.text


def test_the_planner_prompt_allows_the_steps_a_plan_may_have() -> None:
    bound = re.search(r"1 to (\d+) steps", AGENTS["planner"].prompt.text)
    assert bound is not None and int(bound.group(1)) == MAX_PLAN_STEPS


def test_only_the_planner_repairs_and_only_when_the_task_allows_degrading() -> None:
    planner = AGENTS["planner"]
    assert planner.repair(PLANNING) is repair_plan_reply
    no_degrading = PlanRequest(task_id="t1", round=1, task_text="x", allow_repair=False)
    assert planner.repair(no_degrading) is None
    assert AGENTS["executor"].repair(STEP) is None
    assert AGENTS["critic"].repair(CRITIQUE) is None


def test_a_step_hint_names_the_work_and_the_memories_the_prompt_shows() -> None:
    hits = [MemoryHit(id="m1", score=0.9, kind="document", text="NATS is small"),
            MemoryHit(id="m2", score=0.8, kind="finding", text="Kafka is not")]
    recalled = Recalled("Memory excerpts: ...", ["m1", "m2"], hits)
    assert AGENTS["executor"].hint(STEP, recalled) == ModelHint(
        task="Compare brokers", step="e1", instruction="Write it up", inputs=("r1",),
        input_texts=("the facts",), memory=("m1", "m2"),
        memories=(ShownMemory(id="m1", kind="document", text="NATS is small"),
                  ShownMemory(id="m2", kind="finding", text="Kafka is not")),
    )
    assert AGENTS["planner"].hint(PLANNING, NOTHING) == ModelHint(task="Compare brokers")
    assert AGENTS["critic"].hint(CRITIQUE, NOTHING) == ModelHint(task="Compare brokers")


@pytest.mark.anyio
async def test_the_researcher_cites_what_it_was_shown_and_the_executor_leaves_sources_be(
) -> None:
    recalled = Recalled("Memory excerpts: ...", ["m1", "m2"])
    no_memory = Recall(None)
    research = WorkOutcome("m", True, value=StepOutput(content="facts", sources=["m2", "x"]))
    uncited = WorkOutcome("m", True, value=StepOutput(content="facts"))
    executed = WorkOutcome("m", True, value=StepOutput(content="done", sources=["x"]))
    await AGENTS["researcher"].after_work(RESEARCH, research, recalled, no_memory)
    await AGENTS["researcher"].after_work(RESEARCH, uncited, recalled, no_memory)
    await AGENTS["executor"].after_work(STEP, executed, recalled, no_memory)
    assert isinstance(research.value, StepOutput) and research.value.sources == ["m2", "x"]
    assert isinstance(uncited.value, StepOutput) and uncited.value.sources == ["m1", "m2"]
    assert isinstance(executed.value, StepOutput) and executed.value.sources == ["x"]

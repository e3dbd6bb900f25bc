"""Test helpers for replay and shadow: a candidate variant whose planner prompt carries
a marker, and a scripted planner that plans differently for the candidate (the simulated
model follows the steps' tool directives)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from crewbus.client import CrewbusClient
from crewbus.llm.simulated import SimReply
from crewbus.variants import PromptStore, VariantStore
from crewbus_agents.prompts import Prompt
from crewbus_contracts import subjects

MARKER = "CANDIDATE-PLANNER"
CANDIDATE = "candidate"


def use(tool: str, arguments: dict[str, Any]) -> str:
    return f"use tool {tool} with {json.dumps(arguments)}"


def planner(plans: Callable[[str, bool], list[str]]) -> Callable[[dict[str, Any]], SimReply]:
    """A planner answering one executor step whose instruction is `plans(task text,
    candidate)` joined: the candidate is told apart by its prompt's marker."""

    def reply(body: dict[str, Any]) -> SimReply:
        messages = body["messages"]
        candidate = MARKER in messages[0]["content"]
        user = messages[-1]["content"]
        directives = plans(user, candidate)
        plan = {"steps": [{"id": "e1", "role": "executor",
                           "instruction": "Do it. " + " ".join(directives)}],
                "rationale": "one executor step"}
        return SimReply(content=json.dumps(plan))

    return reply


async def make_candidate(client: CrewbusClient) -> None:
    """Variant `candidate`: the planner's prompt with the marker, the rest production's."""
    js = client.js
    prompts = PromptStore(await js.key_value(subjects.PROMPTS_KV))
    variants = VariantStore(await js.key_value(subjects.VARIANTS_KV))
    await prompts.push("planner", Prompt(version="planner-candidate",
                                         text=f"You are the planner ({MARKER}). Plan it."),
                       label=CANDIDATE)
    await variants.set_role(CANDIDATE, "planner", {"prompt": CANDIDATE})

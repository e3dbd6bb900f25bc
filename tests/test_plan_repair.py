"""The plan repair on its own: a table of invalid plans, the plan each becomes, and the
repairs reported; replies that are not draft plans are left to the validation retry."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from crewbus_agents.roles.plan_repair import DraftPlan, repair_plan, repair_plan_reply
from crewbus_contracts import Plan


def _step(step_id: str, *after: str, role: str = "researcher") -> dict[str, Any]:
    return {"id": step_id, "role": role, "instruction": f"do {step_id}",
            "depends_on": list(after)}


def _shape(plan: Plan) -> list[tuple[str, list[str]]]:
    return [(s.id, s.depends_on) for s in plan.steps]


CASES = [
    pytest.param(
        [_step("1"), _step("1"), _step("2", "1")],
        [("1", []), ("1-2", []), ("2", ["1", "1-2"])],
        ["step 2 repeated the id '1': renamed it '1-2'",
         "step '2' depended on the repeated id '1': now on ['1', '1-2']"],
        id="duplicate-ids",
    ),
    pytest.param(
        [_step("a"), _step("a"), _step("a-2"), _step("a", "a")],
        [("a", []), ("a-3", []), ("a-2", []), ("a-4", ["a", "a-3"])],
        ["step 2 repeated the id 'a': renamed it 'a-3'",
         "step 4 repeated the id 'a': renamed it 'a-4'",
         "step 'a-4' depended on the repeated id 'a': now on ['a', 'a-3']"],
        id="renames-skip-taken-names",
    ),
    pytest.param(
        [_step("x" * 32), _step("x" * 32)],
        [("x" * 32, []), ("x" * 30 + "-2", [])],
        [f"step 2 repeated the id '{'x' * 32}': renamed it '{'x' * 30}-2'"],
        id="renamed-id-fits-the-pattern",
    ),
    pytest.param(
        [_step("1"), _step("2", "1"), _step("2", "2"), _step("3", "2")],
        [("1", []), ("2", ["1"]), ("2-2", ["2"]), ("3", ["2", "2-2"])],
        ["step 3 repeated the id '2': renamed it '2-2'",
         "step '3' depended on the repeated id '2': now on ['2', '2-2']"],
        id="a-copy-depends-on-the-copies-before-it",
    ),
    pytest.param(
        [_step("plan"), _step("critique", "plan")],
        [("plan-2", []), ("critique-2", ["plan-2"])],
        ["step 1 used the reserved id 'plan': renamed it 'plan-2'",
         "step 2 used the reserved id 'critique': renamed it 'critique-2'",
         "step 'critique-2' depended on the reserved id 'plan': now on ['plan-2']"],
        id="reserved-ids",
    ),
    pytest.param(
        [_step("1"), _step("2", "a", "1", "b")],
        [("1", []), ("2", ["1"])],
        ["step '2' depended on unknown steps ['a', 'b']: dropped"],
        id="unknown-dependencies",
    ),
    pytest.param(
        [_step("1"), _step("2", "1", "2")],
        [("1", []), ("2", ["1"])],
        ["step '2' depended on itself: dropped"],
        id="self-dependency",
    ),
    pytest.param(
        [_step("a", "b"), _step("b", "a")],
        [("a", []), ("b", ["a"])],
        ["step 'a' depended on 'b', closing the cycle a -> b -> a: dropped"],
        id="two-cycle-drops-the-forward-edge",
    ),
    pytest.param(
        [_step("1", "3"), _step("2", "1"), _step("3", "2")],
        [("1", []), ("2", ["1"]), ("3", ["2"])],
        ["step '1' depended on '3', closing the cycle 1 -> 3 -> 2 -> 1: dropped"],
        id="three-cycle-keeps-the-written-order",
    ),
    pytest.param(
        [_step("a", "b"), _step("b", "c"), _step("c")],
        [("a", ["b"]), ("b", ["c"]), ("c", [])],
        [],
        id="forward-edges-without-a-cycle-are-kept",
    ),
    pytest.param(
        [_step("a", "c"), _step("b", "a"), _step("c", "b", "d"), _step("d", "c")],
        [("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"])],
        ["step 'a' depended on 'c', closing the cycle a -> c -> b -> a: dropped",
         "step 'c' depended on 'd', closing the cycle c -> d -> c: dropped"],
        id="two-cycles-each-loses-its-forward-edge",
    ),
    pytest.param(
        [_step("1", "1", "z"), _step("1", "1"), _step("2", "1", "2")],
        [("1", []), ("1-2", ["1"]), ("2", ["1", "1-2"])],
        ["step 2 repeated the id '1': renamed it '1-2'",
         "step '1' depended on itself: dropped",
         "step '1' depended on unknown steps ['z']: dropped",
         "step '2' depended on the repeated id '1': now on ['1', '1-2']",
         "step '2' depended on itself: dropped"],
        id="everything-at-once",
    ),
]


@pytest.mark.parametrize(("steps", "expected", "repairs"), CASES)
def test_repair_plan(
    steps: list[dict[str, Any]], expected: list[tuple[str, list[str]]],
    repairs: list[str],
) -> None:
    draft = msgspec.convert({"steps": steps, "rationale": "r"}, DraftPlan)
    plan, got = repair_plan(draft)
    assert _shape(plan) == expected
    assert got == repairs
    assert plan.rationale == "r"
    assert [s.instruction for s in plan.steps] == [s["instruction"] for s in steps]
    # The result is a valid Plan by the contract's own rules.
    assert msgspec.json.decode(msgspec.json.encode(plan), type=Plan) == plan


def test_a_valid_plan_is_not_a_repair() -> None:
    valid = json.dumps({"steps": [_step("a"), _step("b", "a")]})
    assert repair_plan_reply(valid) is None


@pytest.mark.parametrize("reply", [
    "not json",
    json.dumps({"steps": []}),
    json.dumps({"steps": [_step("a", role="writer")]}),
    json.dumps({"steps": [_step(f"s{i}") for i in range(13)]}),
    json.dumps({"steps": [_step("bad id")]}),
    json.dumps({"steps": [{"id": "a", "role": "executor", "instruction": ""}]}),
], ids=["not-json", "no-steps", "unknown-role", "too-many-steps", "bad-id", "empty-instruction"])
def test_what_is_not_a_draft_plan_is_left_to_the_validation_retry(reply: str) -> None:
    assert repair_plan_reply(reply) is None


def test_the_reply_hook_returns_the_repaired_plan_and_its_repairs() -> None:
    reply = json.dumps({"steps": [_step("1"), _step("2", "1", "2")]})
    repaired = repair_plan_reply(reply)
    assert repaired is not None
    plan, repairs = repaired
    assert _shape(plan) == [("1", []), ("2", ["1"])]
    assert repairs == ["step '2' depended on itself: dropped"]

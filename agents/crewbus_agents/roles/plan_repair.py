"""Repairing a model's plan: fix what is unambiguous instead of asking the model again.

Small models often write steps that are fine one by one in a graph that is not: two steps
share an id, a step depends on an id that does not exist or on itself, the dependencies
form a cycle. Each has one fix that loses no step, so it is applied and reported rather
than paid for with a slow validation round the same model tends to fail again. Anything
else (no steps, an unknown role, too many steps, a bad id) is left to the validation retry.

The fixes, in this order, each deterministic:
- a repeated id: every step after the first with that id is renamed `<id>-2`, `<id>-3`, ...
  (the first name not already taken). A dependency on the id means all the steps that had
  it, so none is left over as a stray final step and the step that needed "the" output gets
  every one; a step that had the id itself depends on the copies before it only;
- a reserved id (`plan`, `critique`: the planner's and the critic's work): renamed the
  same way;
- a dependency on an id no step has, or on the step itself: dropped;
- a cycle: a dependency on a step listed earlier is always kept (those alone can't form a
  cycle); a dependency on a step listed later is dropped when, with the ones kept before
  it (in plan order), it would close a cycle. Plans are written in execution order, so the
  forward reference is the likely mistake.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from crewbus_contracts import Plan, PlanStep
from crewbus_contracts.base import Model
from crewbus_contracts.evolution import unknown_fields
from crewbus_contracts.models import MAX_PLAN_STEPS, RESERVED_STEP_IDS

MAX_ID_LENGTH = 32
"""The `StepId` pattern's length limit: a renamed id must still match it."""


class DraftPlan(Model):
    """A plan as the model wrote it: every field checked, the step graph not yet."""

    steps: Annotated[list[PlanStep], msgspec.Meta(min_length=1, max_length=MAX_PLAN_STEPS)]
    rationale: str = ""


def repair_plan(draft: DraftPlan) -> tuple[Plan, list[str]]:
    """The draft as a valid Plan, and one line per fix (empty when nothing was wrong)."""
    repairs: list[str] = []
    written = [s.id for s in draft.steps]
    ids = _unique_ids(written, repairs)
    copies: dict[str, list[str]] = {}
    for old, new in zip(written, ids, strict=True):
        copies.setdefault(old, []).append(new)
    deps = [_resolve(ids[i], written[i], step.depends_on, copies, repairs)
            for i, step in enumerate(draft.steps)]
    deps = _break_cycles(ids, deps, repairs)
    steps = [
        PlanStep(id=own, role=step.role, instruction=step.instruction, depends_on=after)
        for own, step, after in zip(ids, draft.steps, deps, strict=True)
    ]
    return Plan(steps=steps, rationale=draft.rationale), repairs


def repair_plan_reply(text: str) -> tuple[Plan, list[str]] | None:
    """The LLM adapter's repair hook: the repaired plan, or None when `text` is not even a
    draft plan (then the model is shown its validation error as usual)."""
    try:
        draft = msgspec.json.decode(text, type=DraftPlan)
        if unknown_fields(msgspec.json.decode(text), DraftPlan):
            return None  # a misspelt field: the model must hear of it, not lose it silently
        plan, repairs = repair_plan(draft)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
        return None
    return (plan, repairs) if repairs else None


def _unique_ids(ids: list[str], repairs: list[str]) -> list[str]:
    """Ids made unique, and free of the ids the planner's and critic's work use."""
    taken = set(ids) | set(RESERVED_STEP_IDS)
    seen: set[str] = set()
    out: list[str] = []
    for position, step_id in enumerate(ids, start=1):
        if step_id in RESERVED_STEP_IDS:
            new = _free_name(step_id, taken)
            taken.add(new)
            out.append(new)
            repairs.append(f"step {position} used the reserved id {step_id!r}: renamed it "
                           f"{new!r}")
            continue
        if step_id not in seen:
            seen.add(step_id)
            out.append(step_id)
            continue
        new = _free_name(step_id, taken)
        taken.add(new)
        out.append(new)
        repairs.append(f"step {position} repeated the id {step_id!r}: renamed it {new!r}")
    return out


def _free_name(step_id: str, taken: set[str]) -> str:
    n = 2
    while True:
        suffix = f"-{n}"
        name = step_id[: MAX_ID_LENGTH - len(suffix)] + suffix
        if name not in taken:
            return name
        n += 1


def _resolve(
    own: str, written_id: str, depends_on: list[str], copies: dict[str, list[str]],
    repairs: list[str],
) -> list[str]:
    """The step's dependencies as new ids: repeated ids expanded, unknown and self dropped."""
    out: list[str] = []
    unknown: list[str] = []
    for dep in depends_on:
        targets = copies.get(dep)
        if targets is None:
            unknown.append(dep)
            continue
        if dep == written_id:  # its own id: the copies before it, if any
            targets = targets[: targets.index(own)]
            if not targets:
                repairs.append(f"step {own!r} depended on itself: dropped")
                continue
        if targets != [dep]:
            kind = "reserved" if dep in RESERVED_STEP_IDS else "repeated"
            repairs.append(f"step {own!r} depended on the {kind} id {dep!r}: now on {targets}")
        out += [t for t in targets if t not in out]
    if unknown:
        repairs.append(f"step {own!r} depended on unknown steps {unknown}: dropped")
    return out


def _break_cycles(ids: list[str], deps: list[list[str]], repairs: list[str]) -> list[list[str]]:
    index = {step_id: i for i, step_id in enumerate(ids)}
    kept = [[d for d in after if index[d] < i] for i, after in enumerate(deps)]
    for i, after in enumerate(deps):
        for dep in after:
            if index[dep] < i or dep in kept[i]:
                continue
            path = _path(index[dep], i, kept, ids, index)
            if path is None:
                kept[i].append(dep)
                continue
            cycle = " -> ".join([ids[i], *path])
            repairs.append(f"step {ids[i]!r} depended on {dep!r}, closing the cycle {cycle}: "
                           "dropped")
    # Keep each step's dependencies in the order the model wrote them.
    return [[d for d in after if d in kept[i]] for i, after in enumerate(deps)]


def _path(
    start: int, goal: int, kept: list[list[str]], ids: list[str], index: dict[str, int]
) -> list[str] | None:
    """Ids from `start` to `goal` following kept dependencies, or None if there is no path."""
    stack: list[tuple[int, list[str]]] = [(start, [ids[start]])]
    visited = {start}
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        for dep in kept[node]:
            nxt = index[dep]
            if nxt not in visited:
                visited.add(nxt)
                stack.append((nxt, [*path, dep]))
    return None

"""Scorers of what the run did rather than what it answered: the critic's own score, the
trajectory (tools called, rounds, errors) and the budgets (cost, latency).

A figure the run did not record (no critic score, an unknown cost) is an evaluation
error, never a pass: an unpriced model must not make a budget hold.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from crewbus.evals.scorers.base import Observation
from crewbus.evals.scorers.errors import ScoringError
from crewbus.evals.scorers.registry import NoParams, ScorerParams, Verdict, scorer


class CriticParams(ScorerParams):
    min: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    """The bar; unset: the task's own `min_score` (its limits), else no bar."""


@scorer("critic", type="numeric", version="1", primary="min")
def critic(obs: Observation, params: CriticParams) -> Verdict:
    """The critic's last score of the task (0..1), passed when it reaches the bar."""
    if obs.critic_score is None:
        raise ScoringError("the run has no critic score (the critic never scored it)")
    bar = params.min
    if bar is None and obs.state is not None:
        bar = obs.state.limits.min_score
    if bar is None and obs.item.input.limits is not None:
        bar = obs.item.input.limits.min_score
    score = obs.critic_score
    if bar is None:
        return Verdict(score, f"the critic scored {score:.3g} (no bar)")
    passed = score >= bar
    return Verdict(score, f"the critic scored {score:.3g} {'≥' if passed else '<'} {bar:g}", passed)


class ToolCalledParams(ScorerParams):
    tool: Annotated[str, msgspec.Meta(min_length=1)]
    """The tool's name, as the model calls it."""


@scorer("tool_called", type="boolean", version="1", needs_tool_calls=True)
def tool_called(obs: Observation, params: ToolCalledParams) -> Verdict:
    """The run called the tool at least once (whether or not the call succeeded)."""
    names = [call.name for call in obs.tool_calls]
    if params.tool in names:
        ok = sum(1 for c in obs.tool_calls if c.name == params.tool and c.ok)
        return Verdict(True, f"{params.tool} called {names.count(params.tool)}x ({ok} ok)")
    called = ", ".join(sorted(set(names))) or "no tool"
    return Verdict(False, f"{params.tool} was never called (called: {called})")


class MaxRoundsParams(ScorerParams):
    max: Annotated[int, msgspec.Meta(ge=1)]
    """Most planning rounds allowed."""


@scorer("max_rounds", type="boolean", version="1")
def max_rounds(obs: Observation, params: MaxRoundsParams) -> Verdict:
    """The task took at most `max` planning rounds."""
    if obs.rounds < 1:
        raise ScoringError("the run recorded no planning round")
    passed = obs.rounds <= params.max
    return Verdict(passed, f"{obs.rounds} round(s) {'≤' if passed else '>'} {params.max}")


@scorer("no_error", type="boolean", version="1")
def no_error(obs: Observation, params: NoParams) -> Verdict:
    """The task completed, with no error code."""
    if obs.status == "completed" and obs.error_code is None:
        return Verdict(True, "completed without an error")
    code = f", {obs.error_code}" if obs.error_code else ""
    return Verdict(False, f"status {obs.status}{code}")


class BudgetParams(ScorerParams):
    max: Annotated[float, msgspec.Meta(ge=0.0)]
    """The most the run may spend (USD for cost_usd, seconds for latency_s)."""


@scorer("cost_usd", type="boolean", version="1")
def cost_usd(obs: Observation, params: BudgetParams) -> Verdict:
    """The run cost at most `max` USD. An unknown cost (a model with no price) is an
    evaluation error, not a pass."""
    if obs.cost_usd is None:
        raise ScoringError("the run's cost is unknown (a model without a price)")
    passed = obs.cost_usd <= params.max
    return Verdict(passed, f"${obs.cost_usd:.6g} {'≤' if passed else '>'} ${params.max:g}")


@scorer("latency_s", type="boolean", version="1")
def latency_s(obs: Observation, params: BudgetParams) -> Verdict:
    """The run took at most `max` seconds from submission to its end."""
    if obs.latency_s is None:
        raise ScoringError("the run's latency is unknown")
    passed = obs.latency_s <= params.max
    return Verdict(passed, f"{obs.latency_s:.3g}s {'≤' if passed else '>'} {params.max:g}s")

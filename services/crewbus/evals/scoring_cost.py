"""What evaluating cost, apart from what the tasks cost: the scorers' own model calls.

Each Score made with a model (the LLM judge) carries its `ScoringCost`; a run item's is
the sum over its scores. As with a task's cost, an unknown price stays unknown: one score
priced None makes the item's USD None (its tokens still count), never a guessed 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from crewbus_contracts.evals import RunItem, Score, ScoringCost


def add(total: ScoringCost, more: ScoringCost) -> ScoringCost:
    """The two together; `model` is kept while they name one model, else left empty."""
    usd = None if total.cost_usd is None or more.cost_usd is None else (
        total.cost_usd + more.cost_usd)
    same = not total.model or not more.model or total.model == more.model
    return ScoringCost(calls=total.calls + more.calls,
                       input_tokens=total.input_tokens + more.input_tokens,
                       output_tokens=total.output_tokens + more.output_tokens,
                       cost_usd=usd, model=(total.model or more.model) if same else "")


def of_scores(scores: Iterable[Score]) -> ScoringCost:
    """The sum of the scores' costs; a score without one (no model called) adds nothing."""
    total = ScoringCost()
    for score in scores:
        if score.cost is not None:
            total = add(total, score.cost)
    return total


def of_run_item(run: RunItem) -> ScoringCost:
    return of_scores(run.scores)

"""Paired comparisons of two experiments (`crewbus eval compare`), and the per-item result
format they read (`--from-jsonl`) and `crewbus eval export` writes.

One result per line, pairs matched by (item_id, epoch):

    {"item_id": "sum-1", "epoch": 0, "scores": {"exact": true, "judge": 0.8},
     "cost_usd": 0.0012, "latency_s": 2.4, "tokens": 830,
     "answer": "4", "task_id": "t-…"}

A scorer's value is `true`/`false` (boolean), a number in 0..1 (numeric), a string label
(categorical), or `null` when the scorer could not score that item (counted as a fail, or
0). A scorer absent from `scores` did not apply to the item (its `where`), so the pair is
left out of that scorer's figures.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from crewbus_contracts.base import Model

ScoreValue = bool | float | str | None


class ResultRow(Model):
    """One item's result in one epoch, as in the JSONL format above."""

    item_id: Annotated[str, msgspec.Meta(min_length=1)]
    epoch: Annotated[int, msgspec.Meta(ge=0)] = 0
    scores: dict[str, ScoreValue] = {}
    cost_usd: float | None = None
    latency_s: float | None = None
    tokens: int | None = None
    answer: str | None = None
    task_id: str | None = None
    eval_cost_usd: float | None = None
    """What scoring the item cost (the judge's calls), apart from the task's `cost_usd`."""
    eval_tokens: int | None = None


class ItemKey(Model):
    item_id: str
    epoch: int = 0


McNemarTest = Literal["exact binomial", "chi-square, continuity corrected", "none"]
"""Exact binomial below 25 discordant pairs, chi-square above; none without any."""


class BooleanComparison(Model, tag_field="type", tag="boolean"):
    """A pass/fail scorer on both sides of the pairs. `b`: pairs the baseline passed and
    the candidate failed (regressions); `c`: the other way (improvements). McNemar's test
    looks at those alone: pairs both passed or both failed say nothing about a change."""

    name: str
    pairs: int
    baseline_passed: int
    candidate_passed: int
    baseline_pass_rate: float | None
    candidate_pass_rate: float | None
    difference: float | None
    """candidate - baseline pass rate, over the pairs."""
    b: int
    c: int
    test: McNemarTest
    statistic: float | None = None
    """The chi-square statistic (None for the exact test)."""
    p_value: float | None = None
    baseline_errors: int = 0
    candidate_errors: int = 0
    """Pairs where that side could not score: counted as a fail."""


class NumericComparison(Model, tag_field="type", tag="numeric"):
    """A 0..1 scorer on both sides: means, the mean paired difference (candidate -
    baseline) with its bootstrap interval, Wilcoxon signed-rank and the paired t-test."""

    name: str
    pairs: int
    baseline_mean: float | None
    candidate_mean: float | None
    mean_difference: float | None
    difference_low: float | None = None
    difference_high: float | None = None
    confidence: float = 0.95
    resamples: int = 0
    seed: int = 0
    wilcoxon_statistic: float | None = None
    wilcoxon_p: float | None = None
    t_statistic: float | None = None
    t_p: float | None = None
    cohens_dz: float | None = None
    """Mean difference / standard deviation of the differences (None when they are all
    equal)."""
    ties: int = 0
    """Pairs with no difference (Wilcoxon leaves them out)."""
    improved: int = 0
    regressed: int = 0
    baseline_errors: int = 0
    candidate_errors: int = 0
    """Pairs where that side could not score: counted as 0."""
    note: str = ""


class CategoricalComparison(Model, tag_field="type", tag="categorical"):
    """A labelling scorer: label counts on each side and the pairs whose label changed."""

    name: str
    pairs: int
    baseline_labels: dict[str, int] = {}
    candidate_labels: dict[str, int] = {}
    changed: int = 0


ScorerComparison = BooleanComparison | NumericComparison | CategoricalComparison


class MetricDelta(Model):
    baseline: float | None
    candidate: float | None
    delta: float | None
    """candidate - baseline."""


class RunDeltas(Model):
    """Spend and speed per side, over every result of each side."""

    cost_usd_per_item: MetricDelta
    tokens_per_item: MetricDelta
    latency_p50_s: MetricDelta
    latency_p95_s: MetricDelta
    baseline_cost_unknown: int = 0
    candidate_cost_unknown: int = 0
    eval_cost_usd_per_item: MetricDelta | None = None
    """What scoring cost per item (the judge's calls), apart from the tasks' cost: over the
    results whose evaluation cost is known. None in a comparison made before it was kept."""
    baseline_eval_cost_unknown: int = 0
    """Results a judge scored with an unpriced model (`eval_tokens` set, no USD)."""
    candidate_eval_cost_unknown: int = 0


class ItemChange(Model):
    """One item that got better or worse on one scorer, with what `crewbus trace` needs."""

    item_id: str
    epoch: int
    scorer: str
    baseline_value: ScoreValue
    candidate_value: ScoreValue
    baseline_answer: str = ""
    """The answer's first line."""
    candidate_answer: str = ""
    baseline_task_id: str = ""
    candidate_task_id: str = ""


class GateCheck(Model):
    scorer: str
    drop: float | None
    """baseline - candidate (pass rate or mean): positive when the candidate is worse."""
    p_value: float | None
    test: str
    failed: bool


class GateResult(Model):
    """The gate: fails when, on some scorer, the candidate is worse than the baseline by
    more than `max_drop` and the paired test finds the difference significant (p <
    `alpha`), or when the candidate lacks items or scorers the baseline has."""

    passed: bool
    max_drop: float
    alpha: float
    checks: list[GateCheck] = []
    reasons: list[str] = []


class Comparison(Model):
    """Everything `crewbus eval compare` prints, machine-readable (`--json`)."""

    baseline: str
    candidate: str
    pairs: int
    scorers: list[ScorerComparison] = []
    runs: RunDeltas | None = None
    regressed: list[ItemChange] = []
    improved: list[ItemChange] = []
    only_in_baseline: list[ItemKey] = []
    only_in_candidate: list[ItemKey] = []
    scorers_only_in_baseline: list[str] = []
    scorers_only_in_candidate: list[str] = []
    seed: int = 0
    resamples: int = 0
    confidence: float = 0.95
    gate: GateResult | None = None

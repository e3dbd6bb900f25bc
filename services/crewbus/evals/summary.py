"""An experiment's summary: per scorer pass rate and mean with their intervals, spend,
latency, and whether its thresholds hold.

The counting rules (a CI gate must never pass by losing items):

- A run item is one (item_id, epoch). A second run item for the same pair is a
  duplicate: only the first counts, and the run does not pass.
- For each scorer, the denominator is `scored + errors + missing`: an item the scorer
  judged, an item it could not judge (a Score with `error`, or a run item that errored
  before any score), and an expected item with no run item at all. An item outside the
  scorer's `where` has no Score for it and is not counted.
- Pass rate = passes / denominator, with its Wilson interval: for boolean scorers, and
  numeric or categorical ones whose scores carry a verdict (a bar). Mean (numeric, and
  categorical ones whose scores carry a value) = sum of values / denominator: an
  unscored item counts as 0. Its bootstrap interval resamples those same values.
- A threshold compares the pass rate (boolean, categorical) or the mean (numeric) with
  its `min`; one naming a scorer with nothing to show does not hold.
- Spend: the tasks' (`cost_usd_total`, `tokens_total`) and the evaluation's (the judge's
  calls: `eval_cost_usd_total`, `eval_tokens_total`) are kept apart; an item whose cost is
  unknown (a model without a price) is counted as unknown, never as zero.
- `passed`: every threshold holds, and nothing is missing, duplicated, errored (run item
  status `error`) or unscored (any scorer error).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crewbus.evals.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_mean_interval,
    percentile,
    wilson_interval,
)
from crewbus_contracts.evals import (
    ExperimentSummary,
    RunItem,
    Score,
    ScorerSummary,
    ScoreType,
    Threshold,
    ThresholdResult,
)


def unique_run_items(run_items: Iterable[RunItem]) -> tuple[list[RunItem], int]:
    """The first run item of each (item_id, epoch), and how many duplicates were dropped."""
    seen: set[tuple[str, int]] = set()
    unique: list[RunItem] = []
    duplicates = 0
    for run_item in run_items:
        key = (run_item.item_id, run_item.epoch)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append(run_item)
    return unique, duplicates


def summarise(
    run_items: Iterable[RunItem],
    scorers: Sequence[tuple[str, ScoreType]],
    thresholds: Sequence[Threshold] = (),
    items_expected: int | None = None,
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
) -> ExperimentSummary:
    """The summary of an experiment's run items (see the module's counting rules).
    `items_expected` is the number of (item, epoch) pairs the experiment should have;
    None: as many as there are."""
    unique, duplicates = unique_run_items(run_items)
    expected = len(unique) if items_expected is None else items_expected
    missing = max(0, expected - len(unique))
    summaries = [
        scorer_summary(name, kind, unique, missing, seed=seed, resamples=resamples)
        for name, kind in scorers
    ]
    costs = [r.cost_usd for r in unique if r.cost_usd is not None]
    eval_costs = [r.eval_cost_usd for r in unique if r.eval_cost_usd is not None]
    latencies = [r.latency_s for r in unique if r.latency_s is not None]
    results = [threshold_result(t, summaries) for t in thresholds]
    errored = sum(1 for r in unique if r.status == "error")
    clean = (
        missing == 0 and duplicates == 0 and errored == 0
        and all(s.errors == 0 for s in summaries)
    )
    return ExperimentSummary(
        items_expected=expected,
        items_done=len(unique),
        items_errored=errored,
        items_missing=missing,
        items_duplicated=duplicates,
        scorers=summaries,
        cost_usd_total=sum(costs),
        cost_usd_per_item=sum(costs) / len(costs) if costs else 0.0,
        cost_unknown_items=len(unique) - len(costs),
        tokens_total=sum(r.tokens for r in unique),
        eval_cost_usd_total=sum(eval_costs),
        eval_cost_unknown_items=len(unique) - len(eval_costs),
        eval_tokens_total=sum(r.eval_tokens for r in unique),
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        thresholds=results,
        bootstrap_seed=seed,
        passed=clean and all(r.held for r in results),
    )


def _score_of(run_item: RunItem, name: str) -> Score | None:
    return next((s for s in run_item.scores if s.name == name), None)


def scorer_summary(
    name: str,
    kind: ScoreType,
    run_items: Sequence[RunItem],
    missing: int = 0,
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
) -> ScorerSummary:
    """One scorer over unique run items (see the module's counting rules)."""
    judged: list[Score] = []
    errors = 0
    for run_item in run_items:
        score = _score_of(run_item, name)
        if score is None:
            errors += run_item.status == "error"  # never scored: the run broke first
        elif score.error is not None:
            errors += 1
        else:
            judged.append(score)
    counted = len(judged) + errors + missing
    passes = sum(1 for s in judged if s.passed is True)
    has_verdicts = kind == "boolean" or any(s.passed is not None for s in judged)
    summary = ScorerSummary(
        name=name, type=kind, scored=len(judged), errors=errors, missing=missing,
        passed=passes,
        labels=_labels(judged),
    )
    if has_verdicts and counted:
        interval = wilson_interval(passes, counted)
        assert interval is not None
        summary.pass_rate = passes / counted
        summary.pass_rate_low, summary.pass_rate_high = interval
    values = [s.value for s in judged if s.value is not None]
    wants_mean = kind == "numeric" or (kind == "categorical" and values)
    if wants_mean and counted:
        padded = values + [0.0] * (counted - len(values))
        summary.mean = sum(padded) / counted
        interval = bootstrap_mean_interval(padded, seed=seed, resamples=resamples)
        if interval is not None:
            summary.mean_low, summary.mean_high = interval
    return summary


def _labels(scores: Sequence[Score]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for score in scores:
        if score.label is not None:
            counts[score.label] = counts.get(score.label, 0) + 1
    return dict(sorted(counts.items()))


def threshold_result(threshold: Threshold, summaries: Sequence[ScorerSummary]) -> ThresholdResult:
    """Whether one threshold holds: the scorer's mean (numeric) or pass rate (otherwise)."""
    summary = next((s for s in summaries if s.name == threshold.scorer), None)
    observed: float | None = None
    if summary is not None:
        observed = summary.mean if summary.type == "numeric" else summary.pass_rate
    held = observed is not None and observed >= threshold.min
    return ThresholdResult(
        scorer=threshold.scorer, min=threshold.min, observed=observed, held=held
    )

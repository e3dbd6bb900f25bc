"""Paired comparison of two experiments: is the candidate better than the baseline?

Results are paired by (item_id, epoch); each scorer is compared over the pairs where
both sides have it. Every test comes from scipy:

- boolean: McNemar's test on the discordant pairs `b` (baseline passed, candidate
  failed) and `c` (the reverse): exact binomial (`binomtest(b, b + c, 0.5)`) below 25
  discordant pairs, else chi-square with continuity correction,
  `(|b - c| - 1)² / (b + c)` against `chi2(1)`. No discordant pair: p = 1.
- numeric: the mean paired difference (candidate - baseline) with a bootstrap interval
  (`bootstrap_mean_interval`, fixed seed, reported), Wilcoxon signed-rank
  (`scipy.stats.wilcoxon`: zero differences dropped, counted as ties; no p when every
  pair ties), the paired t-test (`scipy.stats.ttest_rel`; no t when the differences are
  all equal), and Cohen's d_z = mean difference / sd of the differences. Differences
  are rounded to 12 decimals first, so float noise is a tie.
- categorical: label counts and how many pairs changed label (no test).

A side that could not score a pair (`null`) counts as a fail (boolean) or 0 (numeric),
as in an experiment's summary. Items or scorers on one side only are listed, never
dropped in silence. `gate` (see `crewbus.evals.gate`) turns a comparison into a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from crewbus.evals.gate import gate
from crewbus.evals.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_mean_interval,
    percentile,
)
from crewbus_contracts.comparisons import (
    BooleanComparison,
    CategoricalComparison,
    Comparison,
    ItemChange,
    ItemKey,
    McNemarTest,
    MetricDelta,
    NumericComparison,
    ResultRow,
    RunDeltas,
    ScorerComparison,
    ScoreValue,
)

EXACT_BELOW = 25
"""McNemar's exact binomial test below this many discordant pairs, chi-square from it."""
DECIMALS = 12
"""Paired differences are rounded to this many decimals, so float noise (0.3 - 0.1 vs
0.2) is a tie, not a difference."""

__all__ = ["EXACT_BELOW", "CompareError", "compare", "gate", "mcnemar"]


class CompareError(ValueError):
    """The two sides cannot be compared (duplicates, a scorer of two types): one line."""


@dataclass(frozen=True)
class _Pair:
    key: tuple[str, int]
    baseline: ResultRow
    candidate: ResultRow


def value_kind(value: ScoreValue) -> str | None:
    """`boolean`, `numeric` or `categorical` for a score value; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "numeric"
    return "categorical"


def first_line(text: str | None) -> str:
    """An answer's first non-blank line, for reports."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def compare(
    baseline: Sequence[ResultRow],
    candidate: Sequence[ResultRow],
    *,
    baseline_name: str = "baseline",
    candidate_name: str = "candidate",
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
) -> Comparison:
    """Compare `candidate` with `baseline`, pair by pair (see the module's docstring)."""
    a, b = _by_key(baseline, baseline_name), _by_key(candidate, candidate_name)
    pairs = [_Pair(k, a[k], b[k]) for k in sorted(a.keys() & b.keys())]
    names_a = {n for r in baseline for n in r.scores}
    names_b = {n for r in candidate for n in r.scores}
    kinds = _kinds([*baseline, *candidate])
    scorers: list[ScorerComparison] = []
    regressed: list[ItemChange] = []
    improved: list[ItemChange] = []
    for name in sorted(names_a & names_b):
        both = [p for p in pairs if name in p.baseline.scores and name in p.candidate.scores]
        kind = kinds.get(name)
        if kind == "boolean":
            scorers.append(_boolean(name, both, regressed, improved))
        elif kind == "numeric":
            scorers.append(
                _numeric(name, both, regressed, improved, seed, resamples, confidence)
            )
        elif kind == "categorical":
            scorers.append(_categorical(name, both))
    return Comparison(
        baseline=baseline_name,
        candidate=candidate_name,
        pairs=len(pairs),
        scorers=scorers,
        runs=_runs(baseline, candidate),
        regressed=regressed,
        improved=improved,
        only_in_baseline=[ItemKey(item_id=k[0], epoch=k[1]) for k in sorted(a.keys() - b.keys())],
        only_in_candidate=[ItemKey(item_id=k[0], epoch=k[1]) for k in sorted(b.keys() - a.keys())],
        scorers_only_in_baseline=sorted(names_a - names_b),
        scorers_only_in_candidate=sorted(names_b - names_a),
        seed=seed,
        resamples=resamples,
        confidence=confidence,
    )


def _by_key(rows: Sequence[ResultRow], side: str) -> dict[tuple[str, int], ResultRow]:
    found: dict[tuple[str, int], ResultRow] = {}
    for row in rows:
        key = (row.item_id, row.epoch)
        if key in found:
            raise CompareError(f"{side} has two results for item {row.item_id!r} epoch {row.epoch}")
        found[key] = row
    return found


def _kinds(rows: Sequence[ResultRow]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for row in rows:
        for name, value in row.scores.items():
            kind = value_kind(value)
            if kind is not None and kinds.setdefault(name, kind) != kind:
                raise CompareError(
                    f"scorer {name!r} is {kinds[name]} on one side and {kind} on the other"
                )
    return kinds


def _change(pair: _Pair, name: str) -> ItemChange:
    return ItemChange(
        item_id=pair.key[0],
        epoch=pair.key[1],
        scorer=name,
        baseline_value=pair.baseline.scores[name],
        candidate_value=pair.candidate.scores[name],
        baseline_answer=first_line(pair.baseline.answer),
        candidate_answer=first_line(pair.candidate.answer),
        baseline_task_id=pair.baseline.task_id or "",
        candidate_task_id=pair.candidate.task_id or "",
    )


def mcnemar(b: int, c: int) -> tuple[McNemarTest, float | None, float]:
    """(test, chi-square statistic or None, two-sided p) for discordant counts b and c."""
    n = b + c
    if n == 0:
        return "none", None, 1.0
    if n < EXACT_BELOW:
        return "exact binomial", None, float(stats.binomtest(b, n, 0.5).pvalue)
    statistic = (abs(b - c) - 1) ** 2 / n
    return "chi-square, continuity corrected", statistic, float(stats.chi2.sf(statistic, 1))


def _boolean(
    name: str, pairs: list[_Pair], regressed: list[ItemChange], improved: list[ItemChange]
) -> BooleanComparison:
    base = [p.baseline.scores[name] is True for p in pairs]
    cand = [p.candidate.scores[name] is True for p in pairs]
    b = c = 0
    for pair, was, now in zip(pairs, base, cand, strict=True):
        if was and not now:
            b += 1
            regressed.append(_change(pair, name))
        elif now and not was:
            c += 1
            improved.append(_change(pair, name))
    test, statistic, p_value = mcnemar(b, c)
    n = len(pairs)
    rate_a = sum(base) / n if n else None
    rate_b = sum(cand) / n if n else None
    return BooleanComparison(
        name=name,
        pairs=n,
        baseline_passed=sum(base),
        candidate_passed=sum(cand),
        baseline_pass_rate=rate_a,
        candidate_pass_rate=rate_b,
        difference=None if rate_a is None or rate_b is None else rate_b - rate_a,
        b=b,
        c=c,
        test=test,
        statistic=statistic,
        p_value=p_value,
        baseline_errors=sum(1 for p in pairs if p.baseline.scores[name] is None),
        candidate_errors=sum(1 for p in pairs if p.candidate.scores[name] is None),
    )


def _number(value: ScoreValue) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _numeric(
    name: str,
    pairs: list[_Pair],
    regressed: list[ItemChange],
    improved: list[ItemChange],
    seed: int,
    resamples: int,
    confidence: float,
) -> NumericComparison:
    base = np.array([_number(p.baseline.scores[name]) for p in pairs], dtype=float)
    cand = np.array([_number(p.candidate.scores[name]) for p in pairs], dtype=float)
    diffs = np.round(cand - base, DECIMALS)
    result = NumericComparison(
        name=name,
        pairs=len(pairs),
        baseline_mean=float(base.mean()) if len(pairs) else None,
        candidate_mean=float(cand.mean()) if len(pairs) else None,
        mean_difference=float(diffs.mean()) if len(pairs) else None,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        baseline_errors=sum(1 for p in pairs if p.baseline.scores[name] is None),
        candidate_errors=sum(1 for p in pairs if p.candidate.scores[name] is None),
    )
    order = np.argsort(diffs, kind="stable")
    for index in order:
        if diffs[index] < 0:
            regressed.append(_change(pairs[index], name))
    for index in order[::-1]:
        if diffs[index] > 0:
            improved.append(_change(pairs[index], name))
    result.improved = int((diffs > 0).sum())
    result.regressed = int((diffs < 0).sum())
    result.ties = len(pairs) - result.improved - result.regressed
    if len(pairs) < 2:
        result.note = "fewer than 2 pairs: no interval or test"
        return result
    interval = bootstrap_mean_interval(
        diffs.tolist(), confidence=confidence, resamples=resamples, seed=seed
    )
    if interval is not None:
        result.difference_low, result.difference_high = interval
    notes = []
    if result.ties == len(pairs):
        notes.append("every pair tied: no Wilcoxon test")
    else:
        wilcoxon = stats.wilcoxon(diffs)
        result.wilcoxon_statistic = float(wilcoxon.statistic)
        result.wilcoxon_p = float(wilcoxon.pvalue)
    spread = float(np.std(diffs, ddof=1))
    if np.ptp(diffs) == 0:
        notes.append("every difference is equal: no t-test or effect size")
    else:
        t_test = stats.ttest_rel(cand, base)
        result.t_statistic = float(t_test.statistic)
        result.t_p = float(t_test.pvalue)
        result.cohens_dz = float(diffs.mean()) / spread
    result.note = "; ".join(notes)
    return result


def _categorical(name: str, pairs: list[_Pair]) -> CategoricalComparison:
    def counts(values: list[ScoreValue]) -> dict[str, int]:
        found: dict[str, int] = {}
        for value in values:
            label = "(error)" if value is None else str(value)
            found[label] = found.get(label, 0) + 1
        return dict(sorted(found.items()))

    base = [p.baseline.scores[name] for p in pairs]
    cand = [p.candidate.scores[name] for p in pairs]
    return CategoricalComparison(
        name=name,
        pairs=len(pairs),
        baseline_labels=counts(base),
        candidate_labels=counts(cand),
        changed=sum(1 for x, y in zip(base, cand, strict=True) if x != y),
    )


def _delta(a: float | None, b: float | None) -> MetricDelta:
    return MetricDelta(baseline=a, candidate=b, delta=None if a is None or b is None else b - a)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _runs(baseline: Sequence[ResultRow], candidate: Sequence[ResultRow]) -> RunDeltas:
    def side(rows: Sequence[ResultRow]) -> tuple[float | None, ...]:
        costs = [r.cost_usd for r in rows if r.cost_usd is not None]
        tokens = [float(r.tokens) for r in rows if r.tokens is not None]
        latencies = [r.latency_s for r in rows if r.latency_s is not None]
        return (
            _mean(costs), _mean(tokens), percentile(latencies, 50), percentile(latencies, 95)
        )

    a, b = side(baseline), side(candidate)
    eval_a, eval_b = (_mean([r.eval_cost_usd for r in rows if r.eval_cost_usd is not None])
                      for rows in (baseline, candidate))
    return RunDeltas(
        cost_usd_per_item=_delta(a[0], b[0]),
        tokens_per_item=_delta(a[1], b[1]),
        latency_p50_s=_delta(a[2], b[2]),
        latency_p95_s=_delta(a[3], b[3]),
        baseline_cost_unknown=sum(1 for r in baseline if r.cost_usd is None),
        candidate_cost_unknown=sum(1 for r in candidate if r.cost_usd is None),
        eval_cost_usd_per_item=_delta(eval_a, eval_b),
        baseline_eval_cost_unknown=sum(map(_eval_cost_unknown, baseline)),
        candidate_eval_cost_unknown=sum(map(_eval_cost_unknown, candidate)),
    )


def _eval_cost_unknown(row: ResultRow) -> bool:
    """A judge scored it (its tokens are there) with a model that has no price."""
    return row.eval_cost_usd is None and bool(row.eval_tokens)

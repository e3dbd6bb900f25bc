"""The comparison gate: may the candidate replace the baseline?

For each boolean and numeric scorer compared (or those named), the drop is baseline -
candidate: the pass-rate drop over the pairs (boolean) or the mean drop (numeric). A
scorer fails the gate when BOTH

- the drop is larger than `max_drop` (default 0.02: two points of pass rate), and
- the paired test says the difference is significant: p < `alpha` (McNemar for
  boolean scorers, Wilcoxon signed-rank for numeric ones; two-sided).

The gate also fails, whatever the figures, when the candidate lacks items or scorers the
baseline has (unless `allow_missing`): a run that lost items must not pass by losing them.

What it does not say: a passing gate is not proof of "no regression". With few items the
tests rarely reach significance, so a real drop can pass; the drop and its interval in
the comparison are the figures to read. Several scorers are each tested at `alpha`, with
no correction for multiple tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from crewbus_contracts.comparisons import (
    BooleanComparison,
    Comparison,
    GateCheck,
    GateResult,
    NumericComparison,
)


class GateError(ValueError):
    """The gate was asked about a scorer the comparison does not have."""


def gate(
    comparison: Comparison,
    max_drop: float = 0.02,
    alpha: float = 0.05,
    *,
    scorers: Sequence[str] | None = None,
    allow_missing: bool = False,
) -> GateResult:
    """The verdict on `comparison` (see the module's rule)."""
    if not 0 <= max_drop <= 1:
        raise GateError(f"max_drop must be in 0..1, not {max_drop}")
    if not 0 < alpha < 1:
        raise GateError(f"alpha must be between 0 and 1, not {alpha}")
    tested = [s for s in comparison.scorers if isinstance(s, BooleanComparison | NumericComparison)]
    if scorers is not None:
        known = {s.name for s in tested}
        unknown = [name for name in scorers if name not in known]
        if unknown:
            raise GateError(
                f"no boolean or numeric scorer {unknown[0]!r} in the comparison "
                f"(compared: {', '.join(sorted(known)) or 'none'})"
            )
        tested = [s for s in tested if s.name in scorers]
    checks = [_check(s, max_drop, alpha) for s in tested]
    reasons = [
        f"{c.scorer}: dropped {c.drop:.3f} > {max_drop:g} with p = {c.p_value:.3g} < {alpha:g}"
        for c in checks
        if c.failed and c.drop is not None and c.p_value is not None
    ]
    if not allow_missing:
        if comparison.only_in_baseline:
            reasons.append(
                f"the candidate lacks {len(comparison.only_in_baseline)} item(s) the baseline has"
            )
        if comparison.scorers_only_in_baseline:
            names = ", ".join(comparison.scorers_only_in_baseline)
            reasons.append(f"the candidate lacks scorer(s) the baseline has: {names}")
    return GateResult(
        passed=not reasons, max_drop=max_drop, alpha=alpha, checks=checks, reasons=reasons
    )


def _check(
    scorer: BooleanComparison | NumericComparison, max_drop: float, alpha: float
) -> GateCheck:
    """Rounded to 12 decimals, so a drop of exactly `max_drop` is not "more" by float noise."""
    if isinstance(scorer, BooleanComparison):
        drop = None if scorer.difference is None else round(-scorer.difference, 12)
        p_value, test = scorer.p_value, f"McNemar ({scorer.test})"
    else:
        drop = None if scorer.mean_difference is None else round(-scorer.mean_difference, 12)
        p_value, test = scorer.wilcoxon_p, "Wilcoxon signed-rank"
    failed = drop is not None and p_value is not None and drop > max_drop and p_value < alpha
    return GateCheck(scorer=scorer.name, drop=drop, p_value=p_value, test=test, failed=failed)

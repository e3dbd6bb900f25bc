"""Evaluation statistics against scipy and the closed-form formulas, and the summary's
counting rules (a missing, duplicated or unscored item is never a pass)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from crewbus.evals.stats import (
    DEFAULT_SEED,
    bootstrap_mean_interval,
    percentile,
    wilson_interval,
)
from crewbus.evals.summary import summarise
from crewbus_contracts.evals import RunItem, Score, ScoreType, Threshold


def wilson_closed_form(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 10), (7, 10), (10, 10), (83, 200)])
def test_wilson_interval_matches_the_closed_form_and_scipy(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)  # type: ignore[misc]
    z = float(stats.norm.ppf(0.975))
    assert (low, high) == pytest.approx(wilson_closed_form(k, n, z), abs=1e-12)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == (ci.low, ci.high)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_interval_narrows_with_confidence_and_refuses_nonsense() -> None:
    wide, narrow = wilson_interval(7, 10, 0.99), wilson_interval(7, 10, 0.80)
    assert wide is not None and narrow is not None
    assert wide[0] < narrow[0] and narrow[1] < wide[1]
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_bootstrap_with_a_fixed_seed_repeats_and_equals_scipy_called_directly() -> None:
    values = [0.1, 0.4, 0.35, 0.8, 0.9, 0.05, 0.6, 0.7, 0.3, 0.55]
    first = bootstrap_mean_interval(values, seed=42)
    assert first == bootstrap_mean_interval(values, seed=42)
    assert first != bootstrap_mean_interval(values, seed=43)
    direct = stats.bootstrap(
        (np.array(values),), np.mean, n_resamples=10_000, confidence_level=0.95,
        method="BCa", rng=np.random.default_rng(42),
    ).confidence_interval
    assert first == (direct.low, direct.high)
    assert first is not None and first[0] < float(np.mean(values)) < first[1]


def test_bootstrap_percentile_method_equals_scipy_too() -> None:
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    ours = bootstrap_mean_interval(values, seed=DEFAULT_SEED, method="percentile",
                                   resamples=2000)
    direct = stats.bootstrap(
        (np.array(values),), np.mean, n_resamples=2000, method="percentile",
        rng=np.random.default_rng(DEFAULT_SEED),
    ).confidence_interval
    assert ours == (direct.low, direct.high)


def test_bootstrap_answers_degenerate_data_without_resampling() -> None:
    assert bootstrap_mean_interval([]) is None
    assert bootstrap_mean_interval([0.7]) is None  # one value says nothing about spread
    assert bootstrap_mean_interval([0.25, 0.25, 0.25]) == (0.25, 0.25)


def test_percentiles_are_numpys() -> None:
    values = [0.5, 2.0, 1.0, 4.0, 3.0]
    assert percentile(values, 50) == 2.0
    assert percentile(values, 95) == float(np.percentile(values, 95))
    assert percentile([], 50) is None


# -- summary --------------------------------------------------------------------------


def boolean(name: str, passed: bool) -> Score:
    return Score(name=name, type="boolean", scorer_version="1",
                 value=1.0 if passed else 0.0, passed=passed)


def numeric(name: str, value: float) -> Score:
    return Score(name=name, type="numeric", scorer_version="1", value=value)


def errored(name: str, kind: str = "boolean") -> Score:
    return Score(name=name, type=kind, scorer_version="1", passed=False,  # type: ignore[arg-type]
                 error="the judge failed")


def run_item(item_id: str, *scores: Score, epoch: int = 0, status: str = "completed",
             cost: float | None = 0.01, latency: float | None = 1.0) -> RunItem:
    return RunItem(experiment="e", item_id=item_id, epoch=epoch, status=status,  # type: ignore[arg-type]
                   scores=list(scores), cost_usd=cost, latency_s=latency, tokens=100)


SCORERS: list[tuple[str, ScoreType]] = [("exact", "boolean"), ("judge", "numeric")]


def test_a_clean_run_passes_its_thresholds_with_wilson_and_bootstrap_figures() -> None:
    items = [run_item(f"i{i}", boolean("exact", i < 8), numeric("judge", 0.5 + i / 20))
             for i in range(10)]
    summary = summarise(items, SCORERS, [Threshold(scorer="exact", min=0.8),
                                         Threshold(scorer="judge", min=0.6)], 10)
    exact, judge = summary.scorers
    assert (exact.passed, exact.scored, exact.pass_rate) == (8, 10, 0.8)
    assert (exact.pass_rate_low, exact.pass_rate_high) == wilson_interval(8, 10)
    assert exact.mean is None
    values = [0.5 + i / 20 for i in range(10)]
    assert judge.mean == pytest.approx(sum(values) / 10)
    assert judge.pass_rate is None  # a numeric scorer without a bar has no pass rate
    assert (judge.mean_low, judge.mean_high) == bootstrap_mean_interval(values)
    assert [t.held for t in summary.thresholds] == [True, True]
    assert summary.passed
    assert summary.cost_usd_total == pytest.approx(0.1)
    assert summary.tokens_total == 1000
    assert summary.latency_p50_s == 1.0


def test_missing_items_count_as_failures_in_the_denominator() -> None:
    items = [run_item(f"i{i}", boolean("exact", True), numeric("judge", 1.0)) for i in range(8)]
    summary = summarise(items, SCORERS, [Threshold(scorer="exact", min=0.8)], items_expected=10)
    exact, judge = summary.scorers
    assert summary.items_missing == 2 and exact.missing == 2
    assert exact.pass_rate == 0.8 and exact.pass_rate_high is not None
    assert (exact.pass_rate_low, exact.pass_rate_high) == wilson_interval(8, 10)
    assert judge.mean == 0.8  # a missing item is a 0
    assert summary.thresholds[0].held  # 0.8 ≥ 0.8 ...
    assert not summary.passed  # ... but a run with missing items never passes


def test_a_scorer_that_could_not_score_is_a_failure_never_a_pass() -> None:
    items = [run_item("a", boolean("exact", True), numeric("judge", 0.9)),
             run_item("b", errored("exact"), errored("judge", "numeric"))]
    summary = summarise(items, SCORERS, [Threshold(scorer="exact", min=0.5)], 2)
    exact, judge = summary.scorers
    assert (exact.scored, exact.errors, exact.passed, exact.pass_rate) == (1, 1, 1, 0.5)
    assert judge.mean == pytest.approx(0.45)
    assert summary.thresholds[0].held and not summary.passed


def test_an_errored_run_item_without_scores_counts_against_every_scorer() -> None:
    items = [run_item("a", boolean("exact", True), numeric("judge", 1.0)),
             run_item("b", status="error")]
    summary = summarise(items, SCORERS, [], 2)
    assert summary.items_errored == 1
    assert [s.errors for s in summary.scorers] == [1, 1]
    assert summary.scorers[0].pass_rate == 0.5 and not summary.passed


def test_an_item_outside_a_scorers_where_is_not_counted() -> None:
    items = [run_item("a", boolean("exact", True)), run_item("b", boolean("exact", True),
                                                             numeric("judge", 0.2))]
    summary = summarise(items, SCORERS, [], 2)
    judge = summary.scorers[1]
    assert judge.scored == 1 and judge.errors == 0 and judge.mean == 0.2
    assert summary.passed


def test_a_duplicate_run_item_is_ignored_and_fails_the_run() -> None:
    items = [run_item("a", boolean("exact", True)), run_item("a", boolean("exact", False)),
             run_item("a", boolean("exact", True), epoch=1)]
    summary = summarise(items, [("exact", "boolean")], [Threshold(scorer="exact", min=1.0)], 2)
    assert summary.items_duplicated == 1 and summary.items_done == 2
    assert summary.scorers[0].pass_rate == 1.0  # the first copy counts
    assert summary.thresholds[0].held and not summary.passed


def test_a_threshold_below_its_min_fails_and_one_with_no_figure_does_not_hold() -> None:
    items = [run_item(f"i{i}", boolean("exact", i < 7)) for i in range(10)]
    summary = summarise(items, [("exact", "boolean"), ("judge", "numeric")],
                        [Threshold(scorer="exact", min=0.8), Threshold(scorer="judge", min=0.1)],
                        10)
    assert [(t.observed, t.held) for t in summary.thresholds] == [(0.7, False), (None, False)]
    assert not summary.passed


def test_unknown_costs_are_counted_apart_not_as_zero() -> None:
    items = [run_item("a", cost=0.02), run_item("b", cost=None), run_item("c", cost=0.04)]
    summary = summarise(items, [], [], 3)
    assert summary.cost_usd_total == pytest.approx(0.06)
    assert summary.cost_usd_per_item == pytest.approx(0.03)
    assert summary.cost_unknown_items == 1


def test_categorical_labels_are_counted_and_a_numeric_bar_gives_a_pass_rate() -> None:
    critic = [Score(name="critic", type="numeric", scorer_version="1", value=v, passed=v >= 0.7)
              for v in (0.9, 0.6, 0.8)]
    tone = [Score(name="tone", type="categorical", scorer_version="1", label=label)
            for label in ("polite", "curt", "polite")]
    items = [run_item(f"i{i}", critic[i], tone[i]) for i in range(3)]
    summary = summarise(items, [("critic", "numeric"), ("tone", "categorical")], [], 3)
    critic_summary, tone_summary = summary.scorers
    assert critic_summary.passed == 2 and critic_summary.pass_rate == pytest.approx(2 / 3)
    assert critic_summary.mean == pytest.approx(2.3 / 3)
    assert tone_summary.labels == {"curt": 1, "polite": 2}
    assert tone_summary.pass_rate is None and tone_summary.mean is None

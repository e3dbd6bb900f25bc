"""Paired comparison on JSONL fixtures (tests/data/evals/), each figure checked against
scipy computed here from the raw file, plus the gate's outcomes and the file format's
line-numbered errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from scipy import stats

from crewbus.evals.compare import EXACT_BELOW, CompareError, compare, gate, mcnemar
from crewbus.evals.compare_render import render_comparison
from crewbus.evals.gate import GateError
from crewbus.evals.results_jsonl import (
    ResultsFileError,
    compare_jsonl_files,
    read_results,
    rows_from_run_items,
    write_results,
)
from crewbus.evals.stats import DEFAULT_SEED
from crewbus_contracts.comparisons import (
    BooleanComparison,
    CategoricalComparison,
    Comparison,
    NumericComparison,
    ResultRow,
)
from crewbus_contracts.evals import RunItem, Score

DATA = Path(__file__).parent / "data" / "evals"
BASELINE, CANDIDATE = DATA / "baseline.jsonl", DATA / "candidate.jsonl"


def raw(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["item_id"], r.get("epoch", 0)): r for r in rows}


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return compare_jsonl_files(BASELINE, CANDIDATE)


def scorer(comparison: Comparison, name: str) -> Any:
    return next(s for s in comparison.scorers if s.name == name)


def paired(name: str) -> tuple[list[Any], list[Any]]:
    a, b = raw(BASELINE), raw(CANDIDATE)
    keys = sorted(k for k in a.keys() & b.keys()
                  if name in a[k]["scores"] and name in b[k]["scores"])
    return [a[k]["scores"][name] for k in keys], [b[k]["scores"][name] for k in keys]


def test_pairs_by_item_and_epoch_and_reports_items_on_one_side(comparison: Comparison) -> None:
    assert comparison.pairs == 40
    assert [k.item_id for k in comparison.only_in_baseline] == ["only-a"]
    assert [k.item_id for k in comparison.only_in_candidate] == ["only-b"]


def test_few_discordant_pairs_use_mcnemars_exact_binomial(comparison: Comparison) -> None:
    exact = scorer(comparison, "exact")
    assert isinstance(exact, BooleanComparison)
    base, cand = paired("exact")
    b = sum(1 for x, y in zip(base, cand, strict=True) if x and not y)
    c = sum(1 for x, y in zip(base, cand, strict=True) if y and not x)
    assert (exact.b, exact.c) == (b, c) == (3, 8) and b + c < EXACT_BELOW
    assert exact.test == "exact binomial" and exact.statistic is None
    assert exact.p_value == stats.binomtest(3, 11, 0.5).pvalue
    assert exact.p_value == pytest.approx(2 * (1 + 11 + 55 + 165) / 2**11)  # by hand
    assert exact.baseline_pass_rate == sum(base) / 40
    assert exact.candidate_pass_rate == sum(cand) / 40


def test_many_discordant_pairs_use_chi_square_with_continuity_correction(
    comparison: Comparison,
) -> None:
    contains = scorer(comparison, "contains")
    assert (contains.b, contains.c) == (5, 22)
    assert contains.test == "chi-square, continuity corrected"
    assert contains.statistic == pytest.approx((abs(5 - 22) - 1) ** 2 / 27)
    assert contains.p_value == pytest.approx(stats.chi2.sf(256 / 27, 1), rel=1e-12)
    assert contains.p_value == pytest.approx(0.0020755629, rel=1e-6)


def test_mcnemar_switches_branch_at_25_discordant_pairs() -> None:
    assert mcnemar(0, 0) == ("none", None, 1.0)
    assert mcnemar(12, 12)[0] == "exact binomial"
    assert mcnemar(12, 13)[0] == "chi-square, continuity corrected"
    assert mcnemar(12, 13)[2] == pytest.approx(stats.chi2.sf(0.0, 1))


def test_numeric_scores_get_bootstrap_wilcoxon_t_test_and_effect_size(
    comparison: Comparison,
) -> None:
    judge = scorer(comparison, "judge")
    assert isinstance(judge, NumericComparison)
    base_raw, cand_raw = paired("judge")
    base = np.array([0.0 if v is None else v for v in base_raw])
    cand = np.array([0.0 if v is None else v for v in cand_raw])  # an error counts as 0
    diffs = np.round(cand - base, 12)
    assert judge.candidate_errors == 1 and judge.baseline_errors == 0
    assert judge.baseline_mean == pytest.approx(base.mean())
    assert judge.mean_difference == pytest.approx(diffs.mean())
    interval = stats.bootstrap((diffs,), np.mean, n_resamples=10_000, method="BCa",
                               rng=np.random.default_rng(DEFAULT_SEED)).confidence_interval
    assert (judge.difference_low, judge.difference_high) == (interval.low, interval.high)
    assert (judge.resamples, judge.seed) == (10_000, DEFAULT_SEED)
    wilcoxon = stats.wilcoxon(diffs)
    assert judge.wilcoxon_p == wilcoxon.pvalue and judge.wilcoxon_statistic == wilcoxon.statistic
    t_test = stats.ttest_rel(cand, base)
    assert judge.t_p == pytest.approx(t_test.pvalue, rel=1e-9)
    assert judge.t_statistic == pytest.approx(t_test.statistic, rel=1e-9)
    assert judge.cohens_dz == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert judge.ties == int((diffs == 0).sum()) == 8
    assert judge.improved + judge.regressed + judge.ties == 40


def test_all_zero_differences_give_no_wilcoxon_and_no_t_test() -> None:
    rows = [ResultRow(item_id=f"i{i}", scores={"judge": i / 10}) for i in range(5)]
    judge = compare(rows, rows).scorers[0]
    assert isinstance(judge, NumericComparison)
    assert judge.ties == 5 and judge.wilcoxon_p is None and judge.t_p is None
    assert (judge.difference_low, judge.difference_high) == (0.0, 0.0)
    assert "tied" in judge.note


def test_equal_nonzero_differences_give_wilcoxon_but_no_t_test() -> None:
    a = [ResultRow(item_id=f"i{i}", scores={"judge": 0.1 * i}) for i in range(6)]
    b = [ResultRow(item_id=f"i{i}", scores={"judge": 0.1 * i + 0.1}) for i in range(6)]
    judge = compare(a, b).scorers[0]
    assert isinstance(judge, NumericComparison)
    assert judge.wilcoxon_p == stats.wilcoxon(np.full(6, 0.1)).pvalue
    assert judge.t_p is None and judge.cohens_dz is None and "equal" in judge.note
    assert judge.mean_difference == pytest.approx(0.1)


def test_categorical_scores_count_labels_and_changes(comparison: Comparison) -> None:
    label = scorer(comparison, "label")
    assert isinstance(label, CategoricalComparison)
    base, cand = paired("label")
    assert label.changed == sum(1 for x, y in zip(base, cand, strict=True) if x != y) == 10
    assert sum(label.baseline_labels.values()) == 40


def test_regressed_and_improved_items_name_both_answers_and_task_ids(
    comparison: Comparison,
) -> None:
    contains_regressions = [c for c in comparison.regressed if c.scorer == "contains"]
    assert len(contains_regressions) == 5
    first = contains_regressions[0]
    assert first.baseline_value is True and first.candidate_value is False
    number = int(first.item_id[1:])
    assert first.baseline_answer == f"answer {number} from A"  # the first line only
    assert first.candidate_answer == f"answer {number} from B"
    assert (first.baseline_task_id, first.candidate_task_id) == (f"tA{number:02d}",
                                                                 f"tB{number:02d}")
    judge_improved = [c for c in comparison.improved if c.scorer == "judge"]
    gains = [c.candidate_value - c.baseline_value for c in judge_improved]  # type: ignore[operator]
    assert gains == sorted(gains, reverse=True) and len(gains) == 24


def test_cost_tokens_and_latency_deltas_cover_each_side(comparison: Comparison) -> None:
    assert comparison.runs is not None
    a, b = raw(BASELINE).values(), raw(CANDIDATE).values()
    costs_a = [r["cost_usd"] for r in a if r.get("cost_usd") is not None]
    costs_b = [r["cost_usd"] for r in b if r.get("cost_usd") is not None]
    cost = comparison.runs.cost_usd_per_item
    assert cost.baseline == pytest.approx(np.mean(costs_a))
    assert cost.candidate == pytest.approx(np.mean(costs_b))
    assert cost.delta == pytest.approx(np.mean(costs_b) - np.mean(costs_a))
    assert comparison.runs.candidate_cost_unknown == 1
    p95 = comparison.runs.latency_p95_s
    assert p95.candidate == pytest.approx(np.percentile([r["latency_s"] for r in b], 95))


def test_the_gate_fails_a_candidate_that_lacks_baseline_items(comparison: Comparison) -> None:
    result = gate(comparison)
    assert not result.passed
    assert result.reasons == ["the candidate lacks 1 item(s) the baseline has"]
    assert gate(comparison, allow_missing=True).passed  # an improvement passes


def test_the_gate_fails_a_significant_drop_larger_than_allowed() -> None:
    worse = compare_jsonl_files(CANDIDATE, BASELINE)
    result = gate(worse, max_drop=0.02, alpha=0.05, allow_missing=True)
    failed = {c.scorer for c in result.checks if c.failed}
    assert failed == {"contains", "judge"}  # exact: a 12.5-point drop, but p = 0.23
    exact = next(c for c in result.checks if c.scorer == "exact")
    assert exact.drop == pytest.approx(0.125) and not exact.failed
    assert not result.passed
    assert gate(worse, max_drop=0.5, allow_missing=True).passed  # within the allowed drop
    assert gate(worse, alpha=0.001, allow_missing=True, scorers=["exact"]).passed


def test_the_gate_refuses_an_unknown_scorer_and_bad_bounds(comparison: Comparison) -> None:
    with pytest.raises(GateError, match="no boolean or numeric scorer 'nope'"):
        gate(comparison, scorers=["nope"])
    with pytest.raises(GateError, match="alpha"):
        gate(comparison, alpha=0)


def test_the_gate_fails_when_the_candidate_lacks_a_scorer() -> None:
    a = [ResultRow(item_id="i", scores={"exact": True, "judge": 0.5})]
    b = [ResultRow(item_id="i", scores={"exact": True})]
    result = gate(compare(a, b))
    assert not result.passed and "judge" in result.reasons[0]


def test_the_json_form_round_trips_and_the_text_names_every_part(comparison: Comparison) -> None:
    encoded = msgspec.json.encode(msgspec.structs.replace(comparison, gate=gate(comparison)))
    decoded = msgspec.json.decode(encoded, type=Comparison)
    assert decoded.scorers == comparison.scorers and decoded.gate is not None
    assert json.loads(encoded)["scorers"][0]["type"] == "boolean"
    text = render_comparison(comparison, gate(comparison))
    for part in ("McNemar exact binomial", "chi-square", "Wilcoxon", "t-test", "d_z",
                 f"seed {DEFAULT_SEED}", "only in baseline (1", "only-b", "regressed (",
                 "tA00", "gate FAILED"):
        assert part in text, part


def test_run_items_export_and_read_back(tmp_path: Path) -> None:
    def score(name: str, kind: str, **fields: Any) -> Score:
        return Score(name=name, type=kind, scorer_version="1", **fields)  # type: ignore[arg-type]

    items = [
        RunItem(experiment="e", item_id="a", status="completed", task_id="t1", answer="4",
                cost_usd=0.01, latency_s=1.5, tokens=10,
                scores=[score("exact", "boolean", value=1.0, passed=True),
                        score("judge", "numeric", value=0.75, passed=True),
                        score("tone", "categorical", label="polite")]),
        RunItem(experiment="e", item_id="b", status="completed", cost_usd=None,
                scores=[score("exact", "boolean", passed=False, error="boom")]),
    ]
    rows = rows_from_run_items(items)
    path = tmp_path / "out.jsonl"
    assert write_results(path, rows) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["scores"] == {"exact": True, "judge": 0.75, "tone": "polite"}
    assert lines[1]["scores"] == {"exact": None} and "cost_usd" not in lines[1]
    assert read_results(path) == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"item_id": "a"}\nnot json\n', "line 2: not a JSON object"),
        ('{"item_id": "a", "epoch": -1}\n', "line 1: Expected `int` >= 0 - at `$.epoch`"),
        ('{"epoch": 0}\n', "line 1: Object missing required field `item_id`"),
        ('{"item_id": "a", "scores": {"x": [1]}}\n', "line 1:"),
        ('{"item_id": "a"}\n\n{"item_id": "a"}\n',
         "line 3: item 'a' epoch 0 again (first on line 1)"),
        ('{"item_id": "a", "scores": {"x": true}}\n{"item_id": "b", "scores": {"x": 0.5}}\n',
         "line 2: scores.x is numeric, but line 1 gave a boolean"),
    ],
)
def test_a_bad_results_file_is_refused_with_its_line_number(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ResultsFileError) as caught:
        read_results(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_unreadable_file_and_mixed_types_across_sides_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsFileError, match="cannot read"):
        read_results(tmp_path / "missing.jsonl")
    with pytest.raises(CompareError, match="boolean on one side and numeric"):
        compare([ResultRow(item_id="a", scores={"x": True})],
                [ResultRow(item_id="a", scores={"x": 0.5})])

"""evaluators.toml, the sampling rule and the failure report, alone (no bus)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crewbus.evals.online.config import TaskFilter, load_evaluators_file, plan_from_toml
from crewbus.evals.online.sampling import matches, sample_point, sampled
from crewbus.evals.online.scores import feedback_key, score_key
from crewbus.evals.report import Case, report
from crewbus.evals.scorers.errors import ScorerConfigError
from crewbus.ids import task_id_for
from crewbus_contracts import TaskLimits, TaskState
from crewbus_contracts.evals import Score

EXAMPLE = Path(__file__).parent.parent / "examples" / "evaluators.toml"


def test_the_example_file_reads_with_its_rates_filters_and_datasets() -> None:
    plan = load_evaluators_file(EXAMPLE)
    quality, budgets = plan.evaluators
    assert (quality.name, quality.rate, quality.add_to) == ("quality", 0.2, "prod-failures")
    assert quality.filter.status == ("completed",) and quality.filter.target == ("crew",)
    assert [s.kind for s in quality.scorers] == ["llm_judge", "critic"]
    assert budgets.rate == 1.0 and budgets.add_to is None


@pytest.mark.parametrize(("toml", "message"), [
    ({}, "no [[evaluator]] table"),
    ({"evaluators": []}, "unknown key 'evaluators'"),
    ({"evaluator": [{"name": "a b", "scorer": [{"kind": "no_error"}]}]}, "evaluator[1].name"),
    ({"evaluator": [{"name": "human", "scorer": [{"kind": "no_error"}]}]}, "evaluator[1].name"),
    ({"evaluator": [{"name": "a", "rate": "200%", "scorer": [{"kind": "no_error"}]}]},
     "evaluator[1] (a).rate"),
    ({"evaluator": [{"name": "a", "scorer": []}]}, "no [[scorer]] table"),
    ({"evaluator": [{"name": "a", "add_to": "no such/name", "scorer": [{"kind": "no_error"}]}]},
     "evaluator[1] (a).add_to"),
    ({"evaluator": [{"name": "a", "filter": {"who": "x"}, "scorer": [{"kind": "no_error"}]}]},
     "unknown key 'who'"),
    ({"evaluator": [{"name": "a", "filter": {"target": ["boss"]},
                     "scorer": [{"kind": "no_error"}]}]}, "'boss' is not one of"),
    ({"evaluator": [{"name": "a", "scorer": [{"kind": "no_error"}]},
                    {"name": "a", "scorer": [{"kind": "no_error"}]}]}, "share a name"),
])
def test_a_bad_evaluators_file_says_which_key_in_one_line(toml: dict[str, object],
                                                          message: str) -> None:
    with pytest.raises(ScorerConfigError) as raised:
        plan_from_toml(toml)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_sampling_is_a_fixed_hash_of_the_evaluator_and_the_task_and_keeps_its_rate() -> None:
    ids = [task_id_for(f"key-{n}") for n in range(5000)]
    share = sum(sampled("quality", task_id, 0.1) for task_id in ids) / len(ids)
    both = sum(sampled("a", t, 0.5) and sampled("b", t, 0.5) for t in ids) / len(ids)
    assert abs(share - 0.1) < 0.013  # three standard deviations at n = 5000
    assert abs(both - 0.25) < 0.02  # two evaluators pick independent halves
    assert sample_point("quality", ids[0]) == sample_point("quality", ids[0])
    assert all(not sampled("q", t, 0.0) for t in ids) and all(sampled("q", t, 1.0) for t in ids)


def state(**changes: object) -> TaskState:
    now = time.time()
    fields: dict[str, object] = {"task_id": "t1", "text": "x", "status": "completed",
                                 "limits": TaskLimits(), "created_at": now, "updated_at": now,
                                 "deadline_at": now, **changes}
    return TaskState(**fields)  # type: ignore[arg-type]


def test_a_filter_matches_status_target_variant_and_metadata() -> None:
    assert matches(TaskFilter(), state())
    assert matches(TaskFilter(status=("completed",), target=("crew",)), state())
    assert not matches(TaskFilter(target=("crew",)), state(target="planner"))
    assert not matches(TaskFilter(variant=("candidate",)), state())
    assert matches(TaskFilter(metadata={"tenant": "acme"}), state(metadata={"tenant": "acme"}))
    assert not matches(TaskFilter(metadata={"tenant": "acme"}), state())


def test_score_keys_are_kv_safe_and_one_per_scorer_version() -> None:
    first = score_key("t1", "quality", "llm_judge", "1/helpfulness@1")
    assert first.startswith("t1.quality.llm_judge.v") and "@" not in first
    assert first != score_key("t1", "quality", "llm_judge", "1/helpfulness@2")
    assert feedback_key("t1", "ann@example.org") == "t1.human.ann_example_org"


def score(name: str, passed: bool, error: str | None = None) -> Score:
    return Score(name=name, type="boolean", scorer_version="1", passed=passed, error=error)


def test_the_report_groups_failures_with_counts_costs_and_examples() -> None:
    cases = [
        Case("t1", "completed", [score("exact", True)], cost_usd=0.01),
        Case("t2", "completed", [score("exact", False)], cost_usd=0.02, failing_role="none"),
        Case("t3", "failed", [score("exact", False, "no answer")], error_code="step_failed",
             cost_usd=None, failing_role="executor"),
    ]
    found = report("exp", cases)
    assert (found.cases, found.failed, found.cost_usd) == (3, 2, 0.02)
    assert [(r.key, r.count, r.examples) for r in found.by_scorer] == [
        ("exact", 1, ["t2"]), ("exact (could not score)", 1, ["t3"])]
    assert [(r.key, r.unpriced) for r in found.by_code] == [("failed_scores", 0),
                                                             ("step_failed", 1)]
    assert [r.key for r in found.by_role] == ["executor", "none"]

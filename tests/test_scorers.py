"""Every scorer on hand-made cases (unicode, numbers in text, invalid JSON...), the
registry and plugins, eval.toml and the CLI's short forms, and the judge against the real
simulated model through the real openai client."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from crewbus.config import load_settings
from crewbus.evals.scorers.base import Observation, Scorer
from crewbus.evals.scorers.config import load_eval_file, parse_scorer, parse_threshold
from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.errors import ScorerConfigError, ScorerDefinitionError, ScoringError
from crewbus.evals.scorers.plugins import load_plugins
from crewbus.evals.scorers.registry import (
    REGISTRY,
    NoParams,
    ScorerParams,
    ScorerRegistry,
    Verdict,
    build_scorers,
)
from crewbus.evals.scorers.text import answer_number, normalise
from crewbus.llm import LLMSettings, SimReply, SimulatedModel
from crewbus_contracts import TaskState
from crewbus_contracts.evals import DatasetItem, ItemInput, Score, ScorerSpec, ToolCallRecord
from crewbus_contracts.tasks import TaskLimits


def item(expected: Any = None, text: str = "What is 2 + 2?", **metadata: Any) -> DatasetItem:
    return DatasetItem(id="i1", input=ItemInput(text=text), expected=expected, metadata=metadata)


def obs(answer: str = "", expected: Any = None, **fields: Any) -> Observation:
    return Observation(item=item(expected), status=fields.pop("status", "completed"),
                       answer=answer, **fields)


def one(kind: str, context: ScorerContext | None = None, **params: Any) -> Scorer:
    return build_scorers([ScorerSpec(kind=kind, params=params)], context)[0]


async def score(kind: str, observation: Observation, **params: Any) -> Score:
    return await one(kind, **params).score(observation)


# -- text scorers ---------------------------------------------------------------------


def test_normalise_is_nfkc_casefold_and_collapsed_whitespace() -> None:
    assert normalise("  Ｈｅｌｌｏ\u00a0\tWORLD\n ") == "hello world"  # noqa: RUF001
    assert normalise("Straße") == normalise("STRASSE") == "strasse"
    assert normalise("ﬁne") == "fine"  # the ligature splits
    assert normalise("Café", casefold=False) == "Café"
    assert normalise("4.") != normalise("4")  # punctuation is kept


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "expected", "passed"),
    [
        ("４２", "42", True),  # noqa: RUF001 - full-width digits
        ("  Paris\n", "paris", True),
        ("STRASSE", "Straße", True),
        ("Cafe\u0301", "Café", True),  # a combining accent composes under NFKC
        ("42.", "42", False),
        ("4", 4, True),  # a numeric expected is compared as written
        ("Pariss", "Paris", False),
    ],
)
async def test_exact(answer: str, expected: Any, passed: bool) -> None:
    result = await score("exact", obs(answer, expected))
    assert (result.passed, result.error, result.type) == (passed, None, "boolean")
    assert result.value == (1.0 if passed else 0.0) and result.scorer_version == "1"


@pytest.mark.anyio
async def test_exact_without_an_expected_answer_is_an_error_not_a_fail() -> None:
    result = await score("exact", obs("4"))
    assert result.error == "the item has no expected answer" and result.passed is False


@pytest.mark.anyio
async def test_contains_one_string_or_every_string_of_a_list() -> None:
    assert (await score("contains", obs("The capital is PARIS.", "paris"))).passed
    both = await score("contains", obs("red and  blue", ["Red", "blue"]))
    assert both.passed
    missing = await score("contains", obs("red only", ["red", "blue"]))
    assert not missing.passed and "'blue'" in missing.explanation
    assert not (await score("contains", obs("PARIS", "paris"), case_sensitive=True)).passed
    assert (await score("contains", obs("x", []))).error is not None


@pytest.mark.anyio
async def test_regex_from_params_or_from_expected_searches_the_answer() -> None:
    assert (await score("regex", obs("answer: 4"), pattern=r"\b4$")).passed
    assert not (await score("regex", obs("answer: 45"), pattern=r"^4$")).passed
    assert (await score("regex", obs("Total 12 apples", r"\d+ apples"))).passed
    broken = await score("regex", obs("x", "(unclosed"))
    assert broken.error is not None and "not a valid regex" in broken.error


def test_an_invalid_regex_in_params_is_refused_when_the_scorer_is_built() -> None:
    with pytest.raises(ScorerConfigError) as caught:
        one("regex", pattern="(unclosed")
    assert "scorer 'regex'" in str(caught.value) and "not a valid regex" in str(caught.value)


# -- JSON -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        '{"city": "Paris", "population": 2100000, "extra": true}',
        'Here you go:\n```json\n{"city": "Paris", "population": 2.1e6}\n```\nAnything else?',
        'The result is {"city": "Paris", "population": 2100000} as asked.',
    ],
    ids=["whole", "fenced", "inline"],
)
async def test_json_match_finds_the_json_and_accepts_a_superset(answer: str) -> None:
    result = await score("json_match", obs(answer, {"city": "Paris", "population": 2100000}))
    assert result.passed, result.explanation


@pytest.mark.anyio
async def test_json_match_fails_invalid_json_and_names_the_first_difference() -> None:
    invalid = await score("json_match", obs('{"city": "Paris",', {"city": "Paris"}))
    assert invalid.passed is False and invalid.error is None
    assert "no JSON value" in invalid.explanation
    wrong = await score("json_match", obs('{"a": {"b": [1, 2]}}', {"a": {"b": [1, 3]}}))
    assert not wrong.passed and wrong.explanation == "$.a.b[1]: expected 3, got 2"
    missing = await score("json_match", obs('{"a": 1}', '{"b": 1}'))  # expected as JSON text
    assert missing.explanation == "$.b: missing"
    not_bool = await score("json_match", obs('{"ok": 1}', {"ok": True}))
    assert not not_bool.passed


@pytest.mark.anyio
async def test_json_match_with_a_bad_expected_is_an_error() -> None:
    result = await score("json_match", obs('{"a": 1}', '{"a": '))
    assert result.error is not None and "does not parse" in result.error


SCHEMA = {
    "type": "object",
    "required": ["name", "tags"],
    "properties": {"name": {"type": "string"},
                   "tags": {"type": "array", "items": {"type": "string"}}},
}


@pytest.mark.anyio
async def test_json_schema_validates_and_names_the_error_path(tmp_path: Path) -> None:
    good = await score("json_schema", obs('{"name": "x", "tags": ["a"]}'), schema=SCHEMA)
    assert good.passed
    bad = await score("json_schema", obs('{"name": "x", "tags": ["a", 3]}'), schema=SCHEMA)
    assert not bad.passed and bad.explanation == "$.tags[1]: 3 is not of type 'string'"
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    context = ScorerContext(base_dir=tmp_path)
    from_file = one("json_schema", context, schema_file="schema.json")
    assert not (await from_file.score(obs("no json at all"))).passed


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of `schema` and `schema_file`"),
        ({"schema": SCHEMA, "schema_file": "x.json"}, "exactly one"),
        ({"schema": {"type": "nonsense"}}, "the schema is invalid at $.type"),
        ({"schema_file": "absent.json"}, "cannot read schema_file"),
    ],
)
def test_json_schema_refuses_a_bad_schema_when_built(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ScorerConfigError, match=None) as caught:
        one("json_schema", **params)
    assert message in str(caught.value)


# -- numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,234.5", 1234.5),
        ("It is −3 degrees", -3.0),  # noqa: RUF001
        ("1e3", 1000.0),
        ("about 3/4 of them", 0.75),
        ("2 + 2 = 4.", 4.0),
        ("x = 3, y = 5. Answer: 8", 8.0),
        ("The answer is 42, from 6 × 7", 42.0),  # noqa: RUF001
        ("Steps 1, 2 and 3 give 17", 17.0),
        ("v2 scored ４２", 42.0),  # noqa: RUF001
        # an id's digits are not a number: a quoted memory id never gives the answer
        ("result of: nine times eleven?\nFrom memory chunk-99ab3f: a loan lasts 21 days", 21.0),
        ("gpt-4o and COVID-19 say 7", 7.0),
        ("between 5-10", 10.0),
    ],
)
def test_the_answers_number_is_after_the_last_marker_else_the_last(text: str, value: float) -> None:
    found = answer_number(text)
    assert found is not None and found.value == value


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "expected", "params", "passed"),
    [
        ("The total is 1,234.5 dollars", 1234.5, {}, True),
        ("= −3", -3, {}, True),  # noqa: RUF001
        ("= −3", "-3", {}, True),  # noqa: RUF001 - a numeric string
        ("about 33.4", 100 / 3, {"tolerance": 0.1}, True),
        ("about 33.4", 100 / 3, {}, False),
        ("1010", 1000, {"relative": 0.02}, True),
        ("1030", 1000, {"relative": 0.02}, False),
        ("Half: 50%", 0.5, {}, True),  # a percentage reads both ways
        ("Half: 50%", "50%", {}, True),
        ("3/4", 0.75, {}, True),
    ],
)
async def test_numeric(answer: str, expected: Any, params: dict[str, Any], passed: bool) -> None:
    result = await score("numeric", obs(answer, expected), **params)
    assert result.error is None and result.passed is passed, result.explanation


@pytest.mark.anyio
async def test_numeric_without_a_number_fails_and_a_bad_expected_is_an_error() -> None:
    none = await score("numeric", obs("I cannot say.", 4))
    assert none.passed is False and none.error is None and "no number" in none.explanation
    bad = await score("numeric", obs("4", "four"))
    assert bad.error is not None and "is not one number" in bad.error
    assert (await score("numeric", obs("4", True))).error is not None


def test_numeric_refuses_a_negative_tolerance_naming_the_key() -> None:
    with pytest.raises(ScorerConfigError) as caught:
        one("numeric", tolerance=-1)
    assert "scorer 'numeric'" in str(caught.value) and "`$.tolerance`" in str(caught.value)


# -- run scorers ----------------------------------------------------------------------


def state(min_score: float) -> TaskState:
    return TaskState(task_id="t", text="x", status="completed",
                     limits=TaskLimits(min_score=min_score), created_at=0, updated_at=0,
                     deadline_at=0)


@pytest.mark.anyio
async def test_critic_is_the_critics_score_against_a_bar() -> None:
    result = await score("critic", obs(critic_score=0.8), min=0.9)
    assert (result.type, result.value, result.passed) == ("numeric", 0.8, False)
    from_task = await score("critic", obs(critic_score=0.8, state=state(0.7)))
    assert from_task.passed is True
    assert (await score("critic", obs(critic_score=0.4))).passed is None  # no bar
    assert (await score("critic", obs())).error is not None


@pytest.mark.anyio
async def test_trajectory_scorers() -> None:
    calls = [ToolCallRecord(name="calculator"), ToolCallRecord(name="search", ok=False)]
    assert (await score("tool_called", obs(tool_calls=calls), tool="calculator")).passed
    never = await score("tool_called", obs(tool_calls=calls), tool="http_get")
    assert not never.passed and "calculator, search" in never.explanation
    assert (await score("max_rounds", obs(rounds=2), max=2)).passed
    assert not (await score("max_rounds", obs(rounds=3), max=2)).passed
    assert (await score("no_error", obs())).passed
    failed = await score("no_error", obs(status="failed", error_code="budget_exceeded"))
    assert not failed.passed and "budget_exceeded" in failed.explanation


@pytest.mark.anyio
async def test_budgets_and_an_unknown_cost_is_an_error_not_a_pass() -> None:
    assert (await score("cost_usd", obs(cost_usd=0.004), max=0.01)).passed
    assert not (await score("cost_usd", obs(cost_usd=0.02), max=0.01)).passed
    unknown = await score("cost_usd", obs(cost_usd=None), max=0.01)
    assert unknown.passed is False and unknown.error is not None and "unknown" in unknown.error
    assert (await score("latency_s", obs(latency_s=4.9), max=5)).passed
    assert (await score("latency_s", obs(latency_s=None), max=5)).error is not None


# -- the registry ---------------------------------------------------------------------


class StartsWith(ScorerParams):
    prefix: str


class Threshold(ScorerParams):
    at: float = 0.5


class Named(ScorerParams):
    name: str


def test_a_users_function_becomes_a_scorer_and_stays_callable() -> None:
    registry = ScorerRegistry()

    @registry.scorer("starts_with", type="boolean", version="2")
    def starts_with(obs: Observation, params: StartsWith) -> bool:
        """The answer starts with a prefix."""
        return obs.answer.startswith(params.prefix)

    kind = registry.get("starts_with")
    assert (kind.primary, kind.param_names, kind.description) == (
        "prefix", ["prefix"], "The answer starts with a prefix.")
    assert starts_with(obs("hello"), StartsWith(prefix="he")) is True


@pytest.mark.anyio
async def test_function_results_of_every_shape_become_scores() -> None:
    registry = ScorerRegistry()

    @registry.scorer("length", type="numeric", version="1")
    async def length(obs: Observation, params: Threshold) -> Verdict:
        value = min(1.0, len(obs.answer) / 10)
        return Verdict(value, f"{len(obs.answer)} characters", passed=value >= params.at)

    @registry.scorer("tone", type="categorical", version="1")
    def tone(obs: Observation, params: NoParams) -> str:
        return "shouting" if obs.answer.isupper() else "calm"

    @registry.scorer("whole", type="boolean", version="1")
    def whole(obs: Observation, params: NoParams, context: ScorerContext) -> Score:
        return Score(name="ignored", type="numeric", scorer_version="x", value=1.0, passed=True,
                     explanation=str(context.base_dir))

    specs = [ScorerSpec(kind="length"), ScorerSpec(kind="tone"), ScorerSpec(kind="whole")]
    context = ScorerContext(base_dir=Path("/somewhere"))
    scorers = build_scorers(specs, context, registry)
    results = [await s.score(obs("HELLO")) for s in scorers]
    assert (results[0].value, results[0].passed, results[0].explanation) == (
        0.5, True, "5 characters")
    assert (results[1].label, results[1].value, results[1].type) == (
        "shouting", None, "categorical")
    assert (results[2].name, results[2].type, results[2].scorer_version) == (
        "whole", "boolean", "1")  # the registry's identity wins over the function's
    assert results[2].explanation == "/somewhere"


@pytest.mark.anyio
async def test_a_scorer_that_raises_or_returns_nonsense_is_an_error_never_a_pass() -> None:
    registry = ScorerRegistry()

    @registry.scorer("crashes", type="boolean", version="1")
    def crashes(obs: Observation, params: NoParams) -> bool:
        raise KeyError("oops")

    @registry.scorer("refuses", type="boolean", version="1")
    def refuses(obs: Observation, params: NoParams) -> bool:
        raise ScoringError("no reference for this item")

    @registry.scorer("too_big", type="numeric", version="1")
    def too_big(obs: Observation, params: NoParams) -> float:
        return 1.5

    @registry.scorer("not_bool", type="boolean", version="1")
    def not_bool(obs: Observation, params: NoParams) -> Any:
        return 0.9

    scorers = build_scorers([ScorerSpec(kind=k) for k in
                             ("crashes", "refuses", "too_big", "not_bool")], None, registry)
    results = [await s.score(obs("x")) for s in scorers]
    assert all(r.passed is False and r.error for r in results)
    assert results[0].error == "the scorer raised KeyError: 'oops'"
    assert results[1].error == "no reference for this item"
    assert "0..1" in (results[2].error or "") and "bool" in (results[3].error or "")


def test_a_function_that_cannot_be_a_scorer_is_refused_when_decorated() -> None:
    registry = ScorerRegistry()
    with pytest.raises(ScorerDefinitionError, match=r"msgspec\.Struct"):
        registry.scorer("a", type="boolean", version="1")(lambda obs, params: True)
    with pytest.raises(ScorerDefinitionError, match="reserved"):

        @registry.scorer("b", type="boolean", version="1")
        def b(obs: Observation, params: Named) -> bool:
            return True

    with pytest.raises(ScorerDefinitionError, match="type must be one of"):

        @registry.scorer("c", type="score", version="1")  # type: ignore[arg-type]
        def c(obs: Observation, params: NoParams) -> bool:
            return True

    with pytest.raises(ScorerDefinitionError, match="must match"):

        @registry.scorer("has:colon", type="boolean", version="1")
        def d(obs: Observation, params: NoParams) -> bool:
            return True


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([ScorerSpec(kind="nope")], "scorer #1: unknown scorer kind 'nope' (known: contains,"),
        ([ScorerSpec(kind="numeric", params={"tolerence": 0.1})],
         "scorer 'numeric': unknown parameter 'tolerence' (its parameters: tolerance, relative)"),
        ([ScorerSpec(kind="tool_called")], "Object missing required field `tool`"),
        ([ScorerSpec(kind="max_rounds", name="rounds", params={"max": "lots"})],
         "scorer 'rounds' (kind max_rounds): Expected `int`, got `str` - at `$.max`"),
        ([ScorerSpec(kind="exact"), ScorerSpec(kind="exact")], "two scorers are named 'exact'"),
        ([ScorerSpec(kind="llm_judge", params={"rubric": "nonexistent"})],
         "no packaged rubric 'nonexistent' (packaged: correctness, helpfulness"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_scorer(specs: list[ScorerSpec], message: str) -> None:
    with pytest.raises(ScorerConfigError) as caught:
        build_scorers(specs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_text_values_from_the_cli_are_converted_to_the_params_types() -> None:
    spec = parse_scorer("numeric:tolerance=0.01,relative=0.5")
    built = build_scorers([spec])[0]
    assert built.params.tolerance == 0.01 and built.params.relative == 0.5  # type: ignore[attr-defined]


def test_where_limits_a_scorer_to_items_with_that_metadata() -> None:
    scorer = build_scorers([ScorerSpec(kind="exact", where={"kind": "arithmetic",
                                                             "hard": "true"})])[0]
    assert scorer.applies_to(item(kind="arithmetic", hard=True))
    assert not scorer.applies_to(item(kind="lookup", hard=True))
    assert not scorer.applies_to(item(kind="arithmetic"))
    assert build_scorers([ScorerSpec(kind="exact")])[0].applies_to(item())


PLUGIN = '''
from crewbus.evals.scorers.base import Observation
from crewbus.evals.scorers.registry import ScorerParams, scorer

class Ends(ScorerParams):
    suffix: str

@scorer("{kind}", type="boolean", version="1")
def ends_with(obs: Observation, params: Ends) -> bool:
    return obs.answer.endswith(params.suffix)
'''


@pytest.mark.anyio
async def test_a_plugin_module_registers_its_scorers_by_being_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unique = uuid.uuid4().hex[:8]  # the default registry lives as long as the process
    module, by_name, by_path = f"my_eval_plugin_{unique}", f"ends_{unique}", f"path_{unique}"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(kind=by_name))
    (tmp_path / "by_path.py").write_text(PLUGIN.format(kind=by_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins([module, "by_path.py"], base_dir=tmp_path)
    load_plugins([module, "by_path.py"], base_dir=tmp_path)  # twice: a no-op
    assert {by_name, by_path} <= set(REGISTRY.kinds)
    spec = parse_scorer(f"{by_name} !")  # the only parameter is the primary one
    assert (await build_scorers([spec])[0].score(obs("hi!"))).passed
    sys.modules.pop(module)
    load_plugins([module])  # imported afresh (a reload): it replaces its own kinds
    (tmp_path / "clash.py").write_text(PLUGIN.format(kind=by_name))
    with pytest.raises(ScorerConfigError) as caught:
        load_plugins(["clash.py"], base_dir=tmp_path)
    assert f"'{by_name}' is already registered by {module}.ends_with" in str(caught.value)


def test_a_plugin_that_does_not_import_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import nowhere_to_be_found\n")
    with pytest.raises(ScorerConfigError) as caught:
        load_plugins(["broken.py"], base_dir=tmp_path)
    assert str(caught.value) == ("plugin 'broken.py' does not import: ModuleNotFoundError: "
                                 "No module named 'nowhere_to_be_found'")
    with pytest.raises(ScorerConfigError, match=r"plugin 'no\.such\.module' does not import"):
        load_plugins(["no.such.module"])


# -- eval.toml and the short forms ----------------------------------------------------

EVAL_TOML = '''
plugins = []

[[scorer]]
kind = "numeric"
name = "answer"
where = { kind = "arithmetic" }
tolerance = 0.01

[[scorer]]
kind = "tool_called"
tool = "calculator"

[[scorer]]
kind = "json_schema"
schema_file = "schema.json"

[thresholds]
answer = 0.8
tool_called = 1
'''


def test_an_eval_file_gives_scorers_thresholds_and_plugins(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_text(EVAL_TOML)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    plan = load_eval_file(path)
    assert plan.scorers[0] == ScorerSpec(kind="numeric", name="answer",
                                         params={"tolerance": 0.01},
                                         where={"kind": "arithmetic"})
    assert [(t.scorer, t.min) for t in plan.thresholds] == [("answer", 0.8), ("tool_called", 1.0)]
    assert plan.base_dir == tmp_path and plan.plugins == []
    built = build_scorers(plan.scorers, ScorerContext(base_dir=plan.base_dir))
    assert [s.name for s in built] == ["answer", "tool_called", "json_schema"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[scorer]]\nkind = \n", "not valid TOML: Invalid value (at line 2, column 8)"),
        ("[[scorers]]\nkind = 'exact'\n", "unknown key 'scorers'"),
        ("plugins = []\n", "no [[scorer]] table"),
        ("[[scorer]]\nname = 'x'\n", "scorer[1].kind: a scorer kind (a word) is required"),
        ("[[scorer]]\nkind = 'exact'\n[[scorer]]\nkind = 'regex'\nwhere = 'x'\n",
         "scorer[2].where: must be a table"),
        ("[[scorer]]\nkind = 'exact'\n[thresholds]\nexcat = 0.8\n",
         "threshold 'excat' names no scorer (scorers: exact)"),
        ("[[scorer]]\nkind = 'exact'\n[thresholds]\nexact = 1.5\n",
         "thresholds.exact: must be a number from 0 to 1"),
        ("[[scorer]]\nkind = 'exact'\nplugins = 'x'\n", ""),  # plugins inside the table: a param
    ],
)
def test_a_bad_eval_file_names_the_line_or_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "eval.toml"
    path.write_text(content)
    if not message:
        plan = load_eval_file(path)
        with pytest.raises(ScorerConfigError, match="unknown parameter 'plugins'"):
            build_scorers(plan.scorers)
        return
    with pytest.raises(ScorerConfigError) as caught:
        load_eval_file(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("exact", ScorerSpec(kind="exact")),
        ("numeric:tolerance=0.01", ScorerSpec(kind="numeric", params={"tolerance": "0.01"})),
        ("regex:pattern=^4$", ScorerSpec(kind="regex", params={"pattern": "^4$"})),
        ("regex:pattern=^a{1,3}$,name=short",
         ScorerSpec(kind="regex", name="short", params={"pattern": "^a{1,3}$"})),
        ("tool_called calculator", ScorerSpec(kind="tool_called", params={"tool": "calculator"})),
        ("max_rounds 2", ScorerSpec(kind="max_rounds", params={"max": "2"})),
        ("cost_usd<=0.01", ScorerSpec(kind="cost_usd", params={"max": "0.01"})),
        ("latency_s <= 5", ScorerSpec(kind="latency_s", params={"max": "5"})),
        ("llm_judge helpfulness", ScorerSpec(kind="llm_judge", params={"rubric": "helpfulness"})),
    ],
)
def test_cli_short_forms(text: str, spec: ScorerSpec) -> None:
    parsed = parse_scorer(text)
    assert parsed == spec
    build_scorers([parsed])  # and each builds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("numeric 3", "numeric takes no positional value; write numeric:key=value"),
        ("nope 3", "unknown scorer kind 'nope'"),
        ("numeric:tolerance", "'tolerance' is not key=value"),
        ("bad!:x=1", "is not a scorer kind"),
    ],
)
def test_bad_short_forms_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ScorerConfigError) as caught:
        parse_scorer(text)
    assert message in str(caught.value)


def test_thresholds_from_the_cli() -> None:
    assert parse_threshold("numeric=0.8").min == 0.8
    for bad, message in (("numeric", "write NAME=MIN"), ("numeric=high", "number from 0 to 1"),
                         ("numeric=2", "number from 0 to 1")):
        with pytest.raises(ScorerConfigError, match=message):
            parse_threshold(bad)


# -- the judge, against the real simulated model --------------------------------------


def verdict(score: float, label: str = "correct", reasoning: str = "It says 4.") -> SimReply:
    return SimReply(content=json.dumps({"score": score, "label": label, "reasoning": reasoning}))


def judge_context(model: SimulatedModel, tmp_path: Path | None = None) -> ScorerContext:
    settings = LLMSettings(base_url=model.base_url, max_transport_retries=0)
    return ScorerContext(base_dir=tmp_path or Path.cwd(), judge=settings)


@pytest.mark.anyio
async def test_the_judge_scores_by_rubric_through_the_llm_adapter(model: SimulatedModel) -> None:
    model.script("judge", verdict(0.9), verdict(0.3, "incorrect", "It says 5."))
    async with judge_context(model) as context:
        judge = one("llm_judge", context, pass_score=0.6)
        good = await judge.score(obs("4", "4"))
        bad = await judge.score(obs("5", "4"))
    assert (good.value, good.label, good.passed, good.type) == (0.9, "correct", True, "numeric")
    assert good.scorer_version == "1/correctness@1" and good.explanation == "It says 4."
    assert (bad.value, bad.passed) == (0.3, False)
    request = model.requests[0]
    assert request.agent == "judge"
    system, user = request.body["messages"][0]["content"], request.body["messages"][1]["content"]
    assert "CORRECTNESS" in system and "version" not in system.split("\n")[0]
    assert "## Reference answer\n4" in user and "## Answer to grade\n4" in user
    assert request.body["response_format"]["json_schema"]["name"] == "JudgeVerdict"


@pytest.mark.anyio
async def test_a_judge_reply_that_fails_validation_is_an_error_never_a_pass(
    model: SimulatedModel,
) -> None:
    # shown its error once (max_validation_retries=1), the judge answers badly again
    model.script("judge", verdict(1.7), SimReply(content="Looks right to me!"))
    async with judge_context(model) as context:
        result = await one("llm_judge", context).score(obs("4", "4"))
    assert result.passed is False and result.value is None
    assert result.error is not None
    assert result.error.startswith("the judge's reply did not validate")
    assert len(model.requests) == 2
    assert "did not validate" in model.requests[1].body["messages"][-1]["content"]


@pytest.mark.anyio
async def test_a_judge_reply_with_an_unknown_field_is_shown_its_error_then_accepted(
    model: SimulatedModel,
) -> None:
    extra = SimReply(content=json.dumps({"score": 1, "label": "ok", "reasoning": "r",
                                         "confidence": 0.9}))
    model.script("judge", extra, verdict(0.8))
    async with judge_context(model) as context:
        result = await one("llm_judge", context).score(obs("4", "4"))
    assert result.value == 0.8 and result.error is None


@pytest.mark.anyio
async def test_an_unreachable_judge_is_an_error(model: SimulatedModel) -> None:
    model.script("judge", SimReply(status=400, content="unknown model"))
    async with judge_context(model) as context:
        result = await one("llm_judge", context).score(obs("4", "4"))
    assert result.passed is False and result.error is not None
    assert result.error.startswith("the judge failed")


@pytest.mark.anyio
async def test_a_users_rubric_file_carries_its_own_version(
    model: SimulatedModel, tmp_path: Path
) -> None:
    (tmp_path / "brevity.md").write_text("version: 3\nGrade how SHORT the answer is.\n")
    (tmp_path / "unversioned.md").write_text("Grade it.\n")
    model.script("judge", verdict(1.0, "short", "Four characters."))
    async with judge_context(model, tmp_path) as context:
        judge = one("llm_judge", context, rubric="brevity.md", model="judge-model")
        result = await judge.score(obs("four"))
        with pytest.raises(ScorerConfigError, match="has no version: start it with `version: 1`"):
            one("llm_judge", context, rubric="unversioned.md")
    assert result.scorer_version == "1/brevity@3" and result.passed
    body = model.requests[0].body
    assert body["model"] == "judge-model"
    assert body["messages"][0]["content"] == "Grade how SHORT the answer is."
    assert "(none given)" in body["messages"][1]["content"]


def test_the_judge_model_is_a_settings_branch_like_the_agents() -> None:
    default = load_settings({})
    assert default.judge.model == "crewbus-simulated"
    shared = load_settings({"CREWBUS_LLM_BASE_URL": "http://127.0.0.1:1/v1",
                            "CREWBUS_JUDGE_MODEL": "gpt-4o", "CREWBUS_CRITIC_MODEL": "small"})
    assert (shared.judge.model, shared.judge.base_url) == ("gpt-4o", "http://127.0.0.1:1/v1")
    assert shared.llm["critic"].model == "small"
    own = load_settings({"OPENAI_API_KEY": "sk-a", "CREWBUS_JUDGE_API_KEY": "sk-judge"})
    assert own.judge.api_key == "sk-judge" and own.judge.model == "gpt-4o-mini"
    with pytest.raises(msgspec.ValidationError, match="CREWBUS_JUDGE_TIMEOUT_S"):
        load_settings({"CREWBUS_JUDGE_TIMEOUT_S": "-1"})


def test_only_trajectory_scorers_make_the_runner_read_traces() -> None:
    """`tool_called` sees the run's tool calls only if the runner fetches them: a scorer
    that forgot to say so would fail every item with "never called"."""
    from crewbus.evals.runner import needs_tool_calls

    context = ScorerContext()
    trajectory = build_scorers([ScorerSpec(kind="tool_called", params={"tool": "calc"})],
                               context)
    plain = build_scorers([ScorerSpec(kind="contains"), ScorerSpec(kind="no_error")], context)
    assert needs_tool_calls(trajectory)
    assert not needs_tool_calls(plain)

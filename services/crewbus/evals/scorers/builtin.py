"""The built-in scorers of an answer against the item's `expected`: exact, contains,
regex, json_match, json_schema, numeric.

The answer failing is a fail (`passed=False`, with the reason); an item whose `expected`
cannot be used (missing, the wrong type, an invalid pattern) is an evaluation error
(`ScoringError`): the dataset is wrong, not the answer.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import msgspec

from crewbus.evals.scorers.base import Observation
from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.errors import ScorerConfigError, ScoringError
from crewbus.evals.scorers.json_extract import find_json, subset_mismatch
from crewbus.evals.scorers.registry import NoParams, ScorerParams, Verdict, scorer
from crewbus.evals.scorers.text import Number, answer_number, normalise, numbers

_QUOTE = 80


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _QUOTE else flat[: _QUOTE - 1] + "…")


def expected_text(obs: Observation) -> str:
    """The item's expected value as text: a string, or a number written out."""
    expected = obs.item.expected
    if expected is None:
        raise ScoringError("the item has no expected answer")
    if isinstance(expected, str):
        return expected
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return str(expected)
    raise ScoringError(f"expected must be a string here, not {type(expected).__name__}")


@scorer("exact", type="boolean", version="1")
def exact(obs: Observation, params: NoParams) -> Verdict:
    """The answer equals the expected string, both normalised (NFKC, casefold, whitespace
    collapsed, trimmed)."""
    want, got = normalise(expected_text(obs)), normalise(obs.answer)
    if want == got:
        return Verdict(True, "the answer equals the expected answer (normalised)")
    return Verdict(False, f"expected {_short(want)}, got {_short(got)} (normalised)")


class ContainsParams(ScorerParams):
    case_sensitive: bool = False
    """Keep case (NFKC and whitespace are normalised either way)."""


@scorer("contains", type="boolean", version="1")
def contains(obs: Observation, params: ContainsParams) -> Verdict:
    """The expected string (or every string of an expected list) appears in the answer,
    both normalised."""
    expected = obs.item.expected
    wanted = expected if isinstance(expected, list) else [expected_text(obs)]
    if not wanted or not all(isinstance(w, str) and w.strip() for w in wanted):
        raise ScoringError("expected must be a non-empty string or list of non-empty strings")
    fold = not params.case_sensitive
    answer = normalise(obs.answer, casefold=fold)
    missing = [w for w in wanted if normalise(w, casefold=fold) not in answer]
    if missing:
        return Verdict(False, f"the answer lacks {', '.join(_short(m) for m in missing)}")
    return Verdict(True, f"the answer contains {', '.join(_short(w) for w in wanted)}")


class RegexParams(ScorerParams):
    pattern: str | None = None
    """A Python regular expression searched for in the answer; unset: the item's expected."""

    def __post_init__(self) -> None:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regex: {exc}") from None


@scorer("regex", type="boolean", version="1")
def regex(obs: Observation, params: RegexParams) -> Verdict:
    """The pattern (from the params, else the item's expected) matches somewhere in the
    answer as written (`re.search`; use `(?i)` to ignore case, `^...$` to anchor)."""
    source = params.pattern if params.pattern is not None else expected_text(obs)
    try:
        pattern = re.compile(source)
    except re.error as exc:
        raise ScoringError(f"expected {source!r} is not a valid regex: {exc}") from None
    found = pattern.search(obs.answer)
    if found:
        return Verdict(True, f"/{source}/ matches {_short(found.group(0))}")
    return Verdict(False, f"/{source}/ does not match the answer {_short(obs.answer)}")


def expected_json(obs: Observation) -> Any:
    """The expected JSON value; a string that looks like a JSON object or array is parsed
    (datasets often quote it), any other string is a JSON string."""
    expected = obs.item.expected
    if expected is None:
        raise ScoringError("the item has no expected value")
    if isinstance(expected, str) and expected.strip()[:1] in ("{", "["):
        try:
            return json.loads(expected)
        except json.JSONDecodeError as exc:
            raise ScoringError(f"expected looks like JSON but does not parse: {exc}") from None
    return expected


@scorer("json_match", type="boolean", version="1")
def json_match(obs: Observation, params: NoParams) -> Verdict:
    """The expected value is a subset of the answer's JSON: every expected key present with
    a matching value, arrays element by element. An answer with no JSON fails."""
    want = expected_json(obs)
    try:
        got = find_json(obs.answer)
    except ValueError as exc:
        return Verdict(False, str(exc))
    mismatch = subset_mismatch(want, got)
    if mismatch:
        return Verdict(False, mismatch)
    return Verdict(True, "the answer's JSON contains the expected value")


class JsonSchemaParams(ScorerParams):
    schema: dict[str, Any] | None = None
    """The JSON Schema, inline (a TOML table)."""
    schema_file: str | None = None
    """Or a JSON file holding it (relative to eval.toml)."""

    def __post_init__(self) -> None:
        if (self.schema is None) == (self.schema_file is None):
            raise ValueError("give exactly one of `schema` and `schema_file`")


def _load_schema(params: JsonSchemaParams, context: ScorerContext) -> JsonSchemaParams:
    schema = params.schema
    if params.schema_file is not None:
        path = context.resolve(params.schema_file)
        try:
            schema = json.loads(path.read_text())
        except OSError as exc:
            raise ScorerConfigError(f"cannot read schema_file {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ScorerConfigError(f"schema_file {path} is not JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise ScorerConfigError(f"schema_file {path} must hold a JSON object")
    assert schema is not None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = exc.json_path if hasattr(exc, "json_path") else "$"
        raise ScorerConfigError(f"the schema is invalid at {where}: {exc.message}") from None
    return msgspec.structs.replace(params, schema=schema, schema_file=None)


@scorer("json_schema", type="boolean", version="1", prepare=_load_schema)
def json_schema(obs: Observation, params: JsonSchemaParams) -> Verdict:
    """The answer's JSON (found as for json_match) validates against the schema; a failure
    names the path of the most relevant error."""
    assert params.schema is not None
    try:
        instance = find_json(obs.answer)
    except ValueError as exc:
        return Verdict(False, str(exc))
    validator = jsonschema.validators.validator_for(params.schema)(params.schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return Verdict(True, "the answer validates against the schema")
    return Verdict(False, f"{error.json_path}: {error.message}")


class NumericParams(ScorerParams):
    tolerance: Annotated[float, msgspec.Meta(ge=0)] = 1e-6
    """Absolute tolerance."""
    relative: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """Relative tolerance (0.01: within 1% of the expected value)."""


def expected_number(obs: Observation) -> Number:
    expected = obs.item.expected
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        if not math.isfinite(expected):
            raise ScoringError(f"expected {expected!r} is not a finite number")
        return Number(float(expected), False, str(expected))
    if isinstance(expected, str):
        found = numbers(expected)
        if len(found) == 1:
            return found[0]
        raise ScoringError(f"expected {expected!r} is not one number")
    raise ScoringError(
        "the item has no expected number" if expected is None
        else f"expected must be a number or a numeric string, not {type(expected).__name__}"
    )


@scorer("numeric", type="boolean", version="2")
def numeric(obs: Observation, params: NumericParams) -> Verdict:
    """The number the answer gives (the first after the last `answer`/`result`/`=`, else
    the last one) is within max(tolerance, relative * |expected|) of the expected number.
    A percentage reads both ways: `50%` matches 50 and 0.5."""
    want = expected_number(obs)
    got = answer_number(obs.answer)
    if got is None:
        return Verdict(False, f"no number in the answer {_short(obs.answer)}")
    for w in want.readings():
        bound = max(params.tolerance, params.relative * abs(w))
        for g in got.readings():
            if abs(g - w) <= bound:
                return Verdict(True, f"{got.text} is within {bound:g} of {want.text}")
    return Verdict(False, f"the answer gives {got.text}, expected {want.text}")

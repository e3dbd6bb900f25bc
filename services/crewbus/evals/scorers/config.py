"""The scorers of an experiment, from an eval.toml file or the CLI's short forms.

    plugins = ["mypkg.scorers"]          # modules whose @scorer functions register

    [[scorer]]
    kind = "numeric"                     # a registered kind
    name = "answer"                      # optional: its name in results (default: kind)
    where = { kind = "arithmetic" }      # optional: only items with this metadata
    tolerance = 0.01                     # every other key is a parameter

    [thresholds]
    answer = 0.8                         # pass rate (boolean) or mean (numeric) ≥ 0.8

Short forms (`--scorer`): `numeric`, `numeric:tolerance=0.01,relative=0.02`,
`regex:pattern=^4$`, `tool_called calculator`, `max_rounds 2` (a positional value sets the
kind's primary parameter), `cost_usd<=0.01`, `latency_s<=5`; `name=` names the scorer.
`--threshold numeric=0.8`. Parameters are checked when the scorers are built
(`build_scorers`); these functions check the shape and say which line or key is wrong.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from crewbus.evals.scorers.errors import ScorerConfigError
from crewbus.evals.scorers.registry import KIND, REGISTRY, ScorerRegistry
from crewbus_contracts.evals import ScorerSpec, Threshold

TOP_LEVEL_KEYS = ("scorer", "thresholds", "plugins")


@dataclass(frozen=True)
class EvalPlan:
    """What an eval file configures. `base_dir` is the file's folder: relative paths in
    parameters (rubrics, schema files, `.py` plugins) are read from there."""

    scorers: list[ScorerSpec]
    thresholds: list[Threshold] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    base_dir: Path = field(default_factory=Path.cwd)


def load_eval_file(path: str | Path) -> EvalPlan:
    """Read an eval.toml; a bad file is one `ScorerConfigError` naming the file and the
    line (TOML syntax) or the key (`scorer[2].where`, `thresholds.exact`)."""
    path = Path(path)
    data = read_toml(path)
    try:
        return plan_from_dict(data, base_dir=path.resolve().parent)
    except ScorerConfigError as exc:
        raise ScorerConfigError(f"{path}: {exc}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; an unreadable or invalid file is one `ScorerConfigError`."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScorerConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScorerConfigError(f"{path}: not valid TOML: {exc}") from None


def plan_from_dict(data: dict[str, Any], base_dir: Path | None = None) -> EvalPlan:
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ScorerConfigError(
            f"unknown key {unknown[0]!r} (an eval file has {', '.join(TOP_LEVEL_KEYS)})"
        )
    tables = data.get("scorer", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ScorerConfigError("`scorer` must be [[scorer]] tables")
    if not tables:
        raise ScorerConfigError("no [[scorer]] table: an experiment needs at least one scorer")
    scorers = [_spec(table, f"scorer[{i}]") for i, table in enumerate(tables, 1)]
    thresholds = _thresholds(data.get("thresholds", {}))
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise ScorerConfigError("`plugins` must be a list of module names")
    check_thresholds(thresholds, scorers)
    return EvalPlan(scorers, thresholds, list(plugins), base_dir or Path.cwd())


def _spec(table: dict[str, Any], where: str) -> ScorerSpec:
    rest = dict(table)
    kind = rest.pop("kind", None)
    if not isinstance(kind, str) or not KIND.match(kind):
        raise ScorerConfigError(f"{where}.kind: a scorer kind (a word) is required")
    name = rest.pop("name", "")
    if not isinstance(name, str) or (name and not KIND.match(name)):
        raise ScorerConfigError(f"{where}.name: must be a word like {kind!r}")
    condition = rest.pop("where", {})
    if not isinstance(condition, dict):
        raise ScorerConfigError(f"{where}.where: must be a table, e.g. {{ kind = \"math\" }}")
    for key, value in condition.items():
        if not isinstance(value, str | int | float | bool):
            raise ScorerConfigError(f"{where}.where.{key}: must be a string, number or boolean")
    return ScorerSpec(
        kind=kind, name=name, params=rest,
        where={k: where_text(v) for k, v in condition.items()},
    )


def where_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _thresholds(table: Any) -> list[Threshold]:
    if not isinstance(table, dict):
        raise ScorerConfigError("`thresholds` must be a table: `name = 0.8`")
    found = []
    for name, value in table.items():
        found.append(_threshold(name, value, f"thresholds.{name}"))
    return found


def _threshold(name: str, value: Any, where: str) -> Threshold:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ScorerConfigError(f"{where}: must be a number from 0 to 1")
    try:
        return msgspec.convert({"scorer": name, "min": value}, Threshold, strict=False)
    except msgspec.ValidationError as exc:
        raise ScorerConfigError(f"{where}: must be a number from 0 to 1 ({exc})") from None


def check_thresholds(thresholds: list[Threshold], scorers: list[ScorerSpec]) -> None:
    """Every threshold names a configured scorer (a typo must not make a gate vacuous)."""
    names = [s.label for s in scorers]
    for threshold in thresholds:
        if threshold.scorer not in names:
            raise ScorerConfigError(
                f"threshold {threshold.scorer!r} names no scorer (scorers: {', '.join(names)})"
            )


_BUDGET = re.compile(r"^(?P<kind>[A-Za-z][A-Za-z0-9_-]*)\s*<=\s*(?P<value>\S.*)$")
_PAIR_START = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")
"""Pairs split at a comma that starts `key=`, so a comma inside a value (`a{1,3}`) stays."""


def parse_scorer(text: str, registry: ScorerRegistry | None = None) -> ScorerSpec:
    """A `--scorer` short form as a spec. A positional value needs the kind's primary
    parameter, so the kind must be known (import plugins first)."""
    text = text.strip()
    where = f"--scorer {text!r}"
    budget = _BUDGET.match(text)
    if budget:
        kind, params = budget["kind"], {_primary(budget["kind"], where, registry): budget["value"]}
    elif ":" in text.split(" ", 1)[0]:
        kind, _, rest = text.partition(":")
        params = _pairs(rest, where)
    elif " " in text:
        kind, _, value = text.partition(" ")
        params = {_primary(kind, where, registry): value.strip()}
    else:
        kind, params = text, {}
    if not KIND.match(kind):
        raise ScorerConfigError(f"{where}: {kind!r} is not a scorer kind")
    name = params.pop("name", "")
    if name and not KIND.match(name):
        raise ScorerConfigError(f"{where}: name {name!r} must be a word")
    return ScorerSpec(kind=kind, name=name, params=params)


def _pairs(text: str, where: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if not text.strip():
        return params
    for part in _PAIR_START.split(text):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ScorerConfigError(f"{where}: {part!r} is not key=value")
        if key in params:
            raise ScorerConfigError(f"{where}: {key!r} is given twice")
        params[key] = value
    return params


def _primary(kind: str, where: str, registry: ScorerRegistry | None) -> str:
    try:
        found = (registry or REGISTRY).get(kind)
    except ScorerConfigError as exc:
        raise ScorerConfigError(f"{where}: {exc}") from None
    if found.primary is None:
        raise ScorerConfigError(
            f"{where}: {kind} takes no positional value; write {kind}:key=value"
            + (f" (its parameters: {', '.join(found.param_names)})" if found.param_names else "")
        )
    return found.primary


def parse_threshold(text: str) -> Threshold:
    """`--threshold NAME=0.8`."""
    name, eq, value = text.partition("=")
    name = name.strip()
    if not eq or not name:
        raise ScorerConfigError(f"--threshold {text!r}: write NAME=MIN, e.g. exact=0.8")
    return _threshold(name, value.strip(), f"--threshold {text!r}")

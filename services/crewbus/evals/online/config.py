"""The online evaluators, from an evaluators.toml file.

    plugins = ["mypkg.scorers"]          # optional: modules of your own scorers

    [[evaluator]]
    name = "quality"                     # a word: part of score keys and of the sampling
    rate = 0.1                           # share of matching tasks scored (0..1, or "10%")
    add_to = "prod-failures"             # optional: a task with a failing score joins it

    [evaluator.filter]                   # optional: which finished tasks (all must match)
    status = ["completed", "failed"]     # completed | failed | cancelled
    target = ["crew"]                    # crew | planner | researcher | executor | critic
    variant = ["production"]
    metadata = { tenant = "acme" }       # the task's metadata has these values

    [[evaluator.scorer]]                 # the scorers of eval.toml, same keys
    kind = "llm_judge"
    rubric = "helpfulness"

A bad file is one `ScorerConfigError` line naming the file and the key
(`evaluator[2].rate`), like eval.toml's.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crewbus.evals.datasets import check_name
from crewbus.evals.scorers.config import plan_from_dict, read_toml, where_text
from crewbus.evals.scorers.errors import ScorerConfigError
from crewbus.evals.scorers.registry import KIND
from crewbus_contracts import FINAL_STATUSES
from crewbus_contracts.evals import ScorerSpec, Target

TOP_LEVEL_KEYS = ("evaluator", "plugins")
EVALUATOR_KEYS = ("name", "rate", "add_to", "filter", "scorer")
FILTER_KEYS = ("status", "target", "variant", "metadata")
TARGETS: tuple[Target, ...] = ("crew", "planner", "researcher", "executor", "critic")
_PERCENT = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class TaskFilter:
    """Which finished tasks an evaluator looks at; an empty field matches every task."""

    status: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    variant: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OnlineEvaluator:
    name: str
    rate: float
    scorers: list[ScorerSpec]
    filter: TaskFilter = field(default_factory=TaskFilter)
    add_to: str | None = None


@dataclass(frozen=True)
class EvaluatorsPlan:
    """What an evaluators.toml configures; `base_dir` resolves relative paths in it."""

    evaluators: list[OnlineEvaluator]
    plugins: list[str] = field(default_factory=list)
    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "evaluators.toml"
    """The file it was read from, for error lines."""


def load_evaluators_file(path: str | Path) -> EvaluatorsPlan:
    path = Path(path)
    data = read_toml(path)
    try:
        plan = plan_from_toml(data, base_dir=path.resolve().parent)
    except ScorerConfigError as exc:
        raise ScorerConfigError(f"{path}: {exc}") from None
    return dataclasses.replace(plan, source=str(path))


def plan_from_toml(data: dict[str, Any], base_dir: Path | None = None) -> EvaluatorsPlan:
    _known(data, TOP_LEVEL_KEYS, "an evaluators file")
    tables = data.get("evaluator", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables) \
            or not tables:
        raise ScorerConfigError("no [[evaluator]] table: the file needs at least one")
    evaluators = [_evaluator(table, f"evaluator[{i}]") for i, table in enumerate(tables, 1)]
    names = [e.name for e in evaluators]
    if len(set(names)) != len(names):
        raise ScorerConfigError(f"two evaluators share a name in {names}")
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise ScorerConfigError("`plugins` must be a list of module names")
    return EvaluatorsPlan(evaluators, list(plugins), base_dir or Path.cwd())


def _known(table: dict[str, Any], keys: tuple[str, ...], what: str, where: str = "") -> None:
    unknown = sorted(set(table) - set(keys))
    if unknown:
        at = f"{where}: " if where else ""
        raise ScorerConfigError(f"{at}unknown key {unknown[0]!r} ({what} has "
                                f"{', '.join(keys)})")


def _evaluator(table: dict[str, Any], where: str) -> OnlineEvaluator:
    _known(table, EVALUATOR_KEYS, "an evaluator", where)
    name = table.get("name")
    if not isinstance(name, str) or not KIND.match(name) or name == "human":
        raise ScorerConfigError(f"{where}.name: a word like \"quality\" is required "
                                "(and not \"human\": feedback's own)")
    where = f"{where} ({name})"
    scorers = table.get("scorer", [])
    try:
        specs = plan_from_dict({"scorer": scorers}).scorers
    except ScorerConfigError as exc:
        raise ScorerConfigError(f"{where}: {exc}") from None
    add_to = table.get("add_to")
    if add_to is not None:
        if not isinstance(add_to, str):
            raise ScorerConfigError(f"{where}.add_to: a dataset name")
        try:
            check_name(add_to)
        except ValueError as exc:
            raise ScorerConfigError(f"{where}.add_to: {exc}") from None
    return OnlineEvaluator(name=name, rate=parse_rate(table.get("rate", 1.0), f"{where}.rate"),
                           scorers=specs, filter=_filter(table.get("filter", {}), where),
                           add_to=add_to)


def parse_rate(value: Any, where: str) -> float:
    """`0.1`, `1`, or `"10%"` as a share in 0..1."""
    number: Any = value
    if isinstance(value, str) and (percent := _PERCENT.match(value)):
        number = float(percent["number"]) / 100
    if isinstance(number, bool) or not isinstance(number, int | float) or \
            not 0.0 <= number <= 1.0:
        raise ScorerConfigError(f"{where}: a share from 0 to 1 (or \"10%\"), not {value!r}")
    return float(number)


def _filter(table: Any, where: str) -> TaskFilter:
    if not isinstance(table, dict):
        raise ScorerConfigError(f"{where}.filter: a table, e.g. {{ status = [\"failed\"] }}")
    _known(table, FILTER_KEYS, "a filter", f"{where}.filter")
    choices: dict[str, tuple[str, ...]] = {"status": FINAL_STATUSES, "target": TARGETS}
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("status", "target", "variant"):
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ScorerConfigError(f"{where}.filter.{key}: a list of names")
        allowed = choices.get(key)
        if allowed and (bad := [v for v in value if v not in allowed]):
            raise ScorerConfigError(f"{where}.filter.{key}: {bad[0]!r} is not one of "
                                    f"{', '.join(allowed)}")
        lists[key] = tuple(value)
    metadata = table.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str | int | float | bool)
                                                 for v in metadata.values()):
        raise ScorerConfigError(f"{where}.filter.metadata: a table of values, e.g. "
                                "{ tenant = \"acme\" }")
    return TaskFilter(status=lists["status"], target=lists["target"],
                      variant=lists["variant"],
                      metadata={k: where_text(v) for k, v in metadata.items()})

"""From the evaluator's settings to its built evaluators: the file read, its plugins
imported, every scorer built, before the service takes any work (so a bad file is one
error line at start, never a failure per task)."""

from __future__ import annotations

from crewbus.evals.online.config import EvaluatorsPlan, load_evaluators_file
from crewbus.evals.online.service import BuiltEvaluator
from crewbus.evals.online.settings import EvaluatorSettings
from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.errors import ScorerConfigError
from crewbus.evals.scorers.plugins import load_plugins
from crewbus.evals.scorers.registry import build_scorers


def load_plan(settings: EvaluatorSettings) -> EvaluatorsPlan:
    if not settings.evaluators_file:
        raise ScorerConfigError("no evaluators file: set CREWBUS_EVALUATORS_FILE or pass "
                                "--file evaluators.toml (see examples/evaluators.toml)")
    plan = load_evaluators_file(settings.evaluators_file)
    load_plugins(plan.plugins, plan.base_dir)
    return plan


def build_evaluators(plan: EvaluatorsPlan, context: ScorerContext, add_to: str = ""
                     ) -> list[BuiltEvaluator]:
    """Each evaluator with its scorers; `add_to` (the service's `--add-to`) joins every
    evaluator's own `add_to`."""
    built = []
    for evaluator in plan.evaluators:
        try:
            scorers = build_scorers(evaluator.scorers, context)
        except ScorerConfigError as exc:
            raise ScorerConfigError(f"{plan.source}: evaluator {evaluator.name!r}: "
                                    f"{exc}") from None
        datasets = tuple(dict.fromkeys(d for d in (evaluator.add_to, add_to) if d))
        built.append(BuiltEvaluator(evaluator, scorers, datasets))
    return built

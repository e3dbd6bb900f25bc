"""`llm_judge`: a model grades the answer by a rubric, through crewbus's LLM adapter.

The judge is any OpenAI-compatible model (`Settings.judge`, `CREWBUS_JUDGE_*`; the
simulated one when nothing is configured). Its reply is a `JudgeVerdict` validated like
every structured reply (shown its error once, then refused); a reply that still fails,
or a judge that cannot be reached, is a Score with `error` set: never a pass.

Every Score it returns carries `usage`: the judge's tokens and USD over every attempt
(a reply that failed validation still cost them), priced like the agents' calls, so an
experiment can say what evaluating cost apart from what the tasks cost.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from crewbus.evals.scorers.base import Observation, Scorer
from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.registry import (
    REGISTRY,
    ScorerKind,
    ScorerParams,
    error_score,
    matches_where,
)
from crewbus.evals.scorers.rubric import Rubric, load_rubric
from crewbus.llm.errors import LLMError, OutputValidationError
from crewbus.llm.hint import ModelHint
from crewbus_contracts.evals import DatasetItem, EvalUsage, JudgeVerdict, Score, ScoreType
from crewbus_contracts.tasks import TokenUsage

log = logging.getLogger(__name__)

KIND_VERSION = "1"
"""The judge's own version (its prompt layout); the rubric's version is added to it."""

INSTRUCTIONS = (
    "Reply with one JSON object: `score` (a number from 0 to 1), `label` (one word) and "
    "`reasoning` (two or three sentences). Grade the answer, not the task."
)


class JudgeParams(ScorerParams):
    rubric: str = "correctness"
    """A packaged rubric's name, or a path to your own `.md` rubric file."""
    model: str | None = None
    """The judge model's name; unset: the judge settings' model (`CREWBUS_JUDGE_MODEL`)."""
    pass_score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    """A score at or above this passes."""


@dataclass(frozen=True)
class JudgeScorer:
    """One configured judge: its rubric loaded, its client from the context."""

    name: str
    version: str
    rubric: Rubric
    params: JudgeParams
    where: dict[str, str]
    context: ScorerContext
    type: ScoreType = "numeric"

    def applies_to(self, item: DatasetItem) -> bool:
        return matches_where(self.where, item)

    async def score(self, observation: Observation) -> Score:
        client = self.context.judge_client(self.params.model)
        try:
            completion = await client.structured(
                self.rubric.text,
                judge_prompt(observation),
                JudgeVerdict,
                hint=ModelHint(task=observation.item.input.text),
            )
        except OutputValidationError as exc:
            return self._error(f"the judge's reply did not validate: {exc.validation_error}",
                               usage_of(exc.usage, exc.cost_usd))
        except LLMError as exc:
            # A failed call reports no usage: nothing to count or price (as for the agents).
            return self._error(f"the judge failed: {exc}", EvalUsage())
        except Exception as exc:  # a bug here must still not pass the item
            log.warning("judge %s raised %s", self.name, type(exc).__name__, exc_info=True)
            return self._error(f"the judge raised {type(exc).__name__}: {exc}", EvalUsage())
        verdict = completion.value
        return Score(
            name=self.name,
            type=self.type,
            scorer_version=self.version,
            value=verdict.score,
            label=verdict.label,
            passed=verdict.score >= self.params.pass_score,
            explanation=verdict.reasoning,
            usage=usage_of(completion.usage, completion.cost_usd),
        )

    def _error(self, message: str, usage: EvalUsage) -> Score:
        score = error_score(self.name, self.type, self.version, message)
        return msgspec.structs.replace(score, usage=usage)


def usage_of(tokens: TokenUsage, cost_usd: float | None) -> EvalUsage:
    """The adapter's usage and cost of a structured call as a Score's `usage`."""
    return EvalUsage(input_tokens=tokens.input_tokens, output_tokens=tokens.output_tokens,
                     calls=tokens.calls, cost_usd=cost_usd)


def judge_prompt(observation: Observation) -> str:
    """What the judge reads: the task, the reference (when the item has one), the answer."""
    item = observation.item
    answer = observation.answer
    if not answer and observation.output is not None:
        answer = json.dumps(observation.output, ensure_ascii=False, indent=2)
    parts = [f"## Task\n{item.input.text}"]
    if item.expected is not None:
        parts.append(f"## Reference answer\n{_as_text(item.expected)}")
    else:
        parts.append("## Reference answer\n(none given)")
    parts += [f"## Answer to grade\n{answer or '(empty)'}", INSTRUCTIONS]
    return "\n\n".join(parts)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _build(params: Any, name: str, where: dict[str, str], context: ScorerContext) -> Scorer:
    rubric = load_rubric(params.rubric, context)
    version = f"{KIND_VERSION}/{rubric.name}@{rubric.version}"
    return JudgeScorer(
        name=name, version=version, rubric=rubric, params=params, where=where, context=context
    )


REGISTRY.register(
    ScorerKind(
        kind="llm_judge",
        type="numeric",
        version=KIND_VERSION,
        params_type=JudgeParams,
        build=_build,
        primary="rubric",
        description="A model grades the answer by a rubric (score, label, reasoning).",
    )
)

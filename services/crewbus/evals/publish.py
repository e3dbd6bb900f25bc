"""What a stored run item tells the rest of the platform: an `EvaluationScored` on `EVALS`
(the metrics read it) and an `evaluation` span in the task's own trace, with one
`gen_ai.evaluation.result` event per score (so `crewbus trace` shows how it was judged).

Both are published after the run item is stored (the store is the record; a reader never
sees a score that is not stored) and both carry ids derived from (experiment, item, epoch),
so a repeat is stored once.
"""

from __future__ import annotations

import hashlib

from nats.js import JetStreamContext

from crewbus.bus.codec import encode
from crewbus.evals.experiments import item_key
from crewbus.evals.run_items import judged_role
from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing import SpanDraft, Tracer, task_context, task_trace_id
from crewbus_contracts import subjects
from crewbus_contracts.evals import EvaluationScored, ExperimentConfig, RunItem, Score
from crewbus_contracts.traces import EVALUATION_RESULT, AttributeValue, Span, SpanEvent


def message_id(run: RunItem) -> str:
    return f"{run.experiment}:{item_key(run.item_id)}:{run.epoch}"


def scored(run: RunItem, config: ExperimentConfig) -> EvaluationScored:
    role = judged_role(config.target)
    return EvaluationScored(
        experiment=run.experiment, dataset=config.dataset, item_id=run.item_id,
        epoch=run.epoch, task_id=run.task_id, target=config.target, role=role,
        prompt_version=run.prompt_versions.get(role, ""), variant=config.variant,
        scores=run.scores,
    )


async def publish_scored(js: JetStreamContext, run: RunItem, config: ExperimentConfig) -> None:
    await js.publish(
        subjects.evals(run.experiment), encode(scored(run, config)),
        stream=subjects.EVALS_STREAM, headers={"Nats-Msg-Id": message_id(run)},
    )


def evaluation_event(score: Score, at: float) -> SpanEvent:
    """One score as OpenTelemetry's `gen_ai.evaluation.result` event."""
    label = score.label or (None if score.passed is None else
                            "pass" if score.passed else "fail")
    attributes: dict[str, AttributeValue] = {
        "gen_ai.evaluation.name": score.name,
        "gen_ai.evaluation.score.value": score.value,
        "gen_ai.evaluation.score.label": label,
        "gen_ai.evaluation.explanation": score.error or score.explanation or None,
        "error.type": "scorer_error" if score.error else None,
        "crewbus.eval.score_type": score.type,
        "crewbus.eval.scorer_version": score.scorer_version,
    }
    return SpanEvent(name=EVALUATION_RESULT, time=at,
                     attributes={k: v for k, v in attributes.items() if v is not None})


def evaluation_span_context(run: RunItem) -> TraceContext:
    """The evaluation span's ids: in the task's trace, fixed per (experiment, item, epoch)."""
    seed = f"evaluation:{message_id(run)}".encode()
    return TraceContext(task_trace_id(run.task_id), hashlib.sha256(seed).hexdigest()[:16])


async def write_evaluation_span(
    tracer: Tracer, run: RunItem, config: ExperimentConfig, start: float, end: float
) -> Span | None:
    """An `evaluation <experiment>` span under the task's `task` span, its scores as events.
    None when the item never became a task (nothing to attach it to) or tracing is off."""
    if not run.task_id:
        return None
    errors = [s.name for s in run.scores if s.error]
    return await tracer.write(SpanDraft(
        name=f"evaluation {run.experiment}", kind="evaluation", task_id=run.task_id,
        context=evaluation_span_context(run),
        parent_span_id=task_context(run.task_id).span_id,
        start=start, end=end, status="error" if errors else "ok",
        error=f"could not score: {', '.join(errors)}" if errors else None,
        attributes={
            "crewbus.eval.experiment": run.experiment, "crewbus.eval.dataset": config.dataset,
            "crewbus.eval.dataset_version": config.dataset_version,
            "crewbus.eval.item": run.item_id, "crewbus.eval.epoch": run.epoch,
            "crewbus.eval.target": config.target, "crewbus.eval.variant": config.variant,
        },
        events=[evaluation_event(score, end) for score in run.scores],
    ))

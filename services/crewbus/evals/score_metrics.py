"""`crewbus_eval_score` (and a judge's cost, `crewbus_eval_cost_usd`): every score
published on `EVALS`, recorded once for Prometheus.

The runner that scores an item is a CLI process that ends with the experiment, so it is no
place for a metric Prometheus scrapes. The orchestrator process records them instead,
through one durable consumer shared by its replicas: each score is observed by exactly
one replica, whichever took the message (and summing over replicas, as the dashboards do,
counts it once).
"""

from __future__ import annotations

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from crewbus.bus.worker import WorkerSpec, decode_or_reject, run_pull_worker
from crewbus.orchestrator.settings import OrchestratorSettings
from crewbus.telemetry import metrics
from crewbus_contracts import subjects
from crewbus_contracts.evals import EvaluationScored

_decoder = msgspec.json.Decoder(EvaluationScored)


def record(scored: EvaluationScored) -> None:
    for score in scored.scores:
        metrics.record_eval_score(metrics.EvalScore(
            scorer=score.name, dataset=scored.dataset,
            prompt_version=scored.prompt_version or "unknown", variant=scored.variant,
            value=score.value, passed=score.passed, error=score.error is not None,
        ))
        metrics.record_eval_cost(score.name, scored.dataset, score.usage)


async def handle(msg: Msg) -> None:
    record(decode_or_reject(msg, _decoder))


async def record_eval_scores(js: JetStreamContext, settings: OrchestratorSettings) -> None:
    """Record every score published on `EVALS` until cancelled."""
    spec = WorkerSpec(
        role="orchestrator",
        stream=subjects.EVALS_STREAM,
        consumer=subjects.EVALS_METRICS_CONSUMER,
        dead_letter_subject=subjects.dead_letter("orchestrator"),
        max_deliver=settings.orchestrator_max_deliver,
        heartbeat_s=settings.heartbeat_s,
        concurrency=settings.concurrency,
    )
    await run_pull_worker(js, spec, handle)

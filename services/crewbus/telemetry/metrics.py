"""Every Prometheus metric crewbus exports, defined once, plus one-line recording helpers.

GenAI metrics follow the OpenTelemetry GenAI semantic conventions in Prometheus form
(dots become underscores, unit suffix appended) with the buckets the conventions
recommend; prometheus-client's default buckets stop at 10 s, too short for LLM calls.
Everything else is `crewbus_*`. Labels are bounded sets (role, model, prompt version,
outcome, reason, subject kind): never a task id or free text.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

from crewbus.service_names import BUS_SERVICES
from crewbus.telemetry.pricing import cost_usd
from crewbus_contracts import subjects
from crewbus_contracts.evals import EvalUsage

log = logging.getLogger(__name__)

# OTel GenAI recommended bucket boundaries.
OPERATION_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
TOKEN_USAGE_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
    67108864,
)
TIME_TO_FIRST_TOKEN_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
# A task is several LLM rounds: minutes, not seconds.
TASK_DURATION_BUCKETS = (
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0,
)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
ROUND_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10)
MEMORY_SEARCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HITS_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64)

GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")

# --- OpenTelemetry GenAI -------------------------------------------------------------

genai_operation_duration = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "GenAI operation duration (OTel gen_ai.client.operation.duration).",
    [*GENAI_LABELS, "error_type"],
    buckets=OPERATION_DURATION_BUCKETS,
)
genai_token_usage = Histogram(
    "gen_ai_client_token_usage",
    "Tokens used per GenAI operation, by token type (OTel gen_ai.client.token.usage).",
    [*GENAI_LABELS, "gen_ai_token_type"],
    buckets=TOKEN_USAGE_BUCKETS,
)
# Client-side TTFT, so crewbus_ rather than gen_ai_server_time_to_first_token_seconds:
# that OTel name is for the model server's own measurement (vLLM exports it too), and
# ours includes the network and gateway; mixing the two under one name would mislead.
llm_time_to_first_token = Histogram(
    "crewbus_llm_time_to_first_token_seconds",
    "Seconds from request to the first streamed token, as seen by the client.",
    [*GENAI_LABELS, "agent"],
    buckets=TIME_TO_FIRST_TOKEN_BUCKETS,
)

# --- LLM cost and validation ----------------------------------------------------------

llm_cost_usd = Counter(
    "crewbus_llm_cost_usd",
    "USD spent on LLM calls, from provider-reported usage and the price table.",
    ["agent", "model"],
)
llm_unpriced_calls = Counter(
    "crewbus_llm_unpriced_calls",
    "LLM calls whose model has no price in the table (their cost is not guessed).",
    ["agent", "model"],
)
llm_validation_retries = Counter(
    "crewbus_llm_validation_retries",
    "Structured-output replies that failed validation and were sent back to the model.",
    ["agent", "model"],
)

# --- Tasks, steps, quality -------------------------------------------------------------

tasks = Counter(
    "crewbus_tasks",
    "Tasks by outcome (submitted, completed, failed) and failure reason ('' when ok).",
    ["outcome", "reason"],
)
task_duration = Histogram(
    "crewbus_task_duration_seconds",
    "Task end-to-end duration, submission to final result.",
    ["outcome"],
    buckets=TASK_DURATION_BUCKETS,
)
task_planning_rounds = Histogram(
    "crewbus_task_planning_rounds",
    "Planning rounds (plan, work, critique) a finished task took.",
    ["outcome"],
    buckets=ROUND_BUCKETS,
)
replans = Counter("crewbus_replans", "Re-planning rounds started after a critique.")
degraded = Counter(
    "crewbus_degraded",
    "Rounds run without the model's valid plan: plan_repaired or single_step.",
    ["reason"],
)
steps = Counter(
    "crewbus_steps",
    "Agent work items (plan, step, critique) finished, by role and outcome.",
    ["role", "outcome"],
)
step_duration = Histogram(
    "crewbus_step_duration_seconds",
    "Time an agent spent on one work item.",
    ["role"],
    buckets=OPERATION_DURATION_BUCKETS,
)
critic_score = Histogram(
    "crewbus_critic_score",
    "Critic scores (0..1), by the judged agent role, its prompt version and the variant.",
    ["role", "prompt_version", "variant"],
    buckets=SCORE_BUCKETS,
)
critic_verdicts = Counter("crewbus_critic_verdicts", "Critic verdicts.", ["verdict"])
EVAL_LABELS = ("scorer", "dataset", "prompt_version", "variant")
eval_score = Histogram(
    "crewbus_eval_score",
    "Evaluation scores (0..1) by scorer, dataset, the judged role's prompt version and "
    "the variant (from the EVALS stream, once per run item).",
    list(EVAL_LABELS),
    buckets=SCORE_BUCKETS,
)
eval_results = Counter(
    "crewbus_eval_results",
    "Evaluation verdicts by scorer, dataset, prompt version, variant and outcome "
    "(pass, fail, error: a scorer that could not score).",
    [*EVAL_LABELS, "outcome"],
)

EVAL_COST_LABELS = ("scorer", "dataset")
eval_cost_usd = Counter(
    "crewbus_eval_cost_usd",
    "USD spent scoring (the LLM judge's calls), by scorer and dataset (`online:<evaluator>` "
    "for an online evaluator), priced like the agents' calls: what evaluating cost, apart "
    "from what the tasks cost.",
    list(EVAL_COST_LABELS),
)
eval_tokens = Counter(
    "crewbus_eval_tokens",
    "Tokens the scorers' model calls (the LLM judge's) used, by scorer, dataset and "
    "token type (input, output).",
    [*EVAL_COST_LABELS, "token_type"],
)
eval_unpriced_scores = Counter(
    "crewbus_eval_unpriced_scores",
    "Scores whose model calls include one to a model without a price: their USD is not "
    "in crewbus_eval_cost_usd (never guessed).",
    list(EVAL_COST_LABELS),
)

# --- Replay and shadow -----------------------------------------------------------------

replay_tool_calls = Counter(
    "crewbus_replay_tool_calls",
    "Tool calls of replayed and shadow tasks by mode and match: hit (the recorded result "
    "was served) or miss (none matched: `outcome` says live, blocked (side effects) or "
    "refused).",
    ["mode", "match", "outcome"],
)
replay_memory_recalls = Counter(
    "crewbus_replay_memory_recalls",
    "Memory recalls of replayed and shadow tasks by mode and match (hit, miss, live).",
    ["mode", "match"],
)
replay_cost_usd = Counter(
    "crewbus_replay_cost_usd",
    "USD spent by replayed and shadow tasks, counted when each ends (crewbus_llm_cost_usd "
    "counts every call, these included: production is the difference).",
    ["mode"],
)
shadow_events = Counter(
    "crewbus_shadow",
    "Shadow run events: started (a shadow task submitted), recorded (a run item stored), "
    "budget_exceeded (the shadow stopped itself).",
    ["event"],
)

REPLAY_MODES = ("replay", "shadow")
"""`ReplayOptions.mode`'s values."""
REPLAY_TOOL_SERIES = (("hit", "served"), ("miss", "live"), ("miss", "blocked"),
                      ("miss", "refused"))
"""Every (match, outcome) a replayed tool call can have (`replay_outcome`)."""
SHADOW_EVENTS = ("started", "recorded", "budget_exceeded")


def _zero_replay_series() -> None:
    """Every replay and shadow series at 0 from the start. A replay is rare and short: a
    series born at its first call would be first scraped already counting it, and
    Prometheus's rate() and increase() never count a series' first sample, so a one-off
    replay would show as nothing on the dashboard."""
    for mode in REPLAY_MODES:
        for match, outcome in REPLAY_TOOL_SERIES:
            replay_tool_calls.labels(mode, match, outcome)
        for match in ("hit", "miss", "live"):
            replay_memory_recalls.labels(mode, match)
        replay_cost_usd.labels(mode)
    for event in SHADOW_EVENTS:
        shadow_events.labels(event)


_zero_replay_series()

# --- Bus and queues --------------------------------------------------------------------

queue_pending = Gauge(
    "crewbus_queue_pending",
    "Messages not yet delivered to a JetStream consumer (consumer info num_pending).",
    ["stream", "consumer"],
)
queue_ack_pending = Gauge(
    "crewbus_queue_ack_pending",
    "Messages delivered but not yet acked (consumer info num_ack_pending).",
    ["stream", "consumer"],
)
queue_redelivered = Gauge(
    "crewbus_queue_redelivered",
    "Messages redelivered and still unacked (consumer info num_redelivered).",
    ["stream", "consumer"],
)
redeliveries = Counter(
    "crewbus_redeliveries",
    "Work messages received again after a failed or timed-out attempt.",
    ["role"],
)
dead_letters = Counter(
    "crewbus_dead_letters",
    "Messages moved to the dead-letter stream after their last delivery attempt.",
    ["role", "reason"],
)
bad_input = Counter(
    "crewbus_bad_input",
    "Messages rejected as malformed or invalid, by reason and subject kind.",
    ["reason", "subject_kind"],
)
bus_messages = Counter(
    "crewbus_bus_messages",
    "Messages handled on the bus, by subject kind and direction (in, out).",
    ["subject_kind", "direction"],
)

# --- Memory and processes --------------------------------------------------------------

memory_search_duration = Histogram(
    "crewbus_memory_search_duration_seconds",
    "Memory (vector) search latency.",
    ["backend"],
    buckets=MEMORY_SEARCH_BUCKETS,
)
memory_search_hits = Histogram(
    "crewbus_memory_search_hits",
    "Results returned per memory search.",
    ["backend"],
    buckets=HITS_BUCKETS,
)
service_info = Gauge(
    "crewbus_service_info",
    "1 per running crewbus process; sum by role counts replicas up.",
    ["role", "version"],
)

# --- HTTP gateway ----------------------------------------------------------------------

HTTP_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                         5.0, 10.0, 30.0, 60.0, 300.0)
http_requests = Counter(
    "crewbus_http_requests",
    "HTTP requests the gateway answered, by route template (never a path with an id).",
    ["route", "method", "status"],
)
http_request_duration = Histogram(
    "crewbus_http_request_duration_seconds",
    "Time to the response's headers (a stream counts until it starts).",
    ["route", "method"],
    buckets=HTTP_DURATION_BUCKETS,
)
http_sse_streams = Gauge(
    "crewbus_http_sse_streams", "Event streams (task events, chat completions) open now.")


# --- Recording helpers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LlmCall:
    """One finished LLM call as the adapter saw it (one input object, fields may grow)."""

    agent: str
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    duration_s: float
    operation: str = "chat"
    error_type: str = ""
    """'' when the call succeeded, else a short class name such as 'timeout'."""
    cached_input_tokens: int = 0
    """Part of `input_tokens` served from the provider's prompt cache."""
    time_to_first_token_s: float | None = None
    """Only for streamed calls."""


def record_llm_call(call: LlmCall) -> float | None:
    """Record duration, tokens, TTFT and cost of one call; return its USD cost (None: unpriced)."""
    base = (call.operation, call.provider, call.model)
    genai_operation_duration.labels(*base, call.error_type).observe(call.duration_s)
    if call.time_to_first_token_s is not None:
        llm_time_to_first_token.labels(*base, call.agent).observe(call.time_to_first_token_s)
    if call.error_type:
        # A failed call has no provider-reported usage to count or price.
        return None
    genai_token_usage.labels(*base, "input").observe(call.input_tokens)
    genai_token_usage.labels(*base, "output").observe(call.output_tokens)
    cost = cost_usd(call.model, call.input_tokens, call.output_tokens, call.cached_input_tokens)
    if cost is None:
        llm_unpriced_calls.labels(call.agent, call.model).inc()
    else:
        llm_cost_usd.labels(call.agent, call.model).inc(cost)
    return cost


def record_validation_retry(agent: str, model: str) -> None:
    llm_validation_retries.labels(agent, model).inc()


def record_task_submitted() -> None:
    tasks.labels("submitted", "").inc()


def record_task_finished(outcome: str, reason: str, duration_s: float, rounds: int) -> None:
    """`outcome` is 'completed' or 'failed'; `reason` a short code, '' when completed."""
    tasks.labels(outcome, reason).inc()
    task_duration.labels(outcome).observe(duration_s)
    task_planning_rounds.labels(outcome).observe(rounds)


def record_replan() -> None:
    replans.inc()


def record_degraded(reason: str) -> None:
    """`reason` is 'plan_repaired' or 'single_step' (crewbus_contracts.Degraded)."""
    degraded.labels(reason).inc()


def record_step(role: str, outcome: str, duration_s: float) -> None:
    steps.labels(role, outcome).inc()
    step_duration.labels(role).observe(duration_s)


class BoundedLabel:
    """A label fed by names people make (variants, prompt versions), kept to at most
    `limit` values per process: the first `limit` distinct values are used as they are,
    any later one becomes `other` (logged the first time). A restart starts afresh, so the
    series a process exports stay bounded however many versions are pushed."""

    OTHER = "other"

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._kept: set[str] = set()
        self._warned = False
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        with self._lock:
            if value in self._kept:
                return value
            if len(self._kept) < self.limit:
                self._kept.add(value)
                return value
            warn, self._warned = not self._warned, True
        if warn:
            log.warning("metric label %s has %d values: %r and any later one count as %r "
                        "until this process restarts", self.name, self.limit, value,
                        self.OTHER)
        return self.OTHER


VARIANT_LABEL = BoundedLabel("variant", 20)
PROMPT_VERSION_LABEL = BoundedLabel("prompt_version", 50)
"""(Per process) 20 variants x 50 prompt versions x 4 roles bounds the critic score's
series, and in practice a few variants and versions are live at a time."""


def record_critique(role: str, prompt_version: str, score: float, verdict: str,
                    variant: str = "production") -> None:
    """`role`/`prompt_version` name the judged work (e.g. the planner's prompt), `variant`
    the task's variant."""
    critic_score.labels(role, PROMPT_VERSION_LABEL(prompt_version),
                        VARIANT_LABEL(variant)).observe(score)
    critic_verdicts.labels(verdict).inc()


@dataclass(frozen=True, slots=True)
class EvalScore:
    """One score of one run item, as the metrics see it."""

    scorer: str
    dataset: str
    prompt_version: str
    variant: str
    value: float | None
    passed: bool | None
    error: bool = False


SCORER_LABEL = BoundedLabel("scorer", 50)
DATASET_LABEL = BoundedLabel("dataset", 50)


def record_eval_score(score: EvalScore) -> None:
    """Every label is a name people make, so each is bounded (`BoundedLabel`)."""
    labels = (SCORER_LABEL(score.scorer), DATASET_LABEL(score.dataset),
              PROMPT_VERSION_LABEL(score.prompt_version), VARIANT_LABEL(score.variant))
    if score.value is not None and not score.error:
        eval_score.labels(*labels).observe(score.value)
    outcome = ("error" if score.error else "pass" if score.passed
               else "fail" if score.passed is not None else "unjudged")
    eval_results.labels(*labels, outcome).inc()


def record_eval_cost(scorer: str, dataset: str, usage: EvalUsage | None) -> None:
    """What one score's model calls cost (its `usage`; None: a scorer that calls no
    model, nothing to record). Labels bounded as `record_eval_score`'s."""
    if usage is None:
        return
    labels = (SCORER_LABEL(scorer), DATASET_LABEL(dataset))
    eval_tokens.labels(*labels, "input").inc(usage.input_tokens)
    eval_tokens.labels(*labels, "output").inc(usage.output_tokens)
    if usage.cost_usd is None:
        eval_unpriced_scores.labels(*labels).inc()
    else:
        eval_cost_usd.labels(*labels).inc(usage.cost_usd)


def record_replay_tool_call(mode: str, match: str, outcome: str) -> None:
    replay_tool_calls.labels(mode, match, outcome).inc()


def record_replay_recall(mode: str, match: str) -> None:
    replay_memory_recalls.labels(mode, match).inc()


def record_replay_cost(mode: str, usd: float) -> None:
    replay_cost_usd.labels(mode).inc(max(0.0, usd))


def record_shadow(event: str) -> None:
    shadow_events.labels(event).inc()


def record_redelivery(role: str) -> None:
    redeliveries.labels(role).inc()


def record_dead_letter(role: str, reason: str) -> None:
    dead_letters.labels(role, reason).inc()


def record_bad_input(reason: str, subject: str) -> None:
    bad_input.labels(reason, subject_kind(subject)).inc()


def record_bus_message(subject: str, direction: str) -> None:
    bus_messages.labels(subject_kind(subject), direction).inc()


def record_http_request(route: str, method: str, status: int, duration_s: float) -> None:
    http_requests.labels(route, method, str(status)).inc()
    http_request_duration.labels(route, method).observe(duration_s)


@contextlib.contextmanager
def sse_stream_open() -> Iterator[None]:
    """Counts an open stream in `crewbus_http_sse_streams` while the block runs."""
    http_sse_streams.inc()
    try:
        yield
    finally:
        http_sse_streams.dec()


def record_memory_search(backend: str, duration_s: float, hits: int) -> None:
    memory_search_duration.labels(backend).observe(duration_s)
    memory_search_hits.labels(backend).observe(hits)


def mark_service_up(role: str, version: str | None = None) -> None:
    """Set this process's `crewbus_service_info{role}` to 1 (call once at start-up)."""
    service_info.labels(role, version or _installed_version()).set(1)


def _installed_version() -> str:
    try:
        return importlib.metadata.version("crewbus")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def _kind(subject: str) -> str:
    return subject.split(".")[1]


_KINDS = frozenset(_kind(s) for s in (subjects.SUBMIT, subjects.TASK, subjects.WORK,
                                      subjects.RESULTS, subjects.EVENTS, subjects.DEAD_LETTER))
_ROLED_KINDS = frozenset(_kind(s) for s in (subjects.WORK, subjects.DEAD_LETTER))
_ROLES = frozenset(BUS_SERVICES)


def subject_kind(subject: str) -> str:
    """A bounded label for a subject: 'results' for crewbus.results.<task id>,
    'work.researcher' for crewbus.work.researcher, 'other' for anything unknown."""
    parts = subject.split(".")
    if len(parts) < 2 or parts[0] != "crewbus" or parts[1] not in _KINDS:
        return "other"
    if parts[1] in _ROLED_KINDS and len(parts) > 2 and parts[2] in _ROLES:
        return f"{parts[1]}.{parts[2]}"
    return parts[1]


# --- Introspection (tests, dashboards) -------------------------------------------------

ALL_METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    genai_operation_duration, genai_token_usage, llm_time_to_first_token,
    llm_cost_usd, llm_unpriced_calls, llm_validation_retries,
    tasks, task_duration, task_planning_rounds, replans, steps, step_duration,
    critic_score, critic_verdicts, degraded, eval_score, eval_results,
    eval_cost_usd, eval_tokens, eval_unpriced_scores,
    queue_pending, queue_ack_pending, queue_redelivered, redeliveries, dead_letters,
    bad_input, bus_messages,
    memory_search_duration, memory_search_hits, service_info,
    http_requests, http_request_duration, http_sse_streams,
    replay_tool_calls, replay_memory_recalls, replay_cost_usd, shadow_events,
)

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exposed_names(metrics: Iterable[Counter | Gauge | Histogram] = ALL_METRICS) -> set[str]:
    """Every series name Prometheus will see for `metrics` (e.g. `crewbus_steps_total`)."""
    names: set[str] = set()
    for metric in metrics:
        for family in metric.describe():
            names.update(family.name + s for s in _SUFFIXES[family.type])
    return names


def registry() -> CollectorRegistry:
    """The registry the metrics live in (the process default)."""
    return REGISTRY

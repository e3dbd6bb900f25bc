"""Evaluations on the bus: datasets, experiments, run items and their scores.

The shape the field has settled on (LangSmith, Langfuse, Braintrust, Phoenix, MLflow):
a dataset holds items; an experiment runs every item of one pinned dataset version
(times `epochs`) and keeps one run item per (item, epoch), linked to the task (and so the
trace) that answered it; each run item carries scores with a name, a type and a comment.

Kept in JetStream: dataset versions in the `DATASETS_OBJECTS` object store, their index
(`DatasetInfo`) in `DATASETS_KV`, experiments and run items in `EXPERIMENTS_KV`
(see `subjects.py`). Scores also go out as `EvaluationScored` on `EVALS`, where the
metrics and dashboards read them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from crewbus_contracts.base import AgentRole, Message, Model
from crewbus_contracts.tasks import TaskLimits

ScoreType = Literal["boolean", "numeric", "categorical"]
"""`boolean`: value 1.0 (pass) or 0.0; `numeric`: a value in 0..1; `categorical`: a label
(and, when the scorer maps labels to a score, a value in 0..1)."""

Target = Literal["crew", "planner", "researcher", "executor", "critic"]
"""What an experiment sends each item to: the whole crew as a task, or one agent alone."""

RunItemStatus = Literal["completed", "failed", "cancelled", "error"]
"""The task's end (`completed`, `failed`, `cancelled`), or `error`: the item could not be
run or scored at all (the run item's `error_code` says why)."""

ExperimentStatus = Literal["running", "finished", "interrupted"]

EXPERIMENT_KEY = "crewbus.experiment"
"""Task metadata naming the experiment an evaluation task runs for: dashboards and readers
tell evaluation traffic from production by it (and the crew does not remember it)."""
ITEM_KEY = "crewbus.item"
"""Task metadata: the dataset item's id (cut to 200 characters)."""
EPOCH_KEY = "crewbus.epoch"
"""Task metadata: the epoch, as decimal text."""

DATASET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""A dataset's or an experiment's name: it is part of KV keys and object names."""
ITEM_ID_MAX = 200


class ItemInput(Model):
    """What a dataset item submits: a task's text, and optionally its limits and metadata."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    limits: TaskLimits | None = None
    metadata: Annotated[dict[str, str], msgspec.Meta(max_length=32)] = {}
    """Becomes the task's metadata (as many entries as `SubmitTask` takes)."""

    def __post_init__(self) -> None:
        # A blank text is refused here, as `SubmitTask` refuses it, so a dataset never
        # holds an item the bus would refuse at run time.
        if not self.text.strip():
            raise ValueError("text must not be blank")


class DatasetItem(Model):
    """One example: `{id, input: {text, limits?, metadata?}, expected?, metadata?}`.

    `expected` is whatever the scorers compare against (a string, a number, a JSON value);
    `source_task_id` names the production task the item was taken from, so its trace opens.
    """

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=ITEM_ID_MAX)]
    input: ItemInput
    expected: Any = None
    metadata: dict[str, Any] = {}
    source_task_id: str | None = None


class DatasetVersion(Model):
    """One immutable version of a dataset: its items are the object `object_name`."""

    version: int
    created_at: float
    items: int
    digest: str
    """SHA-256 of the version's canonical JSONL, so two versions with equal items match."""
    object_name: str
    """`<name>/v<version>.<nonce>.jsonl` in `DATASETS_OBJECTS`: the nonce makes every
    write its own object, so two writers racing for the same version never overwrite
    each other's items (the loser deletes its object and tries the next version)."""
    note: str = ""


class DatasetInfo(Message, tag="dataset_info"):
    """A dataset's index entry: every version it has had, the newest last."""

    name: Annotated[str, msgspec.Meta(pattern=DATASET_NAME)]
    created_at: float
    description: str = ""
    versions: list[DatasetVersion] = []

    @property
    def latest(self) -> DatasetVersion:
        return self.versions[-1]


class EvalUsage(Model):
    """What one score's model calls cost (the `llm_judge`'s, every attempt included):
    tokens as the model reported them, USD by the price table the agents are charged by.
    `cost_usd` is None when a call's model has no price: unknown, never counted as zero."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    cost_usd: float | None = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Score(Model):
    """One scorer's judgement of one run item, as in OpenTelemetry's
    `gen_ai.evaluation.result`: name, value, label, explanation.

    `passed` is the verdict thresholds and pass rates count: for a boolean scorer the
    value itself, for a numeric one the scorer's own bar (when it has one). A scorer that
    could not score sets `error` and leaves `passed` False: it never counts as a pass.
    """

    name: str
    type: ScoreType
    scorer_version: str
    value: float | None = None
    label: str | None = None
    passed: bool | None = None
    explanation: str = ""
    error: str | None = None
    usage: EvalUsage | None = None
    """What scoring cost, for a scorer that calls a model (the judge); None for the rest."""


class JudgeVerdict(Model):
    """An LLM judge's structured reply (the `llm_judge` scorer): a score in 0..1, a short
    label and the reasoning behind it. A reply that does not validate is an evaluation
    error, never a pass."""

    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    reasoning: Annotated[str, msgspec.Meta(max_length=4000)]


class ScorerSpec(Model):
    """A scorer as an experiment uses it: its registered kind, its own name in the
    results (default the kind), and its parameters (a regex, a tolerance, a rubric file)."""

    kind: str
    name: str = ""
    params: dict[str, Any] = {}
    where: dict[str, str] = {}
    """Score only items whose `metadata` has these values (e.g. `{"kind": "arithmetic"}`);
    an item outside it is not scored by this scorer (and not counted), never failed."""

    @property
    def label(self) -> str:
        return self.name or self.kind


class Threshold(Model):
    """A CI gate: scorer `scorer`'s pass rate (boolean) or mean (numeric) must reach `min`."""

    scorer: str
    min: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class ExperimentConfig(Model):
    """Everything an experiment was run with, so it can be read back and reproduced."""

    dataset: str
    dataset_version: int
    scorers: list[ScorerSpec]
    epochs: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    thresholds: list[Threshold] = []
    target: Target = "crew"
    variant: str = "production"
    prompt_versions: dict[str, str] = {}
    """Role → the prompt version each role answered with (filled in as run items arrive)."""
    models: dict[str, str] = {}
    """Role → the model each role answered with (filled in as run items arrive)."""
    limits: TaskLimits | None = None
    """Limits for every item that names none."""
    metadata: dict[str, str] = {}


class ScorerSummary(Model):
    """One scorer over an experiment: pass rate with its 95% Wilson interval (boolean, and
    numeric scorers with a bar), mean with a 95% bootstrap interval (numeric), errors.

    Both are over `scored + errors + missing` items: an item the scorer could not judge,
    and an item that never ran, count as a fail and as a 0 (see `crewbus.evals.summary`)."""

    name: str
    type: ScoreType
    scored: int
    errors: int
    missing: int = 0
    """Expected items with no run item at all, counted against this scorer."""
    passed: int = 0
    pass_rate: float | None = None
    pass_rate_low: float | None = None
    pass_rate_high: float | None = None
    mean: float | None = None
    mean_low: float | None = None
    mean_high: float | None = None
    labels: dict[str, int] = {}


class ThresholdResult(Model):
    scorer: str
    min: float
    observed: float | None
    held: bool


class ExperimentSummary(Model):
    """What `crewbus eval show` prints on top, computed when the run ends."""

    items_expected: int
    items_done: int
    items_errored: int
    scorers: list[ScorerSummary] = []
    items_missing: int = 0
    """Expected (item, epoch) pairs with no run item."""
    items_duplicated: int = 0
    """Run items beyond the first for one (item, epoch): ignored, and the run fails."""
    cost_usd_total: float = 0.0
    cost_usd_per_item: float = 0.0
    """Over the items whose cost is known."""
    cost_unknown_items: int = 0
    """Items whose cost is unknown (a model without a price): not in the total."""
    tokens_total: int = 0
    eval_cost_usd_total: float = 0.0
    """What evaluating cost (the judge's calls), apart from the tasks' `cost_usd_total`:
    over the items whose evaluation cost is known."""
    eval_cost_unknown_items: int = 0
    """Items a judge scored with a model that has no price: not in `eval_cost_usd_total`."""
    eval_tokens_total: int = 0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    thresholds: list[ThresholdResult] = []
    bootstrap_seed: int | None = None
    """The seed of the mean intervals, so they can be recomputed exactly."""
    passed: bool = False
    """Every threshold held, and no item is missing, duplicated, errored or unscored."""


class Experiment(Message, tag="experiment"):
    """An experiment's header in `EXPERIMENTS_KV`; its run items are keys beside it."""

    name: Annotated[str, msgspec.Meta(pattern=DATASET_NAME)]
    config: ExperimentConfig
    created_at: float
    updated_at: float
    status: ExperimentStatus = "running"
    finished_at: float | None = None
    summary: ExperimentSummary | None = None


class ToolCallRecord(Model):
    """A tool call seen in a run item's trace, for trajectory scorers."""

    name: str
    ok: bool = True
    step_id: str = ""


class RunItem(Message, tag="run_item"):
    """One item's run in one epoch: the task that answered it, its answer, its scores."""

    experiment: str
    item_id: str
    status: RunItemStatus
    epoch: int = 0
    task_id: str = ""
    """The task (or, for a single-role target, the work item's task id): `crewbus trace`
    opens it."""
    trace_id: str = ""
    answer: str = ""
    output: Any = None
    """A single-role target's structured output (a Plan, a Critique...), else None."""
    scores: list[Score] = []
    cost_usd: float | None = 0.0
    tokens: int = 0
    """What the task cost (its agents' calls); the scoring is `eval_cost_usd`."""
    eval_cost_usd: float | None = 0.0
    """What scoring the item cost: the sum of its scores' `usage` (None: a judge call had
    no price). 0 for a run item stored before evaluation costs were recorded."""
    eval_tokens: int = 0
    latency_s: float | None = None
    rounds: int = 0
    critic_score: float | None = None
    tool_calls: list[ToolCallRecord] = []
    prompt_versions: dict[str, str] = {}
    models: dict[str, str] = {}
    error_code: str | None = None
    error_message: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0


class EvaluationScored(Message, tag="evaluation_scored"):
    """A run item's scores, published on `EVALS` once they are stored, for metrics."""

    experiment: str
    dataset: str
    item_id: str
    epoch: int = 0
    task_id: str = ""
    target: Target = "crew"
    role: AgentRole | None = None
    """The judged role: the target's, or for the crew the executor (it writes the answer)."""
    prompt_version: str = ""
    """The judged role's prompt version."""
    variant: str = "production"
    scores: list[Score] = []

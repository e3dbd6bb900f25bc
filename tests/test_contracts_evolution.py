"""Schema evolution of the contracts, message by message: every reader ignores fields it
doesn't know at every depth and fills in the defaults of fields it does; versions and
unknown types are still refused; the gateway's and the model's edges refuse unknown fields
with their paths; the exported JSON Schemas say which is which."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from crewbus.bus.codec import BadMessageError, decode, encode
from crewbus_agents.tools import ChatReply, ToolOutcome
from crewbus_agents.tools.chat import ToolCallRequest
from crewbus_contracts import (
    ApprovalDecision,
    ApprovalRequested,
    ApprovalResolved,
    ApprovalState,
    CancelTask,
    ControlAccepted,
    ControlCommand,
    Critique,
    CritiqueRequest,
    CritiqueResult,
    ErrorReply,
    MemoryDelete,
    MemoryDeleted,
    MemoryFilter,
    MemoryHit,
    MemoryHits,
    MemoryRecord,
    MemoryReply,
    MemoryRequest,
    MemorySearch,
    MemoryStats,
    MemoryStatsReply,
    MemoryUpsert,
    MemoryUpserted,
    Message,
    PastRound,
    Plan,
    PlanRequest,
    PlanResult,
    PlanStep,
    PromptIndex,
    PromptText,
    PromptVersionInfo,
    ResolveApproval,
    RoleOverride,
    RoundState,
    StepFinished,
    StepOutput,
    StepRequest,
    StepResult,
    StepStarted,
    StepState,
    SubmitTask,
    TaskAccepted,
    TaskCancelled,
    TaskCompleted,
    TaskCritiqued,
    TaskError,
    TaskEvent,
    TaskFailed,
    TaskLimits,
    TaskPlanned,
    TaskReplanned,
    TaskResult,
    TaskState,
    TaskSubmitted,
    TokenUsage,
    Variant,
    WorkReport,
    WorkRequest,
    WorkResult,
)
from crewbus_contracts.apikeys import ApiKey
from crewbus_contracts.base import Model
from crewbus_contracts.evals import (
    DatasetInfo,
    DatasetItem,
    DatasetVersion,
    EvaluationScored,
    Experiment,
    ExperimentConfig,
    ExperimentSummary,
    ItemInput,
    RunItem,
    Score,
    ScorerSpec,
    ScorerSummary,
    Threshold,
    ThresholdResult,
    ToolCallRecord,
)
from crewbus_contracts.evolution import closed_schema, struct_objects, unknown_fields
from crewbus_contracts.feedback import Feedback, FeedbackAccepted, TaskScore
from crewbus_contracts.replay import ReplayOptions
from crewbus_contracts.schema import CLOSED, EXPORTED, schema_of
from crewbus_contracts.shadow import ShadowConfig
from crewbus_contracts.traces import Span, SpanBatch
from crewbus_contracts.work import ApprovalRequest
from tests.versions import ADDED, CONTRACTS, add_fields, drop_fields

USAGE = TokenUsage(input_tokens=10, output_tokens=5, calls=1)
PLAN = Plan(
    steps=[
        PlanStep(id="r1", role="researcher", instruction="Look it up"),
        PlanStep(id="e1", role="executor", instruction="Write it", depends_on=["r1"]),
    ],
    rationale="research, then write",
)
CRITIQUE = Critique(score=0.8, verdict="accept", reasons=["clear"], suggestions=["shorter"])
REPORT = WorkReport(role="researcher", model="m", prompt_version="1", simulated_model=True,
                    usage=USAGE, duration_s=0.5, worker="w", attempt=1, cost_usd=0.001)
RESULT = TaskResult(answer="42", score=0.8, verdict="accept", accepted=True, rounds=1,
                    usage=USAGE, simulated_model=True)
DECISION = ApprovalDecision(approved=True, by="ann", reason="fine", at=2.0)
STATE = TaskState(
    task_id="t1", text="Do it", status="completed", limits=TaskLimits(max_cost_usd=1.0),
    created_at=1.0, updated_at=2.0, deadline_at=600.0, metadata={"team": "search"},
    rounds=[RoundState(
        number=1, planner=StepState(role="planner", status="done", usage=USAGE), plan=PLAN,
        steps={"r1": StepState(role="researcher", status="done", output="x", usage=USAGE),
               "e1": StepState(role="executor", status="done", output="y")},
        answer="42", critic=StepState(role="critic", status="done"), critique=CRITIQUE,
    )],
    result=RESULT, error=TaskError(code="c", message="m"), spent_usd=0.01, spent_tokens=15,
    approvals={"k1": ApprovalState(round=1, step_id="e1", tool="python", arguments="{}",
                                   requested_at=1.0, expires_at=9.0, decision=DECISION)},
    trace_id="0" * 32, variant="terse",
)
RECORD = MemoryRecord(text="a finding", kind="finding", task_id="t1", metadata={"k": "v"})
SCORE = Score(name="exact", type="boolean", scorer_version="1", value=1.0, passed=True,
              explanation="equal after normalising")
EVAL_CONFIG = ExperimentConfig(
    dataset="arith", dataset_version=2, scorers=[ScorerSpec(kind="regex", params={"p": "4"},
                                                            where={"kind": "math"})],
    thresholds=[Threshold(scorer="regex", min=0.8)], prompt_versions={"executor": "1"})
HIT = MemoryHit(id="m1", score=0.9, kind="finding", text="a finding", metadata={"k": "v"})

SAMPLES: list[tuple[Any, msgspec.Struct]] = [
    (SubmitTask, SubmitTask(text="Do it", idempotency_key="k", limits=TaskLimits(max_tokens=9),
                            metadata={"team": "search"}, variant="terse")),
    (SubmitTask, SubmitTask(text="Do it again", variant="candidate", replay=ReplayOptions(
        source_task_id="t0", live_tools=["calculator"], live_memory=True))),
    (TaskAccepted | ErrorReply, TaskAccepted(task_id="t1", duplicate=True)),
    (TaskAccepted | ErrorReply, ErrorReply(code="not_found", message="no task")),
    (WorkRequest, PlanRequest(task_id="t1", round=2, task_text="Do it", past_rounds=[
        PastRound(round=1, plan=PLAN, answer="41", critique=CRITIQUE)], variant="terse")),
    (WorkRequest, StepRequest(task_id="t1", round=1, task_text="Do it", step=PLAN.steps[1],
                              inputs={"r1": "found"}, approvals={"k1": DECISION},
                              variant="terse")),
    (WorkRequest, CritiqueRequest(task_id="t1", round=1, task_text="Do it", plan=PLAN,
                                  answer="42", variant="terse")),
    (WorkResult, PlanResult(task_id="t1", round=1, report=REPORT, plan=PLAN)),
    (WorkResult, StepResult(task_id="t1", round=1, step_id="e1", report=REPORT,
                            output=StepOutput(content="y", sources=["m1"]),
                            awaiting_approval=ApprovalRequest(call_key="k1", tool="python",
                                                              arguments="{}"))),
    (WorkResult, CritiqueResult(task_id="t1", round=1, report=REPORT, critique=CRITIQUE)),
    (TaskState, STATE),
    (TaskEvent, TaskSubmitted(task_id="t1", text="Do it", at=1.0)),
    (TaskEvent, TaskPlanned(task_id="t1", round=1, steps=PLAN.steps, at=1.0)),
    (TaskEvent, StepStarted(task_id="t1", round=1, step_id="r1", role="researcher",
                            worker="w", attempt=1, at=1.0)),
    (TaskEvent, StepFinished(task_id="t1", round=1, step_id="r1", role="researcher", ok=True,
                             duration_s=0.5, at=1.0)),
    (TaskEvent, TaskCritiqued(task_id="t1", round=1, critique=CRITIQUE, at=1.0)),
    (TaskEvent, TaskReplanned(task_id="t1", round=2, reason="low score", at=1.0)),
    (TaskEvent, ApprovalRequested(task_id="t1", round=1, step_id="e1", call_key="k1",
                                  tool="python", arguments="{}", expires_at=9.0, at=1.0)),
    (TaskEvent, ApprovalResolved(task_id="t1", call_key="k1", tool="python", approved=True,
                                 by="ann", reason="", at=1.0)),
    (TaskEvent, TaskCancelled(task_id="t1", by="ann", reason="stop", at=1.0)),
    (TaskEvent, TaskCompleted(task_id="t1", result=RESULT, at=1.0)),
    (TaskEvent, TaskFailed(task_id="t1", error=TaskError(code="c", message="m"), at=1.0)),
    (ControlCommand, CancelTask(task_id="t1", by="ann", reason="stop")),
    (ControlCommand, ResolveApproval(task_id="t1", approved=False, by="ann", call_key="k1")),
    (ControlAccepted, ControlAccepted(task_id="t1", status="cancelled", detail="d")),
    (MemoryRequest, MemoryUpsert(records=[RECORD])),
    (MemoryRequest, MemorySearch(query="q", filter=MemoryFilter(kind="finding"), k=3)),
    (MemoryRequest, MemoryDelete(filter=MemoryFilter(task_id="t1"))),
    (MemoryRequest, MemoryStats()),
    (MemoryReply, MemoryUpserted(ids=["m1"], duplicates={"m2": "m1"})),
    (MemoryReply, MemoryHits(hits=[HIT])),
    (MemoryReply, MemoryDeleted(deleted=2)),
    (MemoryReply, MemoryStatsReply(counts={"finding": 1}, total=1, backend="edge",
                                   embedder="hashed", dimension=384, collection="c")),
    (Span, Span(trace_id="0" * 32, span_id="1" * 16, name="chat m", kind="chat",
                task_id="t1", service="executor", start=1.0, end=2.0,
                attributes={"gen_ai.request.model": "m"}, input={"messages": []})),
    (SpanBatch, SpanBatch(spans=[Span(trace_id="0" * 32, span_id="2" * 16, name="task t1",
                                      kind="task", task_id="t1", service="orchestrator",
                                      start=1.0, end=3.0)])),
    (DatasetItem, DatasetItem(id="i1", input=ItemInput(text="2+2", limits=TaskLimits()),
                              expected={"n": 4}, metadata={"kind": "math"})),
    (DatasetInfo, DatasetInfo(name="arith", created_at=1.0, versions=[DatasetVersion(
        version=1, created_at=1.0, items=3, digest="d", object_name="arith/v1.jsonl")])),
    (Experiment, Experiment(name="e1", config=EVAL_CONFIG, created_at=1.0, updated_at=2.0,
                            summary=ExperimentSummary(
                                items_expected=3, items_done=3, items_errored=0,
                                scorers=[ScorerSummary(name="regex", type="boolean",
                                                       scored=3, errors=0, passed=3)],
                                thresholds=[ThresholdResult(scorer="regex", min=0.8,
                                                            observed=1.0, held=True)]))),
    (RunItem, RunItem(experiment="e1", item_id="i1", status="completed", task_id="t1",
                      answer="4", scores=[SCORE], tool_calls=[ToolCallRecord(name="calc")])),
    (EvaluationScored, EvaluationScored(experiment="e1", dataset="arith", item_id="i1",
                                        role="executor", scores=[SCORE])),
    (PromptIndex, PromptIndex(role="critic", versions=[PromptVersionInfo(
        number=1, sha256="a" * 64, name="critic-v2", created_at=1.0, source="packaged")],
        labels={"production": 1})),
    (PromptText, PromptText(role="critic", number=1, name="critic-v2", sha256="a" * 64,
                            text="You are the critic.")),
    (Variant, Variant(name="terse", roles={"critic": RoleOverride(
        prompt="candidate", model="gpt-4o-mini", endpoint="azure", temperature=0.2,
        max_tool_calls=4)}, created_at=1.0, updated_at=2.0, description="d")),
    (ToolOutcome, ToolOutcome(tool="python", output="4", duration_s=0.1)),
    (ToolOutcome, ToolOutcome(tool="write_file", status="denied", error="not in replay",
                              error_type="replay_side_effect", replay_match="miss")),
    (Feedback, Feedback(task_id="t1", score=0.2, label="bad", comment="wrong unit")),
    (FeedbackAccepted, FeedbackAccepted(task_id="t1", key="k1")),
    (TaskScore, TaskScore(task_id="t1", score=SCORE, evaluator="judge", at=1.0)),
    (ShadowConfig, ShadowConfig(name="cand", variant="candidate", sample_rate=0.1,
                                started_at=1.0, metadata_filter={"team": "search"},
                                budget_usd=2.0, scorers=[ScorerSpec(kind="critic")])),
    (ApiKey, ApiKey(key_id="0" * 16, name="ci", scopes=["read"], secret_sha256="ab",
                    created_at=1.0, rate_per_minute=60)),
    (ChatReply, ChatReply(content=None, usage=USAGE, tool_calls=[
        ToolCallRequest(id="c1", name="python", arguments="{}")])),
]
IDS = [type(sample).__name__ for _, sample in SAMPLES]


def as_json(value: msgspec.Struct) -> Any:
    return msgspec.json.decode(encode(value))


def test_every_message_type_has_a_sample() -> None:
    """A new message type must be added here too, so its evolution is tested."""
    sampled = {type(s).__struct_config__.tag for _, s in SAMPLES if isinstance(s, Message)}
    assert sampled == set(CONTRACTS)


def test_no_contract_forbids_unknown_fields() -> None:
    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    strict = [c.__name__ for c in subclasses(Message) + subclasses(Model)
              if c.__struct_config__.forbid_unknown_fields]
    assert strict == []


@pytest.mark.parametrize(("tp", "sample"), SAMPLES, ids=IDS)
def test_unknown_fields_at_every_depth_are_ignored(tp: Any, sample: msgspec.Struct) -> None:
    value = as_json(sample)
    touched = add_fields(value, tp)
    assert touched and "$" in touched
    decoded = decode(msgspec.json.encode(value), msgspec.json.Decoder(tp))
    assert decoded == sample
    assert sorted(unknown_fields(value, tp)) == sorted(f"{p}.added_in_v1_1" for p in touched)


def test_the_rewrite_reaches_the_deepest_objects() -> None:
    """The parametrized test above is only as good as `add_fields`: it must reach objects
    inside lists, dicts, unions and optional fields."""
    value = as_json(STATE)
    touched = set(add_fields(value, TaskState))
    assert {
        "$.limits", "$.rounds[0].planner.usage", "$.rounds[0].plan.steps[1]",
        "$.rounds[0].steps['r1'].usage", "$.rounds[0].critique", "$.result.usage",
        "$.error", "$.approvals['k1'].decision",
    } <= touched
    assert value["metadata"] == {"team": "search"}  # a dict of values is not an object


@pytest.mark.parametrize(("tp", "sample"), SAMPLES, ids=IDS)
def test_a_message_without_the_fields_added_since_the_first_release_gets_defaults(
    tp: Any, sample: msgspec.Struct
) -> None:
    value = as_json(sample)
    dropped = drop_fields(value, tp)
    decoded = decode(msgspec.json.encode(value), msgspec.json.Decoder(tp))
    defaults = {
        f.name: f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        for f in msgspec.structs.fields(type(sample))
        if f.required is False
    }
    for path in dropped:
        first, *rest = path[2:].split(".")
        if not rest:
            assert getattr(decoded, first) == defaults[first], path
        else:
            nested = getattr(decoded, first)
            nested_defaults = {f.name: f.default for f in msgspec.structs.fields(type(nested))}
            assert getattr(nested, rest[0]) == nested_defaults[rest[0]], path


def test_a_new_schema_version_is_still_refused_with_or_without_new_fields() -> None:
    value = as_json(CancelTask(task_id="t1", by="ann"))
    add_fields(value, ControlCommand)
    value["schema_version"] = 2
    with pytest.raises(BadMessageError) as caught:
        decode(msgspec.json.encode(value), msgspec.json.Decoder(ControlCommand))
    assert caught.value.reply.code == "unsupported_schema_version"


def test_an_unknown_type_is_refused_saying_what_this_service_accepts() -> None:
    value = as_json(PlanRequest(task_id="t1", round=1, task_text="Do it"))
    value["type"] = "plan_request_with_budget"
    with pytest.raises(BadMessageError) as caught:
        decode(msgspec.json.encode(value), msgspec.json.Decoder(WorkRequest))
    error = caught.value
    assert error.reply.code == "invalid_message"
    assert error.reason == "unknown_type"
    assert "'plan_request_with_budget' at `$.type`" in error.reply.message
    assert "plan_request, step_request, critique_request" in error.reply.message
    assert "newer service" in error.reply.message


def test_a_closed_edge_names_every_unknown_field_by_its_path() -> None:
    payload = (b'{"type": "submit_task", "text": "hi", "colour": "red",'
               b' "limits": {"max_round": 2, "max_cost_usd": 1}}')
    decoder = msgspec.json.Decoder(SubmitTask)
    assert decode(payload, decoder).limits.max_cost_usd == 1  # the bus reads it
    with pytest.raises(BadMessageError) as caught:
        decode(payload, decoder, refuse_unknown=True)
    error = caught.value
    assert error.reply.code == "invalid_message"
    assert error.reason == "unknown_field"
    assert "`$.colour`, `$.limits.max_round`" in error.reply.message
    assert "refuses fields it does not know" in error.reply.message


def test_submit_task_schema_is_closed_and_every_other_schema_is_open() -> None:
    def objects(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, list):
            return [o for item in node for o in objects(item)]
        if not isinstance(node, dict):
            return []
        inner = [o for item in node.values() for o in objects(item)]
        return ([node] if "properties" in node else []) + inner

    assert {"submit_task"} == CLOSED
    for name in EXPORTED:
        structs = objects(schema_of(name))
        assert structs, name
        closed = [o.get("additionalProperties") is False for o in structs]
        assert all(closed) if name in CLOSED else not any(closed), name


def test_closed_schema_leaves_dicts_of_values_alone() -> None:
    schema = closed_schema(msgspec.json.schema(SubmitTask))
    metadata = schema["$defs"]["SubmitTask"]["properties"]["metadata"]
    assert metadata["additionalProperties"] == {"type": "string"}


def test_struct_objects_follow_tagged_unions_by_their_tag() -> None:
    value = as_json(StepResult(task_id="t1", round=1, step_id="e1", report=REPORT))
    paths = [path for path, _, _ in struct_objects(value, WorkResult)]
    assert paths == ["$", "$.report", "$.report.usage"]
    assert ADDED not in value.values()

"""`/v1/tasks`: submit, read, list, cancel, approve, trace, and the resumable event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

import msgspec
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.sse import EventSourceResponse

from crewbus.bus.codec import BadMessageError, decode
from crewbus.httpapi import openapi, responses
from crewbus.httpapi.auth import Caller, require
from crewbus.httpapi.bus import Bus
from crewbus.httpapi.events import Heartbeat, stored_events, terminal_seq
from crewbus.httpapi.problems import ProblemError, path_in
from crewbus.httpapi.schemas import (
    Approval,
    ApprovalList,
    CancelBody,
    Decision,
    SpanNode,
    TaskList,
    TaskSummary,
    TraceTree,
)
from crewbus.telemetry import metrics
from crewbus.tracing.reader import TraceNode, build_tree
from crewbus_contracts import (
    CancelTask,
    ControlAccepted,
    ControlCommand,
    ResolveApproval,
    SubmitTask,
    TaskAccepted,
    TaskState,
    TaskStatus,
    subjects,
)

B = TypeVar("B", bound=msgspec.Struct)
router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=openapi.PROBLEMS)
_submit_decoder = msgspec.json.Decoder(SubmitTask)

TaskId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The task's id")]


def bus_of(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


async def existing_state(request: Request, task_id: TaskId) -> TaskState:
    state = await bus_of(request).state(task_id)
    if state is None:
        raise ProblemError("not_found", f"no task {task_id}")
    return state


@router.post(
    "", status_code=201, summary="Submit a task",
    openapi_extra=openapi.body(SubmitTask, "A SubmitTask, as on `crewbus.submit`; unknown "
                               "fields are refused with their path"),
    responses={201: openapi.json_response(TaskAccepted, "Accepted: a new task"),
               200: openapi.json_response(TaskAccepted, "The idempotency key named an "
                                          "existing task")},
)
async def submit(
    request: Request,
    caller: Annotated[Caller, Depends(require("submit"))],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    task = await decode_submission(request, await request.body())
    if idempotency_key:
        task = msgspec.structs.replace(task, idempotency_key=idempotency_key)
    accepted = await submit_task(bus_of(request), task)
    return responses.json(accepted, 200 if accepted.duplicate else 201,
                          {"Location": f"/v1/tasks/{accepted.task_id}"})


async def decode_submission(request: Request, data: bytes) -> SubmitTask:
    """The body, decoded by the bus's codec with the submit gateway's rules."""
    try:
        return decode(data, _submit_decoder, max_bytes=request.app.state.max_body_bytes,
                      refuse_unknown=True)
    except BadMessageError as exc:
        metrics.record_bad_input(exc.reason, subjects.SUBMIT)
        raise ProblemError.from_reply(exc.reply) from None


async def submit_task(bus: Bus, task: SubmitTask) -> TaskAccepted:
    from crewbus.client import SubmissionRefusedError

    bus.require_connection()
    try:
        return await bus.client.submit(task)
    except SubmissionRefusedError as exc:
        raise ProblemError.from_reply(exc.reply) from None


@router.get("", summary="Recent tasks, newest first",
            responses={200: openapi.json_response(TaskList, "Task summaries")})
async def list_tasks(
    request: Request,
    caller: Annotated[Caller, Depends(require("read"))],
    status: TaskStatus | None = None,
    since: Annotated[float | None, Query(description="Epoch seconds (default: a day ago; "
                                         "unfinished statuses: any age)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    states = await bus_of(request).recent(since, limit, status)
    return responses.json(TaskList(tasks=[TaskSummary.of(s) for s in states]))


@router.get("/{task_id}", summary="A task's stored state",
            responses={200: openapi.json_response(TaskState, "The state kept in KV")})
async def get_task(
    caller: Annotated[Caller, Depends(require("read"))],
    state: Annotated[TaskState, Depends(existing_state)],
) -> Response:
    return responses.json(state)


@router.post("/{task_id}/cancel", summary="Cancel a task",
             responses={200: openapi.json_response(ControlAccepted, "Cancelled")},
             openapi_extra=openapi.body(CancelBody, "Optional: why"))
async def cancel(
    request: Request, task_id: TaskId,
    caller: Annotated[Caller, Depends(require("submit"))],
) -> Response:
    raw = await request.body()
    reason = _body(raw or b"{}", CancelBody).reason
    accepted = await send_command(bus_of(request), CancelTask(task_id=task_id,
                                                              by=caller.name, reason=reason))
    return responses.json(accepted)


@router.get("/{task_id}/approvals", summary="The task's tool calls waiting for a person",
            responses={200: openapi.json_response(ApprovalList, "Pending and resolved")})
async def approvals(
    caller: Annotated[Caller, Depends(require("read"))],
    state: Annotated[TaskState, Depends(existing_state)],
) -> Response:
    return responses.json(approval_list(state))


def approval_list(state: TaskState) -> ApprovalList:
    return ApprovalList(task_id=state.task_id, status=state.status, approvals=[
        Approval(call_key=key, tool=a.tool, arguments=a.arguments, round=a.round,
                 step_id=a.step_id, requested_at=a.requested_at, expires_at=a.expires_at,
                 decision=a.decision)
        for key, a in sorted(state.approvals.items(), key=lambda kv: kv[1].requested_at)])


@router.post("/{task_id}/approvals/{call_key}", summary="Approve or deny a paused tool call",
             responses={200: openapi.json_response(ControlAccepted, "Resolved")},
             openapi_extra=openapi.body(Decision, "approved, and a reason (shown to the model "
                                        "on a denial)"))
async def resolve(
    request: Request, task_id: TaskId, call_key: str,
    caller: Annotated[Caller, Depends(require("approve"))],
) -> Response:
    decision = _body(await request.body(), Decision)
    command = ResolveApproval(task_id=task_id, approved=decision.approved, by=caller.name,
                              reason=decision.reason, call_key=call_key)
    return responses.json(await send_command(bus_of(request), command))


async def send_command(bus: Bus, command: ControlCommand) -> ControlAccepted:
    from crewbus.client import CommandRefusedError

    bus.require_connection()
    try:
        return await bus.client.control(command)
    except CommandRefusedError as exc:
        raise ProblemError.from_reply(exc.reply) from None


@router.get("/{task_id}/trace", summary="The task's spans as a tree",
            responses={200: openapi.json_response(TraceTree, "Every stored span, nested")})
async def trace(
    request: Request, task_id: TaskId,
    caller: Annotated[Caller, Depends(require("read"))],
) -> Response:
    bus = bus_of(request)
    spans = await bus.trace(task_id)
    if not spans and not await bus.exists(task_id):
        raise ProblemError("not_found", f"no task {task_id}")
    return responses.json(TraceTree(task_id=task_id, spans=len(spans),
                                    roots=[_node(n) for n in build_tree(spans)]))


def _node(node: TraceNode) -> SpanNode:
    return SpanNode(span=node.span, children=[_node(c) for c in node.children])


@router.get(
    "/{task_id}/events", summary="The task's events (SSE), resumable with Last-Event-ID",
    responses={200: {"description": "`id` is the event's stream sequence, `event` its type, "
                     "`data` the event's JSON; comments are heartbeats. Ends after the "
                     "terminal event.",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}},
               204: {"description": "Resumed after the terminal event: nothing more will "
                     "come (an EventSource stops reconnecting)"}},
)
async def events(
    request: Request, task_id: TaskId,
    caller: Annotated[Caller, Depends(require("read"))],
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    after = await resume_point(request, task_id, last_event_id)
    if after == NOTHING_MORE:
        return Response(status_code=204)
    return EventSourceResponse(event_frames(request, task_id, after),
                               headers=responses.SSE_HEADERS)


NOTHING_MORE = -1


async def resume_point(request: Request, task_id: str, last_event_id: str | None) -> int | None:
    """The sequence to continue after (None: from the start), NOTHING_MORE when the client
    already has the terminal event; 404 for a task the bus does not know."""
    bus = bus_of(request)
    after: int | None = None
    if last_event_id:
        try:
            after = int(last_event_id)
        except ValueError:
            raise ProblemError("invalid_request", "Last-Event-ID must be the `id` of an "
                               "event this stream sent (a stream sequence number)") from None
        if after < 0:
            raise ProblemError("invalid_request", "Last-Event-ID must not be negative")
    if not await bus.exists(task_id):
        raise ProblemError("not_found", f"no task {task_id}")
    if after is not None:
        final = await terminal_seq(bus.js, task_id)
        if final is not None and final <= after:
            return NOTHING_MORE
    return after


async def event_frames(request: Request, task_id: str, after: int | None) -> AsyncIterator[bytes]:
    bus = bus_of(request)
    yield responses.sse_comment("crewbus task events; reconnect with Last-Event-ID to resume")
    with metrics.sse_stream_open():
        async for item in stored_events(bus.js, task_id, after, request.app.state.heartbeat_s):
            if isinstance(item, Heartbeat):
                yield responses.sse_comment("heartbeat")
                continue
            yield responses.sse(item.data, event=item.kind, id=item.seq)


def _body(raw: bytes, tp: type[B]) -> B:
    """A small JSON body, refused as problem+json naming the bad field."""
    try:
        return msgspec.json.decode(raw, type=tp)
    except msgspec.ValidationError as exc:
        raise ProblemError("invalid_message", str(exc), path=path_in(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise ProblemError("malformed_json", f"malformed JSON: {exc}") from None

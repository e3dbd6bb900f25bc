"""The web UI under `/ui/`: server-rendered pages, htmx for the live timeline (SSE).

Pages work without JavaScript (plain forms, redirect after post); htmx only fills a task's
timeline live from `/ui/tasks/{id}/timeline`, which sends each event as an HTML fragment
with the same `id` (stream sequence) as the API's stream. Auth is the API's: the login
page stores the key in an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import jinja2
import msgspec
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.sse import EventSourceResponse

from crewbus import render
from crewbus.bus.codec import BadMessageError
from crewbus.httpapi import responses
from crewbus.httpapi.auth import COOKIE, Caller, require_ui
from crewbus.httpapi.bus import Bus
from crewbus.httpapi.events import Heartbeat, StoredEvent, stored_events
from crewbus.httpapi.problems import ProblemError
from crewbus.httpapi.tasks import approval_list, send_command, submit_task
from crewbus.tracing.reader import build_tree
from crewbus_contracts import (
    CancelTask,
    ResolveApproval,
    SubmitTask,
    TaskEvent,
    TaskState,
)

router = APIRouter(include_in_schema=False)
STATE_PATIENCE_S = 10.0
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True)
_event_decoder: msgspec.json.Decoder[TaskEvent] = msgspec.json.Decoder(TaskEvent)

STATUS_AFTER = {"task_planned": "running", "approval_requested": "awaiting_approval",
                "approval_resolved": "running", "task_critiqued": "critiquing",
                "task_completed": "completed", "task_failed": "failed",
                "task_cancelled": "cancelled"}
"""The status a task shows once an event arrives (the page updates its badge live)."""


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


_env.filters["when"] = _when
_env.filters["pretty"] = _pretty
_env.globals["line"] = render.event_line


def page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(request=request, path=request.url.path, **context)
    return HTMLResponse(html, status_code=code)


def fragment(name: str, **context: Any) -> str:
    return _env.get_template(name).render(**context)


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def problem_page(request: Request, exc: ProblemError) -> Response | None:
    """A UI page's refusal: to the login page without a valid key, else an error page."""
    if exc.status == 401:
        target = urllib.parse.quote(request.url.path)
        return RedirectResponse(f"/ui/login?next={target}", status_code=303)
    if request.url.path.endswith("/timeline"):
        return None
    return page(request, "error.html", code=exc.status, problem=exc)


def bus_of(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form body (the only kind these pages send)."""
    raw = (await request.body()).decode()
    return {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}


async def state_or_404(request: Request, task_id: str) -> TaskState:
    """The task's state; a task just accepted gets a moment for the orchestrator to store
    it (the submit form redirects here at once)."""
    bus = bus_of(request)
    state = await bus.state(task_id)
    if state is None and await bus.exists(task_id):
        with anyio.move_on_after(STATE_PATIENCE_S):
            while (state := await bus.state(task_id)) is None:
                await anyio.sleep(0.05)
    if state is None:
        raise ProblemError("not_found", f"no task {task_id}")
    return state


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/login")
async def login_page(request: Request, next: str = "/ui/") -> Response:
    closed = await request.app.state.gate.closed()
    return page(request, "login.html", closed=closed, next=_local(next), error=None)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    fields = await form(request)
    key, target = fields.get("key", "").strip(), _local(fields.get("next", "/ui/"))
    if await request.app.state.gate.store.verify(key) is None:
        return page(request, "login.html", code=401, closed=True, next=target,
                    error="That key is not valid (revoked, or never issued).")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/ui/logout")
async def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _local(target: str) -> str:
    """Only paths of this site: a login never redirects elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/ui/"


@router.get("/ui/")
async def task_list(request: Request, caller: Annotated[Caller, Depends(require_ui("read"))],
                    status: str | None = None) -> Response:
    states = await bus_of(request).recent(None, 100, status or None)
    return page(request, "tasks.html", caller=caller, tasks=states, status=status or "")


@router.post("/ui/submit")
async def submit(request: Request,
                 caller: Annotated[Caller, Depends(require_ui("submit"))]) -> Response:
    fields = await form(request)
    try:
        task = SubmitTask(text=fields.get("text", ""))
    except (ValueError, msgspec.ValidationError) as exc:
        raise ProblemError("invalid_message", f"the task's text: {exc}") from None
    except BadMessageError as exc:  # pragma: no cover - the Struct raises the above
        raise ProblemError.from_reply(exc.reply) from None
    accepted = await submit_task(bus_of(request), task)
    return RedirectResponse(f"/ui/tasks/{accepted.task_id}", status_code=303)


@router.get("/ui/tasks/{task_id}")
async def task_page(request: Request, task_id: str,
                    caller: Annotated[Caller, Depends(require_ui("read"))]) -> Response:
    state = await state_or_404(request, task_id)
    stored: list[tuple[StoredEvent, TaskEvent]] = []
    if state.is_final:  # the whole timeline is known: render it, no stream to open
        async for item in stored_events(bus_of(request).js, task_id, None, 2.0):
            if isinstance(item, Heartbeat):
                break
            event = _decoded(item)
            if event is not None:
                stored.append((item, event))
    return page(request, "task.html", caller=caller, state=state, stored=stored,
                pending=approval_list(state).approvals)


@router.get("/ui/tasks/{task_id}/timeline")
async def timeline(request: Request, task_id: str,
                   caller: Annotated[Caller, Depends(require_ui("read"))]) -> Response:
    after = request.headers.get("last-event-id")
    start = int(after) if after and after.isdigit() else None
    if not await bus_of(request).exists(task_id):
        raise ProblemError("not_found", f"no task {task_id}")
    return EventSourceResponse(_timeline_frames(request, task_id, start),
                               headers=responses.SSE_HEADERS)


async def _timeline_frames(request: Request, task_id: str,
                           after: int | None) -> AsyncIterator[bytes]:
    async for item in stored_events(bus_of(request).js, task_id, after,
                                    request.app.state.heartbeat_s):
        if isinstance(item, Heartbeat):
            yield responses.sse_comment("heartbeat")
            continue
        event = _decoded(item)
        if event is None:
            continue
        html = fragment("event.html", item=item, event=event, live=True,
                        status=STATUS_AFTER.get(item.kind))
        yield responses.sse(html, id=item.seq)
        if item.terminal:
            yield responses.sse("", event="end", id=item.seq)


def _decoded(item: StoredEvent) -> TaskEvent | None:
    try:
        return _event_decoder.decode(item.data)
    except msgspec.ValidationError:
        return None


@router.post("/ui/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: str,
                 caller: Annotated[Caller, Depends(require_ui("submit"))]) -> Response:
    fields = await form(request)
    await send_command(bus_of(request), CancelTask(task_id=task_id, by=caller.name,
                                                   reason=fields.get("reason", "")))
    return RedirectResponse(f"/ui/tasks/{task_id}", status_code=303)


@router.get("/ui/approvals")
async def inbox(request: Request,
                caller: Annotated[Caller, Depends(require_ui("read"))]) -> Response:
    waiting = await bus_of(request).recent(None, 500, "awaiting_approval")
    return page(request, "approvals.html", caller=caller,
                waiting=[(s, [a for a in approval_list(s).approvals if a.decision is None])
                         for s in waiting])


@router.post("/ui/tasks/{task_id}/approvals/{call_key}")
async def resolve(request: Request, task_id: str, call_key: str,
                  caller: Annotated[Caller, Depends(require_ui("approve"))]) -> Response:
    fields = await form(request)
    command = ResolveApproval(task_id=task_id, approved=fields.get("decision") == "approve",
                              by=caller.name, reason=fields.get("reason", ""),
                              call_key=call_key)
    await send_command(bus_of(request), command)
    return RedirectResponse(_local(fields.get("next", f"/ui/tasks/{task_id}")),
                            status_code=303)


@router.get("/ui/tasks/{task_id}/trace")
async def trace(request: Request, task_id: str,
                caller: Annotated[Caller, Depends(require_ui("read"))]) -> Response:
    state = await state_or_404(request, task_id)
    spans = await bus_of(request).trace(task_id)
    return page(request, "trace.html", caller=caller, state=state, roots=build_tree(spans),
                count=len(spans))

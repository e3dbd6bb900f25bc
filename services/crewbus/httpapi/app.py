"""The FastAPI application: routers, problem+json for every error, request metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crewbus.httpapi import (
    chat,
    datasets,
    experiments,
    openapi,
    ops,
    tasks,
    ui,
    ui_experiments,
)
from crewbus.httpapi.auth import Gate
from crewbus.httpapi.bus import Bus
from crewbus.httpapi.problems import MEDIA_TYPE, ProblemError
from crewbus.httpapi.settings import HttpSettings
from crewbus.telemetry import metrics

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
_problem_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class GatewayConfig:
    """What the app needs besides the bus: its settings and the body size limit."""

    http: HttpSettings
    max_body_bytes: int
    bound_publicly: bool = False


def create_app(bus: Bus, config: GatewayConfig) -> FastAPI:
    app = FastAPI(
        title="crewbus", version="1",
        description="Tasks, their live events, approvals and traces over HTTP, and an "
        "OpenAI-compatible front door. A client of the crewbus bus: every answer is read "
        "from it.",
        docs_url="/docs", redoc_url=None,
    )
    app.state.bus = bus
    app.state.gate = Gate(bus.keys, config.http.rate_per_minute,
                          always_closed=config.bound_publicly,
                          connected=lambda: bus.nc.is_connected)
    app.state.max_body_bytes = config.max_body_bytes
    app.state.heartbeat_s = config.http.sse_heartbeat_s
    app.state.chat_timeout_s = config.http.chat_timeout_s
    for router in (tasks.router, chat.router, datasets.router, experiments.router,
                   ops.router, ui.router, ui_experiments.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _install_error_handlers(app)
    openapi.install(app)
    app.add_middleware(RequestMetrics)
    return app


def _problem(request: Request, exc: ProblemError) -> Response:
    path = request.url.path
    is_openai = isinstance(exc, chat.OpenAIError) or path.startswith(("/v1/chat", "/v1/models"))
    if path.startswith("/ui") or (exc.status == 401 and ui.wants_html(request)):
        redirect = ui.problem_page(request, exc)
        if redirect is not None:
            return redirect
    body = _problem_encoder.encode(exc.problem(instance=path, openai=is_openai))
    return Response(body, status_code=exc.status, media_type=MEDIA_TYPE, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return _problem(request, exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                  "invalid_request")
        detail = {404: f"no route {request.url.path}",
                  405: f"{request.method} is not allowed on {request.url.path}"}
        return _problem(request, ProblemError(code, detail.get(exc.status_code,
                                                               str(exc.detail)),
                                              status=exc.status_code))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _problem(request, ProblemError(
            "invalid_request", f"{where}: {first.get('msg', 'invalid')}",
            path=f"${where}" if where else None))

    async def on_bus_down(request: Request, exc: Exception) -> Response:
        return _problem(request, ProblemError(
            "unavailable", f"the bus did not answer ({type(exc).__name__}): is crewbus "
            "running?", headers={"Retry-After": "1"}))

    async def on_anything(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return _problem(request, ProblemError("internal_error",
                                              f"the gateway failed: {type(exc).__name__}"))

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    for bus_error in (NoRespondersError, NatsTimeoutError, ConnectionClosedError, TimeoutError):
        app.add_exception_handler(bus_error, on_bus_down)
    app.add_exception_handler(Exception, on_anything)


class RequestMetrics:
    """Counts every response by route template (a pure ASGI middleware: no buffering of
    streams, and no task per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                metrics.record_http_request(template, scope["method"], status,
                                            time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, sending)

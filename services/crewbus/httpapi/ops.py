"""Probes and metrics: `/healthz` (the process answers), `/readyz` (NATS and the streams
are there), `/metrics` (Prometheus, scope `read` once keys exist)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from crewbus.httpapi import openapi, responses
from crewbus.httpapi.auth import Caller, require
from crewbus.httpapi.bus import Bus
from crewbus.httpapi.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The gateway process answers",
            responses={200: openapi.json_response(Health, "Alive")})
async def healthz() -> Response:
    return responses.json(Health(status="ok"))


@router.get("/readyz", summary="NATS is reachable and the streams exist",
            responses={200: openapi.json_response(Health, "Ready"),
                       503: openapi.json_response(Health, "Not ready, and why")})
async def readyz(request: Request) -> Response:
    bus: Bus = request.app.state.bus
    problem = await bus.ready()
    if problem:
        return responses.json(Health(status="unavailable", detail=problem), 503)
    return responses.json(Health(status="ok"))


@router.get("/metrics", summary="Prometheus metrics of this gateway process",
            responses={200: {"description": "Prometheus text format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **openapi.PROBLEMS})
async def prometheus(caller: Annotated[Caller, Depends(require("read"))]) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

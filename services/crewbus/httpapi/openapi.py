"""OpenAPI from the contracts: routes name msgspec types, whose JSON Schemas msgspec writes.

FastAPI documents what it validates itself (paths, query parameters); bodies are decoded
by the bus's own codec (the same errors, with the same paths, as on NATS), so their
schemas come from msgspec and are merged into the document's components.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from crewbus.httpapi.problems import MEDIA_TYPE, Problem

REF = "#/components/schemas/{name}"
_registered: set[Any] = {Problem}


def ref(tp: Any) -> dict[str, str]:
    """A `$ref` to `tp`'s schema, recording `tp` for the components."""
    _registered.add(tp)
    return {"$ref": REF.format(name=tp.__name__)}


def body(tp: Any, description: str = "") -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON request body of type `tp`."""
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": ref(tp)}}}}


def json_response(tp: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(tp)}}}


PROBLEMS: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "Refused: RFC 9457 problem details with the bus's error code",
            "content": {MEDIA_TYPE: {"schema": {"$ref": REF.format(name="Problem")}}}},
    "5XX": {"description": "The bus did not answer, or the task failed",
            "content": {MEDIA_TYPE: {"schema": {"$ref": REF.format(name="Problem")}}}},
}


def install(app: FastAPI) -> None:
    """Serve an `/openapi.json` whose components include every registered type."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            _, components = msgspec.json.schema_components(
                sorted(_registered, key=lambda t: t.__name__), ref_template=REF)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

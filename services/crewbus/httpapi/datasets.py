"""`/v1/datasets`: the evaluation datasets kept on the bus, read only (the CLI writes them).
Experiments are read in `crewbus.httpapi.experiments`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Path, Request, Response

from crewbus.evals.datasets import DatasetError, DatasetStore
from crewbus.httpapi import openapi, responses
from crewbus.httpapi.auth import Caller, require
from crewbus.httpapi.problems import ProblemError
from crewbus_contracts.evals import DATASET_NAME, DatasetInfo, DatasetItem

router = APIRouter(prefix="/v1/datasets", tags=["evaluations"], responses=openapi.PROBLEMS)
Name = Annotated[str, Path(pattern=DATASET_NAME)]


class DatasetList(msgspec.Struct, kw_only=True):
    datasets: list[DatasetInfo]


class DatasetItems(msgspec.Struct, kw_only=True):
    name: str
    version: int
    items: list[DatasetItem]


def store_of(request: Request) -> DatasetStore:
    return DatasetStore(request.app.state.bus.js)


@router.get("", summary="Every dataset with its versions",
            responses={200: openapi.json_response(DatasetList, "The datasets")})
async def list_datasets(request: Request,
                        caller: Annotated[Caller, Depends(require("read"))]) -> Response:
    return responses.json(DatasetList(datasets=await store_of(request).list()))


@router.get("/{name}", summary="One dataset's items (its newest version, or ?version=N)",
            responses={200: openapi.json_response(DatasetItems, "The items")})
async def dataset_items(request: Request, name: Name,
                        caller: Annotated[Caller, Depends(require("read"))],
                        version: int | None = None) -> Response:
    store = store_of(request)
    info = await store.get(name)
    if info is None:
        raise ProblemError("not_found", f"no dataset {name}")
    try:
        chosen, items = await store.items(name, version)
    except DatasetError as exc:
        raise ProblemError("not_found", str(exc)) from None
    return responses.json(DatasetItems(name=name, version=chosen.version, items=list(items)))

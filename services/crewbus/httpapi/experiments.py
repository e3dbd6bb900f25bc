"""`/v1/experiments`: evaluation experiments and their paired comparisons, read only (the
CLI runs them). The comparison is exactly `crewbus eval compare --json`'s document."""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from nats.js.errors import BucketNotFoundError, NotFoundError

from crewbus.evals.compare import CompareError, compare
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.gate import GateError, gate
from crewbus.evals.results_jsonl import rows_from_run_items
from crewbus.httpapi import openapi, responses
from crewbus.httpapi.auth import Caller, require
from crewbus.httpapi.problems import ProblemError
from crewbus_contracts.comparisons import Comparison, GateResult
from crewbus_contracts.evals import (
    DATASET_NAME,
    Experiment,
    ExperimentStatus,
    RunItem,
    ScoreType,
    Target,
)

router = APIRouter(prefix="/v1/experiments", tags=["evaluations"], responses=openapi.PROBLEMS)
Name = Annotated[str, Path(pattern=DATASET_NAME)]


class HeadlineScore(msgspec.Struct, kw_only=True):
    """One scorer's headline figure: its pass rate (boolean) or mean (numeric)."""

    name: str
    type: ScoreType
    value: float | None


class ExperimentHeader(msgspec.Struct, kw_only=True):
    """What `crewbus eval list` shows of one experiment."""

    name: str
    status: ExperimentStatus
    dataset: str
    dataset_version: int
    target: Target
    variant: str
    epochs: int
    created_at: float
    finished_at: float | None = None
    passed: bool | None = None
    """The thresholds' verdict, once the experiment has a summary."""
    headline: list[HeadlineScore] = []


class ExperimentList(msgspec.Struct, kw_only=True):
    experiments: list[ExperimentHeader]


class ExperimentDetail(msgspec.Struct, kw_only=True):
    """As `crewbus eval show --json`: the experiment (config, summary) and its run items."""

    experiment: Experiment
    run_items: list[RunItem]


class ExperimentComparison(msgspec.Struct, kw_only=True):
    """As `crewbus eval compare --json`: the comparison, and the gate's verdict if asked."""

    comparison: Comparison
    gate: GateResult | None = None


def header_of(experiment: Experiment) -> ExperimentHeader:
    c, summary = experiment.config, experiment.summary
    headline = [] if summary is None else [
        HeadlineScore(name=s.name, type=s.type,
                      value=s.pass_rate if s.pass_rate is not None else s.mean)
        for s in summary.scorers]
    return ExperimentHeader(
        name=experiment.name, status=experiment.status, dataset=c.dataset,
        dataset_version=c.dataset_version, target=c.target, variant=c.variant,
        epochs=c.epochs, created_at=experiment.created_at, finished_at=experiment.finished_at,
        passed=None if summary is None else summary.passed, headline=headline)


async def store_of(request: Request) -> ExperimentStore:
    try:
        return await ExperimentStore.open(request.app.state.bus.js)
    except (BucketNotFoundError, NotFoundError):
        raise ProblemError("unavailable", "the experiments bucket does not exist yet: are "
                           "the crewbus services started?", headers={"Retry-After": "1"}
                           ) from None


async def experiment_or_404(store: ExperimentStore, name: str) -> Experiment:
    found = await store.get(name)
    if found is None:
        raise ProblemError("not_found", f"no experiment {name}")
    return found


async def experiments(request: Request) -> list[Experiment]:
    """Every experiment, newest first."""
    return list(reversed(await (await store_of(request)).all()))


async def detail(request: Request, name: str) -> ExperimentDetail:
    store = await store_of(request)
    experiment = await experiment_or_404(store, name)
    return ExperimentDetail(experiment=experiment, run_items=await store.items(name))


async def comparison_of(request: Request, baseline: str, candidate: str, *,
                        with_gate: bool = False, max_drop: float = 0.02,
                        alpha: float = 0.05) -> ExperimentComparison:
    """What `crewbus eval compare BASELINE CANDIDATE --json [--gate]` computes."""
    store = await store_of(request)
    runs = []
    for name in (baseline, candidate):
        await experiment_or_404(store, name)
        runs.append(await store.items(name))
    try:
        found = compare(rows_from_run_items(runs[0]), rows_from_run_items(runs[1]),
                        baseline_name=baseline, candidate_name=candidate)
        verdict = gate(found, max_drop, alpha) if with_gate else None
    except (CompareError, GateError) as exc:
        raise ProblemError("invalid_request", " ".join(str(exc).split())) from None
    return ExperimentComparison(comparison=found, gate=verdict)


@router.get("", summary="Every experiment's header and headline scores, newest first",
            responses={200: openapi.json_response(ExperimentList, "The experiments")})
async def list_experiments(request: Request,
                           caller: Annotated[Caller, Depends(require("read"))]) -> Response:
    return responses.json(ExperimentList(
        experiments=[header_of(e) for e in await experiments(request)]))


@router.get("/{name}", summary="One experiment: its config, summary and run items",
            responses={200: openapi.json_response(ExperimentDetail, "The experiment")})
async def experiment(request: Request, name: Name,
                     caller: Annotated[Caller, Depends(require("read"))]) -> Response:
    return responses.json(await detail(request, name))


@router.get("/{baseline}/compare/{candidate}",
            summary="The paired comparison of two experiments (as `crewbus eval compare`)",
            responses={200: openapi.json_response(ExperimentComparison, "The comparison")})
async def compare_experiments(
    request: Request, baseline: Name, candidate: Name,
    caller: Annotated[Caller, Depends(require("read"))],
    with_gate: Annotated[bool, Query(alias="gate")] = False,
    max_drop: Annotated[float, Query(ge=0, le=1)] = 0.02,
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
) -> Response:
    return responses.json(await comparison_of(request, baseline, candidate,
                                              with_gate=with_gate, max_drop=max_drop,
                                              alpha=alpha))

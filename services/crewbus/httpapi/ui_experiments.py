"""The web UI's evaluation pages: experiments, one experiment, and a paired comparison.

Read from the same functions as `/v1/experiments`, so a page shows what the API answers
(and `crewbus eval show|compare` print). Every pass or fail is a word and a symbol."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from crewbus.evals.run_items import passed
from crewbus.httpapi.auth import Caller, require_ui
from crewbus.httpapi.experiments import comparison_of, detail, experiments, header_of
from crewbus.httpapi.ui import page
from crewbus_contracts.comparisons import ScorerComparison, ScoreValue
from crewbus_contracts.evals import RunItem, Score

router = APIRouter(include_in_schema=False)


def score_mark(score: Score) -> str:
    """One score as text: `name ✓`, `name ✗`, `name ERR`, or `name=value` (no verdict)."""
    if score.error:
        return f"{score.name} ⚠ error"
    if score.passed is None:
        value = score.label or ("n/a" if score.value is None else f"{score.value:.2f}")
        return f"{score.name}={value}"
    return f"{score.name} {'✓ pass' if score.passed else '✗ FAIL'}"


def score_value(value: ScoreValue) -> str:
    """A paired score as text: pass/fail in words, numbers to 3 decimals, labels as is."""
    if value is None:
        return "⚠ could not score"
    if isinstance(value, bool):
        return "✓ pass" if value else "✗ fail"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def comparison_kind(scorer: ScorerComparison) -> str:
    """`boolean`, `numeric` or `categorical`: the tag msgspec writes as `type`."""
    return str(scorer.__struct_config__.tag)


def failures_first(runs: list[RunItem]) -> list[tuple[RunItem, bool]]:
    return [(r, passed(r)) for r in sorted(runs, key=lambda r: (passed(r), r.item_id, r.epoch))]


@router.get("/ui/experiments")
async def experiment_list(request: Request,
                          caller: Annotated[Caller, Depends(require_ui("read"))]) -> Response:
    found = await experiments(request)
    return page(request, "experiments.html", caller=caller,
                experiments=[header_of(e) for e in found])


@router.get("/ui/experiments/{name}")
async def experiment_page(request: Request, name: str,
                          caller: Annotated[Caller, Depends(require_ui("read"))]) -> Response:
    shown = await detail(request, name)
    return page(request, "experiment.html", caller=caller, experiment=shown.experiment,
                runs=failures_first(shown.run_items), mark=score_mark)


@router.get("/ui/compare")
async def comparison_page(request: Request,
                          caller: Annotated[Caller, Depends(require_ui("read"))],
                          baseline: str = "", candidate: str = "") -> Response:
    names = [e.name for e in await experiments(request)]
    result = None
    if baseline and candidate:
        result = await comparison_of(request, baseline, candidate, with_gate=True)
    return page(request, "compare.html", caller=caller, names=names, baseline=baseline,
                candidate=candidate, result=result, kind=comparison_kind,
                value=score_value)

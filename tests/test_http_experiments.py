"""`/v1/experiments` and the UI's evaluation pages against a real stack: experiments run
through the bus with the simulated model, read back over HTTP exactly as `crewbus eval
show|compare --json` compute them, 404 problems, the `read` scope, and every response
checked against /openapi.json."""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.compare import compare
from crewbus.evals.datasets import DatasetStore
from crewbus.evals.experiments import ExperimentStore
from crewbus.evals.results_jsonl import rows_from_run_items
from crewbus.evals.runner import ExperimentRun, ExperimentRunner
from crewbus.evals.scorers.config import parse_scorer
from crewbus.evals.scorers.registry import build_scorers
from crewbus.evals.summary import summarise
from crewbus.httpapi.apikeys import KeyStore
from crewbus.llm.simulated import SimulatedModel
from crewbus_contracts.evals import DatasetItem, ExperimentConfig, ItemInput, Threshold
from tests.gateway_helpers import HttpStack, http_stack, problem_of
from tests.test_http_openapi import check

pytestmark = pytest.mark.anyio

PASSING = "[simulated]"
"""In every simulated answer: `contains` passes on it."""


def items(failing: set[str]) -> list[DatasetItem]:
    return [DatasetItem(id=f"q{i}", input=ItemInput(text=f"What is {i} + {i}?"),
                        expected="not in any answer" if f"q{i}" in failing else PASSING)
            for i in range(3)]


async def run_experiment(s: HttpStack, name: str, failing: set[str]) -> None:
    """A dataset of its own (same item ids, so two experiments pair up) run through the
    crew with the `contains` scorer, as `crewbus eval run` does."""
    datasets = DatasetStore(s.client.js)
    await datasets.create(f"{name}-ds", items(failing))
    version, found = await datasets.items(f"{name}-ds", None)
    spec = parse_scorer("contains")
    config = ExperimentConfig(dataset=f"{name}-ds", dataset_version=version.version,
                              scorers=[spec], concurrency=3,
                              thresholds=[Threshold(scorer="contains", min=0.9)])
    store = await ExperimentStore.open(s.client.js, patience_s=30)
    runner = ExperimentRunner(s.client.nc, store, summarise)
    with anyio.fail_after(180):
        await runner.run(ExperimentRun(name, config, list(found), build_scorers([spec])))


async def test_experiments_and_their_comparison_are_read_over_http_and_in_the_ui(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    seen: list[httpx.Response] = []
    async with http_stack(nats_server.url, model.base_url) as s:
        await run_experiment(s, "base", failing=set())
        await run_experiment(s, "cand", failing={"q1"})
        spec = (await s.http.get("/openapi.json")).json()
        s.http.event_hooks["response"] = [lambda r: _keep(seen, r)]
        listed = (await s.http.get("/v1/experiments")).json()["experiments"]
        shown = (await s.http.get("/v1/experiments/cand")).json()
        compared = (await s.http.get("/v1/experiments/base/compare/cand")).json()
        gated = (await s.http.get("/v1/experiments/base/compare/cand",
                                  params={"gate": "true"})).json()
        missing = [await s.http.get(p) for p in (
            "/v1/experiments/nope", "/v1/experiments/nope/compare/cand",
            "/v1/experiments/base/compare/nope")]
        bad_name = await s.http.get("/v1/experiments/bad name!")
        bad_drop = await s.http.get("/v1/experiments/base/compare/cand",
                                    params={"max_drop": 3})
        store = await ExperimentStore.open(s.client.js)
        expected = compare(rows_from_run_items(await store.items("base")),
                           rows_from_run_items(await store.items("cand")),
                           baseline_name="base", candidate_name="cand")
        ui = await ui_pages(s.http)
    api = [r for r in seen if r.request.url.path.startswith("/v1/")]
    assert len(api) == 9
    for response in api:
        check(spec, response)

    assert [e["name"] for e in listed] == ["cand", "base"]  # newest first
    by_name = {e["name"]: e for e in listed}
    assert by_name["base"]["passed"] is True and by_name["cand"]["passed"] is False
    assert by_name["cand"]["dataset"] == "cand-ds" and by_name["cand"]["status"] == "finished"
    assert by_name["cand"]["headline"][0]["name"] == "contains"
    assert by_name["cand"]["headline"][0]["value"] == pytest.approx(2 / 3)

    assert shown["experiment"]["name"] == "cand"
    assert shown["experiment"]["summary"]["scorers"][0]["passed"] == 2
    assert sorted(r["item_id"] for r in shown["run_items"]) == ["q0", "q1", "q2"]

    assert compared["comparison"] == msgspec.to_builtins(expected)  # what the CLI prints
    assert compared["gate"] is None
    assert [(c["item_id"], c["scorer"]) for c in compared["comparison"]["regressed"]] == [
        ("q1", "contains")]
    assert gated["gate"]["max_drop"] == 0.02 and gated["gate"]["checks"][0]["scorer"] == \
        "contains"

    for response in missing:
        assert response.status_code == 404 and problem_of(response)["code"] == "not_found"
        assert "nope" in problem_of(response)["detail"]
    assert bad_name.status_code == 400 and problem_of(bad_name)["code"] == "invalid_request"
    assert bad_drop.status_code == 400 and "max_drop" in problem_of(bad_drop)["detail"]

    regression = compared["comparison"]["regressed"][0]
    assert ui["list"].count('href="/ui/experiments/') >= 2
    assert "FAILED" in ui["list"] and "passed" in ui["list"]
    rows = re.findall(r'<tr class="(pass|fail)">', ui["experiment"])
    assert rows == ["fail", "pass", "pass"]  # failures first
    assert "pass 2/3" in ui["experiment"] and "[" in ui["experiment"]  # with its interval
    for r in shown["run_items"]:
        assert f'/ui/tasks/{r["task_id"]}' in ui["experiment"]
    assert f'/ui/tasks/{regression["baseline_task_id"]}' in ui["compare"]
    assert f'/ui/tasks/{regression["candidate_task_id"]}' in ui["compare"]
    assert "McNemar" in ui["compare"] and "Regressed (1)" in ui["compare"]
    assert ui["missing"] == 404 and "no experiment nope" in ui["missing_text"]
    assert 'href="/ui/experiments"' in ui["nav"] and 'href="/ui/compare"' in ui["nav"]


async def ui_pages(http: httpx.AsyncClient) -> dict[str, Any]:
    listing = await http.get("/ui/experiments")
    one = await http.get("/ui/experiments/cand")
    pair = await http.get("/ui/compare", params={"baseline": "base", "candidate": "cand"})
    picker = await http.get("/ui/compare")
    missing = await http.get("/ui/experiments/nope")
    for page in (listing, one, pair, picker):
        assert page.status_code == 200, page.text
    assert '<select id="baseline"' in picker.text
    return {"list": listing.text, "experiment": one.text, "compare": pair.text,
            "nav": picker.text, "missing": missing.status_code, "missing_text": missing.text}


async def _keep(seen: list[httpx.Response], response: httpx.Response) -> None:
    await response.aread()
    seen.append(response)



async def test_the_experiment_endpoints_need_the_read_scope(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    async with http_stack(nats_server.url, model.base_url) as s:
        await run_experiment(s, "one", failing=set())
        keys: KeyStore = s.gateway.app.state.bus.keys
        reader, _ = await keys.create("reader", ["read"])
        submitter, _ = await keys.create("submitter", ["submit"])
        with anyio.fail_after(30):  # an open gateway closes within a second of a key
            while (await s.http.get("/v1/experiments")).status_code != 401:
                await anyio.sleep(0.2)
        for path in ("/v1/experiments", "/v1/experiments/one",
                     "/v1/experiments/one/compare/one"):
            allowed = await s.http.get(path, headers=bearer(reader))
            refused = await s.http.get(path, headers=bearer(submitter))
            anonymous = await s.http.get(path)
            assert allowed.status_code == 200, (path, allowed.text)
            assert refused.status_code == 403 and problem_of(refused)["code"] == "forbidden"
            assert anonymous.status_code == 401
        page = await s.http.get("/ui/experiments", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}

"""`crewbus eval` as a real child process against the in-process crew on a real nats-server:
the CI exit codes (0 thresholds held, 100 one failed, 1 an error, 2 bad usage), JUnit XML a
CI system can parse, show/list/export, a single-agent target, and a run killed with SIGKILL
mid-way that, run again under the same name, finishes with one task per (item, epoch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from crewbus.bus.kv_keys import kv_keys
from crewbus.client import CrewbusClient
from crewbus.devstack.nats_server import NatsServer
from crewbus.evals.datasets import DatasetStore
from crewbus.evals.experiments import ExperimentStore
from crewbus.llm.simulated import SimulatedModel
from crewbus_contracts import subjects
from crewbus_contracts.evals import EPOCH_KEY, EXPERIMENT_KEY, ITEM_KEY, DatasetItem, ItemInput
from tests.stack import in_process_stack, service_env

pytestmark = pytest.mark.anyio

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATE = 0, 1, 2, 100


def items(n: int, expected: str = "[simulated]", **metadata: str) -> list[DatasetItem]:
    return [DatasetItem(id=f"q{i}", input=ItemInput(text=f"What is {i} + {i}?",
                                                    metadata=metadata), expected=expected)
            for i in range(n)]


def cli(nats_url: str, model_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "crewbus", "eval", *args, "--nats", nats_url]


async def eval_cli(nats_server: NatsServer, model_url: str, *args: str,
                   cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = service_env(nats_server.url, model_url)
    with anyio.fail_after(240):
        return await anyio.run_process(cli(nats_server.url, model_url, *args), env=env,
                                       check=False, cwd=cwd)


async def task_ids(client: CrewbusClient) -> list[str]:
    """Every task id in the tasks bucket (read from its stream's subjects: nats-py's
    `keys()` can answer before what the server sent it has arrived)."""
    return await kv_keys(client.js, subjects.TASKS_KV)


async def test_thresholds_that_hold_exit_0_with_junit_json_show_list_and_export(
    nats_server: NatsServer, model_url: str, tmp_path: Path
) -> None:
    async with in_process_stack(nats_server.url, model_url) as crew:
        await DatasetStore(crew.js).create("arith", items(3))
        junit, results = tmp_path / "report.xml", tmp_path / "results.json"
        done = await eval_cli(nats_server, model_url, "run", "arith", "--scorer", "contains",
                              "--scorer", "no_error", "--threshold", "contains=0.9",
                              "--name", "ok-run", "--junit", str(junit), "--json", str(results))
        assert done.returncode == EXIT_OK, done.stderr.decode()
        out = done.stdout.decode()
        assert "PASSED" in out and "threshold contains >= 0.9: 1.000 held" in out
        assert "3/3 done, 3 passing" in done.stderr.decode()
        suites = ET.parse(junit).getroot()
        assert suites.tag == "testsuites" and suites.get("tests") == "7"  # 3x2 scores + 1 gate
        assert suites.get("failures") == "0" and suites.get("errors") == "0"
        names = {c.get("classname") for c in suites.iter("testcase")}
        assert names == {"ok-run.contains", "ok-run.no_error", "ok-run.thresholds"}
        document = json.loads(results.read_text())
        assert document["experiment"]["summary"]["passed"] is True
        assert len(document["run_items"]) == 3
        shown = await eval_cli(nats_server, model_url, "show", "ok-run")
        task_id = document["run_items"][0]["task_id"]
        assert shown.returncode == EXIT_OK and task_id in shown.stdout.decode()
        assert "pass 3/3 = 1.000 [" in shown.stdout.decode()  # the Wilson interval follows
        listed = await eval_cli(nats_server, model_url, "list")
        assert listed.returncode == EXIT_OK and "ok-run" in listed.stdout.decode()
        assert "passed" in listed.stdout.decode()


async def test_a_failed_threshold_exits_100_and_junit_shows_each_failure(
    nats_server: NatsServer, model_url: str, tmp_path: Path
) -> None:
    async with in_process_stack(nats_server.url, model_url) as crew:
        await DatasetStore(crew.js).create("exact", items(2, expected="4"))
        junit = tmp_path / "report.xml"
        done = await eval_cli(nats_server, model_url, "run", "exact", "--scorer", "exact",
                              "--threshold", "exact=0.5", "--name", "gate", "--junit", str(junit))
        assert done.returncode == EXIT_GATE, done.stderr.decode()
        assert "FAILED" in done.stdout.decode()
        root = ET.parse(junit).getroot()
        failures = [c.find("failure") for c in root.iter("testcase")]
        assert root.get("failures") == "3"  # both items, and the threshold
        assert all(f is not None and f.get("message") for f in failures)
        gate = next(c for c in root.iter("testcase") if c.get("classname") == "gate.thresholds")
        assert "below 0.5" in (gate.find("failure").get("message") or "")  # type: ignore[union-attr]


async def test_errors_exit_1_and_bad_usage_exits_2(
    nats_server: NatsServer, model_url: str
) -> None:
    async with in_process_stack(nats_server.url, model_url) as crew:
        await DatasetStore(crew.js).create("small", items(1))
        missing = await eval_cli(nats_server, model_url, "run", "nope", "--scorer", "contains")
        assert missing.returncode == EXIT_ERROR
        assert b"nope" in missing.stderr and b"Traceback" not in missing.stderr
        first = await eval_cli(nats_server, model_url, "run", "small", "--scorer", "contains",
                               "--name", "fixed")
        assert first.returncode == EXIT_OK, first.stderr.decode()
        changed = await eval_cli(nats_server, model_url, "run", "small", "--scorer", "contains",
                                 "--epochs", "2", "--name", "fixed")
        assert changed.returncode == EXIT_ERROR
        assert b"already exists with a different configuration" in changed.stderr
        assert b"epochs: 1 -> 2" in changed.stderr
        variant = await eval_cli(nats_server, model_url, "run", "small", "--scorer", "exact",
                                 "--variant", "no-such-variant")
        assert variant.returncode == EXIT_ERROR and b"no-such-variant" in variant.stderr
        none = await eval_cli(nats_server, model_url, "run", "small")
        assert none.returncode == EXIT_USAGE and b"no scorers" in none.stderr
        unknown = await eval_cli(nats_server, model_url, "show", "never-ran")
        assert unknown.returncode == EXIT_ERROR and b"no experiment 'never-ran'" in unknown.stderr


async def test_a_planner_target_scores_the_plan_alone(
    nats_server: NatsServer, model: SimulatedModel, model_url: str,
) -> None:
    async with in_process_stack(nats_server.url, model_url) as crew:
        await DatasetStore(crew.js).create("plans", items(2, expected="researcher"))
        done = await eval_cli(nats_server, model_url, "run", "plans", "--target", "planner",
                              "--scorer", "contains", "--name", "planner-only",
                              "--threshold", "contains=1")
        assert done.returncode == EXIT_OK, done.stderr.decode()
        assert {agent for agent, _ in model.requests} == {"planner"}
        runs = await (await ExperimentStore.open(crew.js)).items("planner-only")
        assert all(r.output and r.output["steps"] for r in runs)


async def test_export_and_compare_two_experiments_from_the_bus_with_a_gate(
    nats_server: NatsServer, model_url: str, tmp_path: Path
) -> None:
    async with in_process_stack(nats_server.url, model_url) as crew:
        datasets = DatasetStore(crew.js)
        await datasets.create("cmp", items(6))
        await datasets.add_version("cmp", items(6, expected="not in any answer"))
        for name, version in (("base", "1"), ("cand", "2")):
            done = await eval_cli(nats_server, model_url, "run", "cmp", "--version", version,
                                  "--scorer", "contains", "--name", name)
            assert done.returncode in (EXIT_OK, EXIT_GATE), done.stderr.decode()
        plain = await eval_cli(nats_server, model_url, "compare", "base", "cand")
        gated = await eval_cli(nats_server, model_url, "compare", "base", "cand", "--gate")
        exported = []
        for name in ("base", "cand"):
            path = tmp_path / f"{name}.jsonl"
            out = await eval_cli(nats_server, model_url, "export", name, "--out", str(path))
            assert out.returncode == EXIT_OK, out.stderr.decode()
            exported.append(str(path))
        streamed = await eval_cli(nats_server, model_url, "export", "base")
        from_files = await eval_cli(nats_server, model_url, "compare", "--from-jsonl",
                                    *exported, "--gate", "--json")
        unknown = await eval_cli(nats_server, model_url, "compare", "base", "nope")
    assert plain.returncode == EXIT_OK, plain.stderr.decode()
    assert "pairs: 6" in plain.stdout.decode() and "regressed" in plain.stdout.decode()
    assert gated.returncode == EXIT_GATE and "gate FAILED" in gated.stdout.decode()
    rows = [json.loads(line) for line in streamed.stdout.decode().splitlines()]
    assert len(rows) == 6 and all(r["scores"] == {"contains": True} for r in rows)
    assert all(r["task_id"].startswith("t") for r in rows)
    assert from_files.returncode == EXIT_GATE
    document = json.loads(from_files.stdout)
    assert document["gate"]["passed"] is False and document["comparison"]["pairs"] == 6
    assert unknown.returncode == EXIT_ERROR and b"no experiment 'nope'" in unknown.stderr


@pytest.fixture
async def slow_model() -> AsyncIterator[SimulatedModel]:
    """Each model call takes 50 ms, so a run is still going when the test kills it."""
    async with SimulatedModel(latency_s=0.05) as sim:
        yield sim


async def test_a_run_killed_mid_way_resumes_with_one_task_per_item_and_epoch(
    nats_server: NatsServer, slow_model: SimulatedModel, tmp_path: Path
) -> None:
    assert slow_model.base_url is not None
    n, epochs = 6, 2
    async with in_process_stack(nats_server.url, slow_model.base_url) as client:
        await DatasetStore(client.js).create("resume", items(n))
        store = await ExperimentStore.open(client.js)
        args = cli(nats_server.url, slow_model.base_url, "run", "resume", "--scorer",
                   "contains", "--epochs", str(epochs), "--concurrency", "3", "--name", "k")
        env = service_env(nats_server.url, slow_model.base_url)
        log = (tmp_path / "killed.log").open("wb")
        child = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            with anyio.fail_after(120):
                while len(await store.items("k")) < 3:
                    assert child.poll() is None, (tmp_path / "killed.log").read_text()
                    await anyio.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait()
            log.close()
        stored_before = len(await store.items("k"))
        assert child.returncode == -signal.SIGKILL and stored_before < n * epochs
        tasks_before = set(await task_ids(client))
        assert len(tasks_before) > stored_before  # some were in flight when it died
        again = await eval_cli(nats_server, slow_model.base_url, "run", "resume", "--scorer",
                               "contains", "--epochs", str(epochs), "--concurrency", "3",
                               "--name", "k")
        assert again.returncode == EXIT_OK, again.stderr.decode()
        runs = await store.items("k")
        tasks = await task_ids(client)
        states = [await client.state(t) for t in tasks]
    assert len(runs) == n * epochs == len(tasks)
    assert len({(r.item_id, r.epoch) for r in runs}) == n * epochs
    assert {r.task_id for r in runs} == set(tasks) >= tasks_before
    marks = sorted((s.metadata[ITEM_KEY], s.metadata[EPOCH_KEY]) for s in states if s)
    assert marks == sorted((f"q{i}", str(e)) for i in range(n) for e in range(epochs))
    assert all(s is not None and s.metadata[EXPERIMENT_KEY] == "k" for s in states)
    assert f"{n * epochs}/{n * epochs} done" in again.stderr.decode()

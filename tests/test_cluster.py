"""Issue 14, point 3: crewbus on a 3-node JetStream cluster of real nats-servers. Killing
the node that leads CREWBUS_RESULTS mid-load (and restarting it) loses no task, applies no
result twice and leaves every event agreeing with the stored state; `crewbus up --cluster
3` runs such a cluster with every stream and bucket at replicas 3. Short form of
bench/cluster_chaos.py (50 tasks)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import nats
import pytest

from crewbus.auth.credentials import DIR_NAME
from crewbus.auth.permissions import ADMIN
from crewbus.bus.connection import connect_for_command
from crewbus.devstack.cluster import CLUSTER_REPLICAS
from crewbus.devstack.nats_server import free_port
from crewbus_contracts import subjects
from tests.cluster_chaos import run_cluster_chaos
from tests.test_agreement import assert_agree
from tests.test_crewbus_up import (  # noqa: F401 - `env` is a fixture used by name
    STOPPED_WITHIN_S,
    Up,
    _alive,
    _free_port_run,
    env,
    wait_until,
)

TASKS = 10


@pytest.mark.anyio
async def test_killing_the_results_leader_mid_load_loses_no_task_and_repeats_no_result(
    tmp_path: Path,
) -> None:
    figures, kill = await run_cluster_chaos(tmp_path, TASKS, subjects.RESULTS_STREAM,
                                            timeout_s=150, seed=14)
    report = f"\n{figures.report()}\n{kill.report()}"
    print(report)
    assert kill.killed and kill.new_leader and kill.new_leader != kill.killed, report
    assert kill.at_final < TASKS, "the kill came after the load" + report
    assert kill.caught_up_s >= 0, report
    assert_agree(figures)
    assert figures.completed == TASKS, report
    assert kill.step_results > 0 and kill.duplicated_steps == 0, report


@pytest.fixture
def cluster_up(env: dict[str, str]) -> Iterator[Up]:  # noqa: F811 - the imported fixture
    """`crewbus up --cluster 3` with the environment of tests/test_crewbus_up.py (`env`)."""
    first = _free_port_run(3)
    up = Up(env, first, free_port(), "--cluster", "3")
    yield up
    up.kill()


def test_up_cluster_3_runs_three_nodes_at_replicas_three_and_a_task_completes(
    cluster_up: Up,
) -> None:
    up = cluster_up
    text = up.banner(timeout_s=150)
    urls = [f"nats://127.0.0.1:{up.nats_port + i}" for i in range(3)]
    assert ",".join(urls) in text and "3-node JetStream cluster" in text, text
    listed = re.search(r"cluster, pids ([\d, ]+),", text)
    assert listed is not None, text
    pids = [int(pid) for pid in re.findall(r"\d+", listed.group(1))]
    assert len(pids) == 3, text

    creds = Path(up.env["CREWBUS_DATA_DIR"]) / DIR_NAME
    assert "one identity per service" in text, text  # the nodes take the stack's users

    async def replicas() -> dict[str, int]:
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(urls[0], allow_reconnect=False, max_reconnect_attempts=0)
        nc = await connect_for_command(urls[2], ADMIN, creds)
        try:
            js = nc.jetstream()
            names = [subjects.TASKS_STREAM, subjects.RESULTS_STREAM, subjects.TRACES_STREAM,
                     f"KV_{subjects.TASKS_KV}", f"KV_{subjects.API_KEYS_KV}"]
            return {n: (await js.stream_info(n)).config.num_replicas or 0 for n in names}
        finally:
            await nc.close()

    found = anyio.run(replicas)
    assert set(found.values()) == {CLUSTER_REPLICAS}, found
    # Submitted through the second node; the CLI's --nats takes one node of the cluster.
    submit = subprocess.run(
        [*up.proc.args[:3], "submit", "Name a use of a replicated stream", "--wait",
         "--nats", urls[1]],
        env=up.env, capture_output=True, text=True, timeout=150)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert "Answer:" in submit.stdout
    # How fast and how cleanly each service stops is tests/test_crewbus_up.py's to check;
    # here: Ctrl-C ends the three nodes too.
    os.killpg(up.proc.pid, signal.SIGINT)
    up.proc.wait(STOPPED_WITHIN_S + 30)
    assert "no process left running" in up.output, up.output
    wait_until(lambda: not any(_alive(pid) for pid in pids), STOPPED_WITHIN_S,
               "the three nats-servers gone")


@pytest.mark.parametrize(("args", "says"), [
    (["--cluster", "2"], "--cluster takes 3 to 9 nodes, not 2"),
    (["--cluster", "3", "--nats", "nats://127.0.0.1:9"], "leave out --nats"),
])
def test_up_refuses_a_cluster_it_cannot_run_in_one_line(
    env: dict[str, str], args: list[str], says: str,  # noqa: F811 - the imported fixture
) -> None:
    # A free port: the refusal must not depend on 4222 being free on this machine.
    run = subprocess.run([sys.executable, "-m", "crewbus", "up", *args,
                          "--nats-port", str(free_port())], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crewbus up: "), run.stderr
    assert says in lines[0]

"""Every CLI error is one line on stderr with a non-zero exit code, never a traceback;
`--debug` shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import nats
import pytest

from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.settings import BusSettings
from tests.cli_helpers import one_line_error


def crewbus(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREWBUS_")}
    return subprocess.run([sys.executable, "-m", "crewbus", *args], env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def test_nats_unreachable_is_one_line_and_debug_shows_the_traceback() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    for command in (["status", "nosuch"], ["watch", "nosuch"], ["trace", "nosuch"],
                    ["memory", "stats"], ["submit", "hello", "--wait"]):
        one_line_error(crewbus(*command, "--nats", url), 3, f"crewbus {command[0]}:", url,
                       "crewbus up")
    one_line_error(crewbus("up", "--nats", url), 3, "crewbus up:", url, "--nats")
    debug = crewbus("status", "nosuch", "--nats", url, "--debug")
    assert debug.returncode == 3 and "Traceback" in debug.stderr, debug.stderr
    debug_first = crewbus("--debug", "status", "nosuch", "--nats", url)
    assert debug_first.returncode == 3 and "Traceback" in debug_first.stderr


def test_bad_usage_is_one_line() -> None:
    one_line_error(crewbus("submit"), 2, "crewbus submit: error:", "text", "--help")
    one_line_error(crewbus("nosuch"), 2, "invalid choice")
    one_line_error(crewbus("submit", "x", "--max-rounds", "many"), 2, "--max-rounds")
    one_line_error(crewbus("serve", "nosuch"), 2, "unknown service 'nosuch'")
    one_line_error(crewbus("submit", "x", "--min-score", "7", "--nats",
                           f"nats://127.0.0.1:{free_port()}"), 2, "invalid task")


@pytest.mark.anyio
async def test_an_unknown_task_is_one_line(nats_server: NatsServer) -> None:
    one_line_error(crewbus("status", "nosuch", "--nats", nats_server.url), 1,
                   "crewbus has not run on the NATS server")
    nc = await nats.connect(nats_server.url)
    await ensure_topology(nc.jetstream(), BusSettings(nats_url=nats_server.url))
    await nc.close()
    one_line_error(crewbus("status", "nosuch", "--nats", nats_server.url), 1, "no task nosuch")
    one_line_error(crewbus("watch", "nosuch", "--nats", nats_server.url), 1, "no task nosuch")
    one_line_error(crewbus("trace", "nosuch", "--nats", nats_server.url), 1, "no trace")

"""Waiting until what `crewbus up` lists answers, before it says it is up: each bus
service's /readyz on its metrics port, the gateway's /readyz, the simulated model's
/v1/models. A banner printed at spawn time sent new users to a UI address that refused
connections for the next few seconds. A bus service without a metrics port
(`CREWBUS_METRICS_PORT=0`) has no address to ask and is not waited for; `crewbus submit`
waits for the bus anyway.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import anyio
import httpx

READY_WAIT_S = 180.0
"""How long `up` waits for everything to answer before it prints the banner anyway, naming
what is still starting (a loaded machine takes long; a stuck service should not hide the
rest)."""
POLL_EVERY_S = 0.2
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Probe:
    """A service, and the address that answers 200 once it is ready."""

    service: str
    url: str


class ChildExitedError(RuntimeError):
    """A service exited while `up` waited for it to be ready."""

    def __init__(self, service: str, code: int) -> None:
        super().__init__(f"{service} exited with code {code} while starting (see its log)")
        self.service = service


def probe_host(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


async def wait_until_ready(probes: list[Probe],
                           children: list[tuple[str, subprocess.Popen[bytes]]],
                           timeout_s: float = READY_WAIT_S) -> list[str]:
    """The services still not ready after `timeout_s` (none once all are), checking that
    every child is still running in between. Raises ChildExitedError for one that exits."""
    waiting = list(probes)
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, trust_env=False) as http:
        while waiting and time.monotonic() < deadline:
            for name, proc in children:
                if proc.poll() is not None:
                    raise ChildExitedError(name, proc.returncode)
            waiting = [p for p in waiting if not await _answers(http, p.url)]
            if waiting:
                await anyio.sleep(POLL_EVERY_S)
    return [p.service for p in waiting]


async def _answers(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False

"""CPU seconds and wall time a `crewbus serve <service>` process takes to its ready line,
for two source trees side by side (a before/after pair in one run).

    PYTHONPATH=contracts:agents:services:. python bench/service_startup.py \\
        --tree base=/path/to/main --tree new=. [--rounds 3] [orchestrator memory ...]

Each tree runs with its own PYTHONPATH on the same nats-server; rounds alternate trees, so
a busy machine slows both alike. Most of a start is imports, and the test suite starts
hundreds of these processes (and `python -m crewbus` commands), so this is also a figure
for the suite's time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crewbus.devstack.nats_server import NatsServer

READY = ("ready", "listening on", "gateway serves http")
"""A line each service logs once it takes work."""


def _cpu_s(pid: int) -> float:
    """User+system CPU seconds of a running process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(root: Path, service: str, nats_url: str, work: Path) -> tuple[float, float]:
    """(CPU s, wall s) of `crewbus serve service` from `root` until its ready line."""
    env = dict(os.environ, CREWBUS_NATS_URL=nats_url, CREWBUS_METRICS_PORT="0",
               CREWBUS_HTTP_PORT="0", CREWBUS_DATA_DIR=str(work / "data"),
               CREWBUS_MEMORY_EMBEDDER="hashed",
               PYTHONPATH=os.pathsep.join(str(root / p) for p in
                                          ("contracts", "agents", "services", ".")))
    log = work / f"{service}.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "crewbus", "serve", service], env=env,
                                 cwd=root, stdout=out, stderr=subprocess.STDOUT)
    try:
        while not any(mark in log.read_text() for mark in READY):
            if child.poll() is not None:
                raise SystemExit(f"{service} exited:\n{log.read_text()}")
            time.sleep(0.02)
        return _cpu_s(child.pid), time.monotonic() - started
    finally:
        child.terminate()
        child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("services", nargs="*",
                        default=["orchestrator", "memory", "gateway", "planner"])
    args = parser.parse_args()
    trees = {name: Path(path).resolve() for name, path in
             (spec.split("=", 1) for spec in args.tree)}
    work = Path(tempfile.mkdtemp(prefix="crewbus-startup-"))
    server = NatsServer(work / "nats").start()
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for _ in range(args.rounds):
            for name, root in trees.items():
                for service in args.services:
                    figures.setdefault((service, name), []).append(
                        start_once(root, service, server.url, work))
    finally:
        server.stop()
    print(f"{'service':13} {'tree':8} {'CPU s (median)':>15} {'wall s (median)':>16}")
    for (service, name), runs in figures.items():
        print(f"{service:13} {name:8} {statistics.median(c for c, _ in runs):15.2f}"
              f" {statistics.median(w for _, w in runs):16.2f}")


if __name__ == "__main__":
    main()

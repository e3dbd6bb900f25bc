"""How fast Ctrl-C stops `crewbus up`, per service: signal -> "<service> stopped" in its log
(the clean stop) and signal -> process gone (the rest is the interpreter's exit). On a busy
machine the exit used to outlast `crewbus up`'s STOP_TIMEOUT_S (8 s) for every service.

Starts `crewbus up` (temp data dir, free ports, metrics off), waits until every service is
ready, sends SIGINT to its process group as a terminal does, and prints the figures.

    .venv/bin/python bench/stop_times.py [--runs 3] [--burners 2]

`--burners N` runs N busy-looping processes beside it (the loaded-machine case). Exit
status 1 when `crewbus up` had to kill a service or exited non-zero.
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

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="start/stop cycles")
    parser.add_argument("--burners", type=int, default=0, help="CPU burners beside it")
    return parser.parse_args(argv)


def one_run(env: dict[str, str]) -> tuple[dict[str, float], dict[str, float], int, str]:
    """Per service: seconds to its "stopped" line and to its exit; `up`'s exit code."""
    from crewbus.devstack.nats_server import free_port
    from tests.test_crewbus_up import SERVICES, STOPPED_WITHIN_S, Up, _alive

    up = Up(env, free_port(), free_port())
    try:
        up.banner()
        up.wait_ready()
        pids = {s: pid for s, pid in up.pids.items() if s in SERVICES}
        started = time.monotonic()
        os.killpg(up.proc.pid, 2)
        stopped: dict[str, float] = {}
        gone: dict[str, float] = {}
        while len(gone) < len(pids) and time.monotonic() - started < STOPPED_WITHIN_S + 30:
            now = time.monotonic() - started
            for service, pid in pids.items():
                if service not in stopped and f"{service} stopped" in up.log_text(service):
                    stopped[service] = now
                if service not in gone and not _alive(pid):
                    gone[service] = now
            time.sleep(0.02)
        code = up.proc.wait(60)
        return stopped, gone, code, up.output
    finally:
        up.kill()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable
    burners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"])
               for _ in range(args.burners)]
    bad = 0
    gaps: list[float] = []
    try:
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="crewbus-stop-") as tmp:
                from crewbus.devstack.nats_server import free_port

                env = {k: v for k, v in os.environ.items()
                       if not k.startswith(("OPENAI_", "CREWBUS_", "QDRANT_"))}
                env.update(CREWBUS_DATA_DIR=tmp, CREWBUS_METRICS_PORT="0",
                           CREWBUS_HTTP_PORT=str(free_port()))
                stopped, gone, code, output = one_run(env)
            killed = output.count("killed it")
            bad += killed > 0 or code != 0
            print(f"run {run}: up exit code {code}, {killed} killed, "
                  f"load {os.getloadavg()[0]:.1f}")
            for service, exited in gone.items():
                gap = exited - stopped[service] if service in stopped else float("nan")
                gaps.append(gap)
                print(f"  {service:<16} stopped {stopped.get(service, float('nan')):5.2f}s  "
                      f"exited {exited:5.2f}s  (exit {gap:5.2f}s after 'stopped')")
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    if gaps:
        print(f"'stopped' -> exit: median {statistics.median(gaps):.2f}s, "
              f"max {max(gaps):.2f}s over {len(gaps)} service stops")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

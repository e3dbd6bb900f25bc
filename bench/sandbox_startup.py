"""What the python tool's jail costs per call: an empty snippet (`pass`) run N times through
`run_python` in each sandbox, interleaved so a busy machine weighs on all of them alike.

  bwrap       the bubblewrap jail (python_sandbox=bwrap)
  unshare     the fallback with its own PID namespace (none, python_isolate_processes)
  plain       the fallback without it (none, no isolation): the bare process start

    PYTHONPATH=contracts:agents:services:. python bench/sandbox_startup.py [--calls 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from crewbus_agents.tools import ToolSettings
from crewbus_agents.tools.jail import check_jail
from crewbus_agents.tools.sandbox import process_isolation, run_python

VARIANTS = {
    "bwrap": {"python_sandbox": "bwrap"},
    "unshare": {"python_sandbox": "none", "python_isolate_processes": True},
    "plain": {"python_sandbox": "none", "python_isolate_processes": False},
}


async def measure(calls: int, workspace: Path) -> dict[str, list[float]]:
    variants = dict(VARIANTS)
    if not check_jail().usable:
        print(f"no jail here ({check_jail().detail}); bwrap is left out", file=sys.stderr)
        del variants["bwrap"]
    if not process_isolation():
        del variants["unshare"]
    settings = {name: ToolSettings(**values) for name, values in variants.items()}  # type: ignore[arg-type]
    times: dict[str, list[float]] = {name: [] for name in settings}
    for i in range(calls + 3):
        for name, s in settings.items():
            start = time.perf_counter()
            await run_python("pass", workspace, s)
            if i >= 3:  # warm-up: the first calls fill the page cache
                times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crewbus-sandbox-bench-") as tmp:
        times = anyio.run(measure, args.calls, Path(tmp))
    base = statistics.median(times["plain"])
    print(f"python tool, empty snippet, {args.calls} calls each (ms):")
    print(f"{'sandbox':<10}{'p50':>8}{'p90':>8}{'min':>8}{'vs plain p50':>15}")
    for name, values in times.items():
        ordered = sorted(values)
        p50 = statistics.median(ordered)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"{name:<10}{p50 * 1e3:>8.1f}{p90 * 1e3:>8.1f}{ordered[0] * 1e3:>8.1f}"
              f"{(p50 - base) * 1e3:>+14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

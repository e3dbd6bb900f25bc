"""The short form of `bench/peers.py`: every flow runs the four-step task at every level and
prints its row (tasks/s, latency, CPU per task, ratios to the floor). Figures are printed,
never asserted: speed is for the benchmark to measure, not for a test to time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "peers.py"
FLOWS = ("floor", "langgraph", "agentbus", "crewbus-inproc", "crewbus-procs")


def test_the_quick_peer_table_has_a_measured_row_for_every_flow_and_level() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        str(ROOT / part) for part in ("contracts", "agents", "services", "."))
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for flow in FLOWS:
        for level in (1, 8, 32):
            row = re.search(rf"^{re.escape(flow)}\s+{level}\s+(\d+)\S*\s+([\d.]+)\s", done.stdout,
                            re.MULTILINE)
            assert row is not None, f"no row for {flow} at {level}:\n{done.stdout}"
            assert int(row[1]) > 0 and float(row[2]) > 0, f"{flow} at {level} did nothing"

"""The short form of `bench/soak.py`: the stack as separate processes under a few seconds of
the soak's mixed load (failing, re-planned and approval tasks) prints its figures and
loses no task."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "soak.py"
SERVICES = ("orchestrator", "memory", "planner", "researcher", "executor", "critic", "gateway",
            "nats-server")


def test_a_short_soak_prints_every_services_figures_and_loses_no_task() -> None:
    # The hashed embedder: the memory service starts in a second instead of loading ONNX.
    env = {**os.environ, "CREWBUS_MEMORY_EMBEDDER": "hashed",
           "PYTHONPATH": os.pathsep.join(["contracts", "agents", "services", "."])}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "10", "--sample-s", "5", "--warmup-s", "5",
         "--rate", "1.5"],
        capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    samples = [line for line in out.splitlines() if line.startswith("[")]
    assert len(samples) == 2, out
    for line in samples:
        assert "RSS MB:" in line and "fds:" in line and "JetStream" in line
    ratios = out.split("end/start ratios", 1)[1]
    for service in SERVICES:
        assert re.search(rf"{service}\s+RSS \d+\.\d{{3}} .* fds \d+\.\d{{3}}", ratios), service
    assert "JetStream     storage" in ratios
    summary = re.search(r"tasks: (\d+) submitted .* (\d+) ended, lost 0, wrong outcome 0", out)
    assert summary is not None, out
    assert int(summary.group(1)) >= 10 and summary.group(1) == summary.group(2)
    for kind in ("approval", "failing", "plain", "replanned"):
        assert re.search(rf"\b{kind} [1-9]", out), kind
    assert re.search(r"approvals: [1-9]\d* approved", out), out

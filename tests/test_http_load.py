"""The short form of `bench/gateway.py`: 200 SSE streams held open on a running task for a
few seconds against a gateway in its own process, without an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gateway.py"


def test_two_hundred_streams_stay_open_without_errors_and_both_paths_answer() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--tasks", "3", "--streams", "200",
                           "--hold", "3"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "200 streams held" in done.stdout and " 0 errors" in done.stdout, done.stdout
    assert "submit round trip p50" in done.stdout

"""`crewbus up` as a user runs it: it starts everything, a task submitted from another
process completes with the simulated model named as such, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from crewbus.devstack.nats_server import free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose once its parent reaped it.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_up_runs_a_task_end_to_end_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "CREWBUS_", "QDRANT_"))}
    env.update(CREWBUS_DATA_DIR=str(tmp_path / "data"), CREWBUS_METRICS_PORT="0")
    nats_port, model_port = free_port(), free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "crewbus", "up", "--nats-port", str(nats_port),
         "--model-port", str(model_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    banner: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            banner.append(line)
            if line.startswith("Ctrl-C stops everything") or not line:
                break
        text = "".join(banner)
        assert f"nats://127.0.0.1:{nats_port}" in text, text
        assert "SIMULATED model" in text
        for service in ("orchestrator", "memory", "planner", "researcher", "executor", "critic",
                        "simulated-model"):
            assert re.search(rf"^\s+{service}\s+pid \d+", text, re.M), (service, text)
        pids = [int(p) for p in re.findall(r"pid (\d+)", text)]

        submit = subprocess.run(
            [sys.executable, "-m", "crewbus", "submit", "Name three uses of a work queue",
             "--wait", "--nats", f"nats://127.0.0.1:{nats_port}"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert submit.returncode == 0, submit.stdout + submit.stderr
        assert "Answer:" in submit.stdout and "Score:" in submit.stdout
        assert "Verdict:" in submit.stdout and "Rounds:  1" in submit.stdout
        assert "SIMULATED model" in submit.stdout
        task_id = re.search(r"Task:\s+(t\w+)", submit.stdout)
        assert task_id is not None

        streamed = subprocess.run(
            [sys.executable, "-m", "crewbus", "submit", "List two queue patterns", "--stream",
             "--nats", f"nats://127.0.0.1:{nats_port}"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert streamed.returncode == 0, streamed.stdout + streamed.stderr
        kinds = [line.split()[0] for line in streamed.stdout.splitlines() if line.strip()]
        for kind in ("submitted", "planned", "started", "finished", "critique", "completed"):
            assert kind in kinds, streamed.stdout
        assert re.search(r"finished\s+round 1 r1 \[researcher\] in \d+\.\d+s", streamed.stdout)

        watched = subprocess.run(
            [sys.executable, "-m", "crewbus", "watch", task_id.group(1),
             "--nats", f"nats://127.0.0.1:{nats_port}"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert watched.returncode == 0 and "completed" in watched.stdout, watched.stdout

        status = subprocess.run(
            [sys.executable, "-m", "crewbus", "status", task_id.group(1),
             "--nats", f"nats://127.0.0.1:{nats_port}"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert status.returncode == 0 and "completed" in status.stdout, status.stdout

        up.send_signal(signal.SIGINT)
        up.wait(60)
        assert up.returncode == 0
        time.sleep(0.5)
        assert not [p for p in pids if _alive(p)], "processes left behind"
        nats_left = subprocess.run(["pgrep", "-f", f"nats-server.*-p {nats_port}"],
                                   capture_output=True, text=True)
        assert nats_left.stdout == ""
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

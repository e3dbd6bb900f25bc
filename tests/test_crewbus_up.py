"""`crewbus up` as a user runs it: it starts everything, a task submitted from another
process completes with the simulated model named as such and is remembered, Ctrl-C (SIGINT
to the whole process group, as a terminal sends it) stops everything quickly and cleanly,
`crewbus up` starts again at once, and a kill -9 of it leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crewbus.devstack.nats_server import free_port
from crewbus.devstack.up import PortInUseError, _check_port_free
from tests.stack import wait_until

SERVICES = ("simulated-model", "orchestrator", "memory", "planner", "researcher", "executor",
            "critic")
READY = {"simulated-model": "listening on", "orchestrator": "orchestrator ready",
         "memory": "memory service ready", "planner": "planner ready",
         "researcher": "researcher ready", "executor": "executor ready",
         "critic": "critic ready"}
STOPPED_WITHIN_S = 20.0
"""What the tests assert for a whole stop. The goal is 5 s on an idle stack and is measured
(printed): each service drains in ~1 s (one fetch window) plus its exit; `crewbus up`
kills whatever is left after STOP_TIMEOUT_S (8 s) and then exits 1, which the tests
catch separately. 20 s leaves room for a CPU-starved CI machine."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose once its parent reaped it.
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def _free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports (the metrics ports of `up`)."""
    for _ in range(50):
        base = free_port()
        if base + count >= 65535:
            continue
        try:
            for port in range(base, base + count):
                _check_port_free("metrics", port, "")
        except PortInUseError:
            continue
        return base
    raise AssertionError("no run of free ports")


class Up:
    """`crewbus up` in its own process group (as a terminal runs it), output collected."""

    def __init__(self, env: dict[str, str], nats_port: int, model_port: int,
                 *more_args: str) -> None:
        self.env = env
        self.nats_port = nats_port
        self.logs = Path(env["CREWBUS_DATA_DIR"]) / "logs"
        # Logs are appended to: this run's lines start after what is there now.
        self.log_start = {service: self._log(service).stat().st_size
                          if self._log(service).exists() else 0 for service in SERVICES}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crewbus", "up", "--nats-port", str(nats_port),
             "--model-port", str(model_port), *more_args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def banner(self, timeout_s: float = 180) -> str:
        wait_until(lambda: "Ctrl-C stops everything" in self.output or self.proc.poll()
                   is not None, timeout_s, "the banner of crewbus up")
        assert self.proc.poll() is None, self.output
        return self.output

    @property
    def pids(self) -> dict[str, int]:
        """Every process `up` started, nats-server included, by name."""
        found = {name: int(pid) for name, pid in
                 re.findall(r"^\s+([\w-]+)\s+pid (\d+)", self.output, re.M)}
        nats = re.search(r"embedded nats-server pid (\d+)", self.output)
        assert nats is not None, self.output
        found["nats-server"] = int(nats.group(1))
        return found

    def _log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def log_text(self, service: str) -> str:
        if not self._log(service).exists():
            return ""
        with open(self._log(service), "rb") as f:
            f.seek(self.log_start[service])
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout_s: float = 180) -> None:
        def ready() -> bool:
            return all(marker in self.log_text(service) for service, marker in READY.items())

        try:
            wait_until(ready, timeout_s, "every service of crewbus up ready")
        except AssertionError as exc:  # which one, and what it said last
            late = {service: self.log_text(service)[-2000:] for service, marker in
                    READY.items() if marker not in self.log_text(service)}
            raise AssertionError(f"{exc}; not ready: {late}; up: {self.output}") from None

    def ctrl_c(self) -> float:
        """SIGINT to the whole group, as a terminal's Ctrl-C; seconds until all is gone."""
        pids = list(self.pids.values())
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(STOPPED_WITHIN_S + 30)
        wait_until(lambda: not [p for p in pids if _alive(p)], STOPPED_WITHIN_S,
                   "every process of crewbus up gone")
        return time.monotonic() - started

    def assert_each_stopped_itself(self) -> None:
        """Every service logged its own clean stop: it was not killed."""
        for service in SERVICES:
            assert f"{service} stopped" in self.log_text(service), (service,
                                                                   self.log_text(service))

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crewbus", *args, "--nats",
             f"nats://127.0.0.1:{self.nats_port}"],
            env=self.env, capture_output=True, text=True, timeout=timeout_s,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "CREWBUS_", "QDRANT_"))}
    env.update(CREWBUS_DATA_DIR=str(tmp_path / "data"), CREWBUS_METRICS_PORT="0",
               CREWBUS_HTTP_PORT=str(free_port()))
    return env


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.kill()


def assert_quiet(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback and no asyncio complaint after a good result."""
    for noise in ("Traceback", "Task exception was never retrieved", "ERROR asyncio"):
        assert noise not in result.stderr, result.stderr


def test_up_runs_a_task_end_to_end_remembers_it_and_ctrl_c_leaves_no_process(
    env: dict[str, str], ups: list[Up], tmp_path: Path,
) -> None:
    nats_port, model_port = free_port(), free_port()
    up = Up(env, nats_port, model_port)
    ups.append(up)
    text = up.banner()
    assert f"nats://127.0.0.1:{nats_port}" in text, text
    assert "SIMULATED model" in text
    for service in SERVICES:
        assert re.search(rf"^\s+{service}\s+pid \d+", text, re.M), (service, text)
    # The banner comes once what it lists answers: the UI address works at once.
    assert text.startswith("crewbus is up\n"), text
    gateway = f"http://127.0.0.1:{env['CREWBUS_HTTP_PORT']}"
    metrics = re.findall(r"metrics (http://127\.0\.0\.1:\d+)/metrics", text)  # if on
    for url in (gateway, *metrics):
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200, url

    # At once, while the memory service may still be opening its store.
    submit = up.cli("submit", "Name three uses of a work queue", "--wait")
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert_quiet(submit)
    assert "Answer:" in submit.stdout and "Score:" in submit.stdout
    assert "Verdict:" in submit.stdout and "Rounds:  1" in submit.stdout
    assert "SIMULATED model" in submit.stdout
    task_id = re.search(r"Task:\s+(t\w+)", submit.stdout)
    assert task_id is not None

    def remembered() -> bool:
        stats = up.cli("memory", "stats", timeout_s=30)
        counts = dict(re.findall(r"^\s+(\w+)\s+(\d+)$", stats.stdout, re.M))
        return int(counts.get("task", 0)) >= 1 and int(counts.get("finding", 0)) >= 2

    wait_until(remembered, 60, "the first task and its findings in memory")

    streamed = up.cli("submit", "List two queue patterns", "--stream")
    assert streamed.returncode == 0, streamed.stdout + streamed.stderr
    assert_quiet(streamed)
    kinds = [line.split()[0] for line in streamed.stdout.splitlines() if line.strip()]
    for kind in ("submitted", "planned", "started", "finished", "critique", "completed"):
        assert kind in kinds, streamed.stdout
    assert re.search(r"finished\s+round 1 r1 \[researcher\] in \d+\.\d+s", streamed.stdout)

    watched = up.cli("watch", task_id.group(1), timeout_s=60)
    assert watched.returncode == 0 and "completed" in watched.stdout, watched.stdout
    assert_quiet(watched)

    status = up.cli("status", task_id.group(1), timeout_s=60)
    assert status.returncode == 0 and "completed" in status.stdout, status.stdout

    assert f"{gateway}/" in text and "127.0.0.1 only" in text, text
    over_http = httpx.get(f"{gateway}/v1/tasks/{task_id.group(1)}", timeout=30)
    assert over_http.status_code == 200 and over_http.json()["status"] == "completed"

    took = up.ctrl_c()
    print(f"crewbus up stopped {took:.2f}s after Ctrl-C (after two tasks)")
    assert up.proc.returncode == 0, up.output
    assert "no process left running" in up.output
    up.assert_each_stopped_itself()
    nats_left = subprocess.run(["pgrep", "-f", f"nats-server.*-p {nats_port}"],
                               capture_output=True, text=True)
    assert nats_left.stdout == ""


def test_up_starts_again_right_after_ctrl_c_and_stops_quickly_after_a_scrape(
    env: dict[str, str], ups: list[Up], tmp_path: Path,
) -> None:
    nats_port, model_port = free_port(), free_port()
    metrics_base = _free_port_run(len(SERVICES) - 1)
    env["CREWBUS_METRICS_PORT"] = str(metrics_base)
    times = []
    for attempt in (1, 2):
        up = Up(env, nats_port, model_port)
        ups.append(up)
        up.banner()
        up.wait_ready()
        for offset in range(len(SERVICES) - 1):  # every service but the simulated model
            url = f"http://127.0.0.1:{metrics_base + offset}/metrics"
            with urllib.request.urlopen(url, timeout=30) as reply:
                assert b"crewbus_service_info" in reply.read()
        took = up.ctrl_c()
        times.append(took)
        print(f"run {attempt}: crewbus up stopped {took:.2f}s after Ctrl-C (after a scrape)")
        assert up.proc.returncode == 0, up.output  # 1 if a service had to be killed
        assert "killed it" not in up.output, up.output
        up.assert_each_stopped_itself()
        assert took < STOPPED_WITHIN_S
    # Both runs started on the same ports, the second within moments of the first stop.
    assert "is in use" not in ups[1].output


def _session_members(session_id: int) -> list[int]:
    """Live processes of the session `up` leads (it starts in a new one, as from a terminal)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _ctrl_c_while_starting(up: Up, moment: str) -> None:
    started = time.monotonic()
    os.killpg(up.proc.pid, signal.SIGINT)
    up.proc.wait(STOPPED_WITHIN_S + 30)
    wait_until(lambda: not _session_members(up.proc.pid), STOPPED_WITHIN_S,
               f"every process of crewbus up gone ({moment})")
    print(f"Ctrl-C while {moment}: crewbus up gone after {time.monotonic() - started:.2f}s")
    # -SIGINT: the signal came before Python's own handler was in place.
    assert up.proc.returncode in (130, -signal.SIGINT), (moment, up.output)
    assert "Traceback" not in up.output, (moment, up.output)


def test_ctrl_c_while_up_is_starting_exits_at_once_without_a_traceback(
    env: dict[str, str], ups: list[Up],
) -> None:
    """A Ctrl-C while `up` loads its imports exits 130 at once, and one while its services
    start stops them all. Imports inside the event loop made both wait (45-60 s measured on
    a loaded machine): there a Ctrl-C only cancels the main task at its next await."""
    loading = Up(env, free_port(), free_port())
    ups.append(loading)
    _ctrl_c_while_starting(loading, "loading")
    starting = Up(env, free_port(), free_port())
    ups.append(starting)
    wait_until(lambda: starting._log("orchestrator").exists() or starting.proc.poll()
               is not None, 180, "crewbus up starting its services")
    assert starting.proc.poll() is None, starting.output
    _ctrl_c_while_starting(starting, "starting services")


def test_kill_9_of_up_leaves_no_process_behind(
    env: dict[str, str], ups: list[Up], tmp_path: Path,
) -> None:
    up = Up(env, free_port(), free_port())
    ups.append(up)
    up.banner()
    up.wait_ready()
    pids = up.pids
    assert set(pids) == {*SERVICES, "gateway", "nats-server"}, pids
    started = time.monotonic()
    os.kill(up.proc.pid, signal.SIGKILL)
    up.proc.wait()
    wait_until(lambda: not [p for p in pids.values() if _alive(p)], STOPPED_WITHIN_S + 60,
               f"every child of the killed crewbus up gone: {pids}")
    print(f"children of a kill -9'd crewbus up gone after {time.monotonic() - started:.2f}s")
    up.assert_each_stopped_itself()  # PR_SET_PDEATHSIG's SIGTERM, handled as a stop


def test_up_refuses_a_port_in_use_in_one_line(env: dict[str, str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        for flag in ("--nats-port", "--model-port"):
            other = "--model-port" if flag == "--nats-port" else "--nats-port"
            result = subprocess.run(
                [sys.executable, "-m", "crewbus", "up", flag, str(busy), other,
                 str(free_port())],
                env=env, capture_output=True, text=True, timeout=60,
            )
            assert result.returncode != 0
            assert result.stdout == ""
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and f"port {busy}" in lines[0] and "in use" in lines[0], \
                result.stderr
            assert flag in lines[0]


def test_a_port_left_in_time_wait_counts_as_free() -> None:
    """What stopping a stack leaves: the server closed first, so its port is in TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server side closes first: TIME_WAIT on `port`
        client.recv(1)
        client.close()
    with pytest.raises(OSError), socket.socket() as plain:
        plain.bind(("127.0.0.1", port))  # what the old check did
    _check_port_free("test", port, "")

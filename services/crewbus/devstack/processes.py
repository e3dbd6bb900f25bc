"""Child processes that die with their parent: `crewbus up` must leave nothing behind."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 8.0
"""How long `stop_all` lets the children drain (together) before it kills the rest. A
service drains in about FETCH_WINDOW_S + DRAIN_GRACE_S + its exit, ~4 s at worst."""


def _load_libc() -> ctypes.CDLL | None:
    """Loaded once in the parent: dlopen between fork and exec is not safe."""
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGTERM when this process dies, even by
    kill -9 (Linux `PR_SET_PDEATHSIG`). The signal follows the *thread* that forks: a
    child forked from any other thread would be killed when that thread ends (a worker
    thread of `anyio.to_thread`, say), so off the main thread this returns None and the
    child outlives only a crash. A parent that died before the prctl is caught by
    comparing the parent pid."""
    if _LIBC is None or threading.current_thread() is not threading.main_thread():
        return None
    libc = _LIBC
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn_crewbus(
    args: list[str], env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start `python -m crewbus <args>` with its output in `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "crewbus", *args],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )


def stop_all(
    processes: Sequence[subprocess.Popen[bytes]], timeout_s: float = STOP_TIMEOUT_S
) -> list[subprocess.Popen[bytes]]:
    """SIGTERM everyone at once, wait for them together (one deadline, not one per
    process), then SIGKILL whoever is left. Returns the processes that had to be killed."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    killed: list[subprocess.Popen[bytes]] = []
    for p in processes:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            killed.append(p)
    return killed


def env_with(overrides: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env

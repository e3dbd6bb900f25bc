"""Test helpers: the crewbus command run as a real process (or through its real entry
point in a thread of the test's process, much cheaper on a busy machine), and what its
result says."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import anyio.to_thread
import pytest

from crewbus import cli


async def crewbus(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m crewbus ARGS` as a real process, without the test's CREWBUS_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREWBUS_")}
    with anyio.fail_after(180):
        done = await anyio.run_process([sys.executable, "-m", "crewbus", *args], env=env,
                                       check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


async def crewbus_here(capsys: pytest.CaptureFixture[str], *args: str
                       ) -> subprocess.CompletedProcess[str]:
    """`crewbus ARGS` through `crewbus.cli.main` in a thread (it runs its own event loop),
    its output captured: the command as a user runs it, without a new interpreter."""
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(cli.main, list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["crewbus", *args], code, out, err)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]

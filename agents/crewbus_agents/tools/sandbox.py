"""`python`: run a snippet in a separate, resource-limited process.

The limits are enforced by the operating system, not by Python code the snippet could undo:
the child lowers its own hard rlimits (address space, CPU seconds, file size, optionally
process count) before it reads the snippet, it starts in a new session so a timeout kills
its whole process group, and its environment is built from scratch so no secret of the
parent is inherited. It runs `python -I -S` (no user site, no PYTHON* variables, no
site-packages unless the settings allow them) in the task's workspace.

Where util-linux `unshare` works (as root, or with user namespaces), the snippet also runs
in its own PID namespace with a private /proc: it sees no other process, so it cannot read
the executor's environment (and its API keys) through /proc/<pid>/environ.

Not a jail: the snippet runs as the same OS user as the executor and can read the files
that user can read, and open network connections. Run the executor as a dedicated user
(or in a container) for untrusted work.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, Process

from crewbus_agents.tools.context import ToolContext
from crewbus_agents.tools.errors import SandboxMemoryExceeded, SandboxTimeout
from crewbus_agents.tools.registry import ToolArgs, tool
from crewbus_agents.tools.settings import ToolSettings

MEMORY_EXIT = 86
MEMORY_MARKER = b"crewbus-sandbox: MemoryError"
MAX_SNIPPET_CHARS = 100_000

# Runs in the child before any snippet code: lower the limits, then read and run the snippet.
_BOOTSTRAP = f"""
import os, resource, sys
as_bytes, cpu_s, fsize, nproc = (int(v) for v in sys.argv[1:5])
def _limit(kind, value):
    if value > 0:
        resource.setrlimit(kind, (value, value))
_limit(resource.RLIMIT_AS, as_bytes)
_limit(resource.RLIMIT_FSIZE, fsize)
_limit(resource.RLIMIT_NPROC, nproc)
if cpu_s > 0:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_source = sys.stdin.read()
sys.stdin.close()
sys.stdin = open(os.devnull)
sys.argv = ["<snippet>"]
_code = compile(_source, "<snippet>", "exec")
del _source, _limit, as_bytes, cpu_s, fsize, nproc
try:
    exec(_code, {{"__name__": "__main__", "__builtins__": __builtins__}})
except MemoryError:
    os.write(2, b"\\n{MEMORY_MARKER.decode()}\\n")
    os._exit({MEMORY_EXIT})
"""


@dataclass(frozen=True)
class SandboxResult:
    """What a finished snippet left behind."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    pid: int

    def as_text(self) -> str:
        parts = [self.stdout] if self.stdout else []
        if self.stderr:
            parts.append(f"[stderr]\n{self.stderr}")
        if self.exit_code < 0:
            parts.append(f"[killed by signal {signal.Signals(-self.exit_code).name}]")
        elif self.exit_code:
            parts.append(f"[exit code {self.exit_code}]")
        return "\n".join(parts) if parts else "(no output)"


def sandbox_env(workspace: Path) -> dict[str, str]:
    """The whole environment of a snippet: nothing is copied from the parent."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workspace),
        "TMPDIR": str(workspace),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


def sandbox_command(settings: ToolSettings) -> list[str]:
    flags = ["-I"] if settings.python_site_packages else ["-I", "-S"]
    limits = [
        settings.python_memory_mb * 1024 * 1024,
        math.ceil(settings.python_timeout_s) + 1,
        settings.python_file_size_mb * 1024 * 1024,
        settings.python_max_processes,
    ]
    isolate = process_isolation() if settings.python_isolate_processes else []
    return [*isolate, sys.executable, *flags, "-c", _BOOTSTRAP, *map(str, limits)]


@functools.cache
def process_isolation() -> list[str]:
    """The `unshare` prefix that gives a snippet its own PID namespace and /proc, or [] where
    the kernel or the user may not create one (checked once, by trying)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    base = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child"]
    for prefix in (base, [unshare, "--user", "--map-root-user", *base[1:]]):
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            return prefix
    return []


async def run_python(code: str, workspace: Path, settings: ToolSettings) -> SandboxResult:
    """Run `code` under the settings' limits in `workspace`; raise on timeout or memory."""
    cap = settings.output_limit_chars * 4 + 1
    out, err = bytearray(), bytearray()
    timed_out = False
    proc = await anyio.open_process(
        sandbox_command(settings),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workspace,
        env=sandbox_env(workspace),
        start_new_session=True,
    )
    try:
        with anyio.move_on_after(settings.python_timeout_s) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, proc.stdout, out, cap)
                tg.start_soon(_drain, proc.stderr, err, cap)
                tg.start_soon(_feed_then_reap, proc, code.encode())
        timed_out = scope.cancelled_caught
    finally:
        kill_group(proc.pid)
        with anyio.CancelScope(shield=True):
            await proc.wait()
            await proc.aclose()
    if timed_out:
        raise SandboxTimeout(
            f"the snippet ran longer than {settings.python_timeout_s:g}s and was killed "
            "(with every process it started)"
        )
    exit_code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    if exit_code == -signal.SIGXCPU:
        raise SandboxTimeout("the snippet used up its CPU time limit and was killed")
    if exit_code == MEMORY_EXIT and MEMORY_MARKER in err:
        raise SandboxMemoryExceeded(
            f"the snippet ran out of memory: its limit is {settings.python_memory_mb} MB"
        )
    return SandboxResult(
        exit_code=exit_code,
        stdout=out[: cap - 1].decode(errors="replace"),
        stderr=err[: cap - 1].decode(errors="replace"),
        truncated=len(out) >= cap or len(err) >= cap,
        pid=proc.pid,
    )


async def _feed_then_reap(proc: Process, data: bytes) -> None:
    """Send the snippet, wait for the main process, then kill anything it left running."""
    assert proc.stdin is not None
    try:
        await proc.stdin.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the child died before reading; its exit code tells why
    finally:
        await proc.stdin.aclose()
    await proc.wait()
    kill_group(proc.pid)


async def _drain(stream: ByteReceiveStream | None, into: bytearray, cap: int) -> None:
    """Read the stream to its end, keeping at most `cap` bytes (the rest is discarded)."""
    if stream is None:
        return
    async for chunk in stream:
        room = cap - len(into)
        if room > 0:
            into += chunk[:room]


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class PythonArgs(ToolArgs):
    code: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_SNIPPET_CHARS,
            description="Python 3 source; print() what you want to see",
        ),
    ]


@tool(
    name="python",
    description=(
        "Run a Python 3 snippet in a sandbox and return its printed output. Standard library "
        "only, no network guarantees, limited time and memory; the working directory is the "
        "task's workspace (files written there can be read with read_file)."
    ),
)
async def python_tool(args: PythonArgs, ctx: ToolContext) -> str:
    result = await run_python(args.code, ctx.workspace, ctx.settings)
    return result.as_text()

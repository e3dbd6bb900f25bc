"""`python`: run a snippet in a separate, resource-limited process, jailed where possible.

The limits are enforced by the operating system, not by Python code the snippet could undo:
the child lowers its own hard rlimits (address space, CPU seconds, file size, process count)
before it reads the snippet, it starts in a new session so a timeout kills its whole process
group, and its environment is built from scratch so no secret of the parent is inherited.
It runs `python -I -S` (no user site, no PYTHON* variables, no site-packages unless the
settings allow them) in the task's workspace.

Where bubblewrap works (`python_sandbox` auto or bwrap) the process runs in the jail of
`jail.py`: no network, a read-only system, only the workspace writable, its own PID
namespace, nothing of the service's home, data or environment.

Without it (`none`, or auto on a machine without a usable bwrap) the sandbox is not a jail:
the snippet runs as the executor's OS user, can read what that user can read and open
network connections; a warning says so at start-up and in the tool's description to the
model. Where util-linux `unshare` works, it still gets its own PID namespace and /proc.
"""

from __future__ import annotations

import contextlib
import functools
import logging
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
import anyio.to_thread
import msgspec
from anyio.abc import ByteReceiveStream, Process

from crewbus_agents.tools import jail
from crewbus_agents.tools.context import ToolContext
from crewbus_agents.tools.errors import (
    SandboxMemoryExceeded,
    SandboxTimeout,
    SnippetFailed,
    ToolFailed,
)
from crewbus_agents.tools.registry import Tool, ToolArgs, make_tool, truncate
from crewbus_agents.tools.settings import ToolSettings

log = logging.getLogger(__name__)

MEMORY_EXIT = 86
JAIL_SIGNAL_BASE = 128
MEMORY_MARKER = b"crewbus-sandbox: MemoryError"
MAX_SNIPPET_CHARS = 100_000

# Runs in the child before any snippet code: lower the limits, then read and run the snippet.
_BOOTSTRAP = f"""
import os, resource, sys
as_bytes, cpu_s, fsize, nproc, uid = (int(v) for v in sys.argv[1:6])
workdir = sys.argv[6]
def _limit(kind, value):
    if value > 0:
        resource.setrlimit(kind, (value, value))
_limit(resource.RLIMIT_AS, as_bytes)
_limit(resource.RLIMIT_FSIZE, fsize)
_limit(resource.RLIMIT_NPROC, nproc)
if cpu_s > 0:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
os.chdir(workdir)
os.environ.pop("PWD", None)  # bwrap's, naming where it started
_source = sys.stdin.read()
sys.stdin.close()
sys.stdin = open(os.devnull)
sys.argv = ["<snippet>"]
_code = compile(_source, "<snippet>", "exec")
del _source, _limit, as_bytes, cpu_s, fsize, nproc, uid, workdir
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


@dataclass(frozen=True)
class Sandbox:
    """Where snippets run on this machine: in the jail, or in the fallback (and why)."""

    jailed: bool
    detail: str
    """The bwrap binary, or why the fallback is used."""

    def warning(self) -> str:
        return (f"the python tool's sandbox is NOT a jail ({self.detail}): snippets run as "
                "this service's OS user, can read its files and open network connections")


def choose_sandbox(settings: ToolSettings) -> Sandbox:
    """The jail when the settings and the machine allow it; `bwrap` insists on it."""
    if settings.python_sandbox == "none":
        return Sandbox(False, "CREWBUS_TOOLS_PYTHON_SANDBOX is none")
    check = jail.check_jail(settings.python_site_packages)
    if check.usable:
        return Sandbox(True, check.detail)
    if settings.python_sandbox == "bwrap":
        raise jail.JailUnavailable(check.detail)
    return Sandbox(False, check.detail)


def sandbox_command(settings: ToolSettings, sandbox: Sandbox, workspace: Path) -> list[str]:
    """The snippet's whole command line: the jail (or the PID namespace) and the bootstrap."""
    flags = ["-I"] if settings.python_site_packages else ["-I", "-S"]
    drops = sandbox.jailed and jail.drops_privileges()
    limits = [
        settings.python_memory_mb * 1024 * 1024,
        math.ceil(settings.python_timeout_s) + 1,
        settings.python_file_size_mb * 1024 * 1024,
        settings.python_max_processes if sandbox.jailed else 0,
        settings.python_sandbox_uid if drops else -1,
    ]
    if sandbox.jailed:
        prefix = jail.jail_argv(sandbox.detail, workspace, sandbox_env(workspace),
                                settings.python_site_packages)
        python = jail.interpreter(settings.python_site_packages)
    else:
        prefix = process_isolation() if settings.python_isolate_processes else []
        python = sys.executable
    return [*prefix, python, *flags, "-c", _BOOTSTRAP, *map(str, limits), str(workspace)]


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
    """Run `code` under the settings' limits in `workspace`; raise on timeout, memory, or a
    snippet that failed (a non-zero exit), so the model sees a tool error."""
    try:
        sandbox = choose_sandbox(settings)
    except jail.JailUnavailable as e:
        raise ToolFailed(str(e)) from None
    workspace = workspace.resolve()
    if sandbox.jailed and jail.drops_privileges():
        await anyio.to_thread.run_sync(jail.hand_over, workspace, settings.python_sandbox_uid)
    cap = settings.output_limit_chars * 4 + 1
    out, err = bytearray(), bytearray()
    timed_out = False
    proc = await anyio.open_process(
        sandbox_command(settings, sandbox, workspace),
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
    if sandbox.jailed and JAIL_SIGNAL_BASE < exit_code <= JAIL_SIGNAL_BASE + 64:
        exit_code = JAIL_SIGNAL_BASE - exit_code  # bwrap reports a signal as 128 + its number
    if exit_code == -signal.SIGXCPU:
        raise SandboxTimeout("the snippet used up its CPU time limit and was killed")
    if exit_code == MEMORY_EXIT and MEMORY_MARKER in err:
        raise SandboxMemoryExceeded(
            f"the snippet ran out of memory: its limit is {settings.python_memory_mb} MB"
        )
    result = SandboxResult(
        exit_code=exit_code,
        stdout=out[: cap - 1].decode(errors="replace"),
        stderr=err[: cap - 1].decode(errors="replace"),
        truncated=len(out) >= cap or len(err) >= cap,
        pid=proc.pid,
    )
    if exit_code:
        text, _ = truncate(result.as_text(), settings.output_limit_chars)
        raise SnippetFailed(f"the snippet failed; what it printed:\n{text}")
    return result


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


PYTHON_DESCRIPTION = (
    "Run a Python 3 snippet in a sandbox and return its printed output. Standard library "
    "only, limited time and memory; the working directory is the task's workspace (files "
    "written there can be read with read_file). A snippet that raises or exits non-zero is "
    "a tool error carrying its output."
)
JAILED = " It runs in a jail: no network, a read-only system, only the workspace writable."
UNJAILED = (" WARNING: this sandbox is not a jail here; the snippet could reach the network "
            "and this service's files. Do not run code you would not run on this machine.")


def python_tool_for(settings: ToolSettings) -> Tool:
    """The `python` tool as this machine runs it: its description tells the model whether
    snippets are jailed. Raises `JailUnavailable` when the settings insist on the jail."""
    jailed = choose_sandbox(settings).jailed
    description = PYTHON_DESCRIPTION + (JAILED if jailed else UNJAILED)
    return make_tool(python_tool, name="python", description=description)


def announce_sandbox(settings: ToolSettings) -> Sandbox:
    """Say where snippets will run, once at the executor's start-up: a line in the jail, a
    loud WARNING naming why in the fallback."""
    sandbox = choose_sandbox(settings)
    if sandbox.jailed:
        log.info("the python tool's snippets run in the bubblewrap jail (%s)", sandbox.detail)
    else:
        log.warning("WARNING: %s; install bubblewrap for the jail", sandbox.warning())
    return sandbox


async def python_tool(args: PythonArgs, ctx: ToolContext) -> str:
    result = await run_python(args.code, ctx.workspace, ctx.settings)
    return result.as_text()

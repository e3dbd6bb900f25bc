"""The python tool's sandbox: limits enforced by the OS, tested with real processes.

The common tests run in whatever sandbox this machine gives (the jail where bubblewrap
works); those that look at host process ids run the fallback sandbox (`python_sandbox`
none), whose processes the host can see. The jail's own tests: tests/test_tools_jail.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from crewbus_agents.tools import ToolContext, ToolOutcome, ToolSettings, default_registry
from crewbus_agents.tools.sandbox import process_isolation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_ctx(tmp_path: Path, **settings: object) -> ToolContext:
    s = ToolSettings(workspace_root=str(tmp_path / "ws"), **settings)  # type: ignore[arg-type]
    return ToolContext.create(s, task_id="task1", step_id="s1")


async def run(ctx: ToolContext, code: str) -> ToolOutcome:
    registry = default_registry(ctx.settings)
    return await registry.call("python", json.dumps({"code": code}), ctx)


def gone(pid: int, within_s: float = 30.0) -> bool:
    """True once no live process has this pid; SIGKILL is delivered asynchronously, so wait a
    little. A zombie (dead, awaiting its reaper) counts as gone."""
    deadline = time.monotonic() + within_s
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


async def test_snippet_output_is_returned_and_runs_in_the_task_workspace(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    outcome = await run(ctx, "import os\nprint(os.getcwd())\nopen('made.txt', 'w').write('x')")
    assert outcome.ok, outcome.error
    assert outcome.output.strip() == str(ctx.workspace)
    assert (ctx.workspace / "made.txt").read_text() == "x"


async def test_infinite_loop_times_out_and_its_whole_process_group_is_killed(
    tmp_path: Path,
) -> None:
    # Host pids are checked here, so without the PID namespace (the fallback path).
    ctx = make_ctx(tmp_path, python_timeout_s=1.5, python_isolate_processes=False,
                   python_sandbox="none")
    code = (
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open('pids', 'w').write(f'{os.getpid()} {child.pid}')\n"
        "while True:\n"
        "    pass\n"
    )
    outcome = await run(ctx, code)
    assert outcome.status == "error"
    assert outcome.error_type == "SandboxTimeout"
    assert "longer than 1.5s" in (outcome.error or "")
    pids = [int(p) for p in (ctx.workspace / "pids").read_text().split()]
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids), pids


async def test_processes_left_running_by_a_finished_snippet_are_killed(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, python_isolate_processes=False, python_sandbox="none")
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(child.pid)\n"
    )
    outcome = await run(ctx, code)
    assert outcome.ok, outcome.error
    assert gone(int(outcome.output))


@pytest.mark.parametrize(
    "bomb",
    ["x = bytearray(2 * 1024**3)", "chunks = []\nwhile True:\n    chunks.append(' ' * 10**7)"],
)
async def test_memory_bomb_ends_in_a_clear_memory_error(tmp_path: Path, bomb: str) -> None:
    ctx = make_ctx(tmp_path, python_memory_mb=256)
    outcome = await run(ctx, bomb)
    assert outcome.status == "error"
    assert outcome.error_type == "SandboxMemoryExceeded"
    assert "out of memory" in (outcome.error or "") and "256 MB" in (outcome.error or "")


async def test_snippet_cannot_see_the_parents_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWBUS_FAKE_API_TOKEN", "fake-secret-value-8d1f")
    ctx = make_ctx(tmp_path)
    outcome = await run(ctx, "import os\nprint(dict(os.environ))")
    assert outcome.ok, outcome.error
    assert "fake-secret-value-8d1f" not in outcome.output
    assert "CREWBUS_FAKE_API_TOKEN" not in outcome.output
    env = eval(outcome.output)  # our own test output: a dict literal printed by the snippet
    assert set(env) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "LC_CTYPE",
    }
    assert env["HOME"] == str(ctx.workspace)


async def test_long_output_is_truncated_with_a_note(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, output_limit_chars=1000)
    outcome = await run(ctx, "print('x' * 50_000)")
    assert outcome.ok and outcome.truncated
    assert outcome.output.startswith("x" * 1000)
    assert "truncated" in outcome.output
    assert len(outcome.output) < 1100


async def test_snippet_exception_is_a_tool_error_with_its_output_and_exit_code(
    tmp_path: Path,
) -> None:
    outcome = await run(make_ctx(tmp_path), "print('before')\nraise ValueError('boom')")
    assert outcome.status == "error" and outcome.error_type == "SnippetFailed"
    text = outcome.for_model()
    assert "before" in text and "ValueError: boom" in text and "[exit code 1]" in text


async def test_file_size_limit_stops_huge_writes(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, python_file_size_mb=1)
    outcome = await run(ctx, "open('big', 'wb').write(b'x' * (2 * 1024 * 1024))")
    assert outcome.error_type == "SnippetFailed" and "File too large" in (outcome.error or "")
    assert (ctx.workspace / "big").stat().st_size <= 1024 * 1024


async def test_outer_tool_timeout_also_kills_the_snippets_process_group(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, python_timeout_s=30, tool_timeout_s=1,
                   python_isolate_processes=False, python_sandbox="none")
    code = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(60)"
    outcome = await run(ctx, code)
    assert "did not finish within 1s" in (outcome.error or "")
    assert gone(int((ctx.workspace / "pid").read_text()))


def _host_processes_running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not process_isolation(), reason="no PID namespaces on this machine")
async def test_an_isolated_snippet_sees_no_other_process_and_cannot_read_their_environment(
    tmp_path: Path,
) -> None:
    ctx = make_ctx(tmp_path, python_sandbox="none")
    executor_pid = os.getpid()
    code = (
        "import os\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        f"print(open('/proc/{executor_pid}/environ').read())\n"
    )
    outcome = await run(ctx, code)
    assert outcome.error_type == "SnippetFailed"
    assert "FileNotFoundError" in (outcome.error or "")  # the executor does not exist in there
    assert "\n[1]\n" in (outcome.error or "")


@pytest.mark.skipif(not process_isolation(), reason="no PID namespaces on this machine")
async def test_a_timed_out_isolated_snippet_leaves_no_process_on_the_host(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, python_timeout_s=1.5, python_sandbox="none")
    marker = "time.sleep(61.2345)"
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; {marker}'])\n"
        "while True:\n    pass\n"
    )
    outcome = await run(ctx, code)
    assert outcome.status == "error" and "longer than" in (outcome.error or "")
    deadline = time.monotonic() + 30
    while _host_processes_running(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_processes_running(marker) == []

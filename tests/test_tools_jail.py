"""The python tool's jail (bubblewrap), attacked the way a hostile snippet would: each attempt
is contained, reaches the model as a tool error, and the next call still works."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

import pytest

from crewbus_agents.tools import (
    JailUnavailable,
    ToolContext,
    ToolOutcome,
    ToolSettings,
    default_registry,
)
from crewbus_agents.tools.jail import check_jail
from crewbus_agents.tools.sandbox import announce_sandbox

pytestmark = pytest.mark.anyio

JAIL = check_jail()
needs_jail = pytest.mark.skipif(not JAIL.usable, reason=f"no bubblewrap jail here: {JAIL.detail}")
SECRET = "fake-nats-seed-SUAM7Q2XZ"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The service's data dir, holding NATS credentials and (by default) the workspaces."""
    data = tmp_path / "data"
    (data / "creds").mkdir(parents=True)
    (data / "creds" / "executor.creds").write_text(f"-----BEGIN USER NKEY SEED-----\n{SECRET}\n")
    monkeypatch.setenv("CREWBUS_DATA_DIR", str(data))
    return data


def make_ctx(task_id: str = "task1", **settings: object) -> ToolContext:
    values: dict[str, object] = {"python_sandbox": "bwrap", "python_timeout_s": 5, **settings}
    s = ToolSettings(**values)  # type: ignore[arg-type]
    return ToolContext.create(s, task_id=task_id, step_id="s1")


async def run(ctx: ToolContext, code: str) -> ToolOutcome:
    return await default_registry(ctx.settings).call("python", json.dumps({"code": code}), ctx)


async def refused(ctx: ToolContext, code: str) -> str:
    """What the model reads after `code` was stopped by the jail; the same executor then runs
    a harmless snippet as usual."""
    outcome = await run(ctx, code)
    assert outcome.status == "error", outcome.output
    after = await run(ctx, "print(6 * 7)")
    assert after.ok and after.output.strip() == "42", after.error
    return outcome.for_model()


@needs_jail
async def test_the_nats_credentials_in_the_data_dir_and_home_cannot_be_read(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    (home / ".config" / "nats").mkdir(parents=True)
    (home / ".config" / "nats" / "user.creds").write_text(SECRET)
    monkeypatch.setenv("HOME", str(home))
    ctx = make_ctx()
    assert ctx.workspace.is_relative_to(data_dir)  # the default layout: workspaces in the data dir
    targets = [data_dir / "creds" / "executor.creds", "../../creds/executor.creds",
               home / ".config" / "nats" / "user.creds"]
    code = (f"for path in {[str(t) for t in targets]!r}:\n"
            "    try:\n        print(open(path).read())\n"
            "    except OSError as e:\n        print(type(e).__name__, path)\n"
            f"open({str(targets[0])!r})\n")
    answer = await refused(ctx, code)
    assert SECRET not in answer
    assert answer.count("FileNotFoundError") == 4, answer  # three tries and the last open


@needs_jail
async def test_a_socket_to_a_listening_port_on_the_host_cannot_be_opened(data_dir: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                "print('connected')")
        answer = await refused(make_ctx(), code)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever knocked
    assert "connected" not in answer
    assert "ConnectionRefusedError" in answer or "Network is unreachable" in answer, answer


@needs_jail
async def test_nothing_outside_the_workspace_can_be_written(data_dir: Path) -> None:
    ctx = make_ctx()
    other = make_ctx("task2").workspace
    targets = [other / "planted.txt", data_dir / "planted.txt", Path("/tmp/crewbus-planted.txt"),
               Path("/usr/crewbus-planted.txt"), Path("/crewbus-planted.txt")]
    code = (f"for path in {[str(t) for t in targets]!r}:\n"
            "    try:\n        open(path, 'w').write('x')\n        print('WROTE', path)\n"
            "    except OSError as e:\n        print(type(e).__name__, path)\n"
            "open('mine.txt', 'w').write('ok')\n"
            f"open({str(targets[0])!r}, 'w')\n")
    try:
        answer = await refused(ctx, code)
        assert "WROTE" not in answer
        assert not any(t.exists() for t in targets)
    finally:  # a broken jail must not leave files in the host's directories
        for t in targets:
            t.unlink(missing_ok=True)
    assert (ctx.workspace / "mine.txt").read_text() == "ok"  # its own workspace is writable


def _pid_namespace_members(namespace: str) -> list[int]:
    """Host pids of the processes in the PID namespace `namespace` (`pid:[inode]`)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == namespace:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


@needs_jail
async def test_a_fork_bomb_is_bounded_by_the_process_limit_and_leaves_nothing_behind(
    data_dir: Path,
) -> None:
    ctx = make_ctx(python_max_processes=12)
    code = (
        "import os, time\n"
        "print(os.readlink('/proc/self/ns/pid'), flush=True)\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(10_000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "finally:\n"
        "    print('forked', n, flush=True)\n"
    )
    answer = await refused(ctx, code)
    assert "BlockingIOError" in answer, answer
    forked = int(answer.split("forked ")[1].split()[0])
    assert 0 < forked < 12
    namespace = next(line for line in answer.splitlines() if line.startswith("pid:["))
    deadline = time.monotonic() + 30
    while _pid_namespace_members(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pid_namespace_members(namespace) == []  # the sleeping children died with the jail


@needs_jail
async def test_a_memory_bomb_hits_the_memory_limit(data_dir: Path) -> None:
    ctx = make_ctx(python_memory_mb=128)
    answer = await refused(ctx, "chunks = []\nwhile True:\n    chunks.append(' ' * 10**7)")
    assert "SandboxMemoryExceeded" in answer and "128 MB" in answer


@needs_jail
async def test_no_environment_is_readable_not_pid_1s_nor_the_executors(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CREWBUS_FAKE_API_TOKEN", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "try:\n    print(open('/proc/1/environ').read())\n"
        "except OSError as e:\n    print(type(e).__name__, '/proc/1/environ')\n"
        f"print(open('/proc/{os.getpid()}/environ').read())\n"
    )
    answer = await refused(make_ctx(), code)
    assert SECRET not in answer
    assert "CREWBUS_" not in answer and "OPENAI_" not in answer
    assert "FileNotFoundError" in answer  # the executor's pid does not exist in the jail


@needs_jail
async def test_the_model_is_told_the_snippet_is_jailed(data_dir: Path) -> None:
    description = default_registry(make_ctx().settings).get("python").description
    assert "jail" in description and "WARNING" not in description


async def test_without_bubblewrap_auto_falls_back_loudly_and_bwrap_refuses_to_start(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    empty = tmp_path / "no-bwrap"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with caplog.at_level(logging.WARNING):
        announce_sandbox(ToolSettings(python_sandbox="auto"))  # the executor's start-up
    registry = default_registry(ToolSettings(python_sandbox="auto"))
    assert "WARNING" in registry.get("python").description
    assert any("NOT a jail" in r.getMessage() and "not installed" in r.getMessage()
               for r in caplog.records)
    ctx = make_ctx(python_sandbox="auto")
    outcome = await registry.call("python", json.dumps({"code": "print(6 * 7)"}), ctx)
    assert outcome.ok and outcome.output.strip() == "42"  # the fallback still runs snippets
    with pytest.raises(JailUnavailable, match="not installed"):
        default_registry(ToolSettings(python_sandbox="bwrap"))


@needs_jail
@pytest.mark.skipif(os.geteuid() != 0, reason="the workspace is handed over only by root")
async def test_handing_the_workspace_over_never_follows_a_link_out_of_it(
    data_dir: Path, tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "root-only.txt").write_text("x")
    ctx = make_ctx()
    (ctx.workspace / "sub").mkdir()
    (ctx.workspace / "sub" / "link").symlink_to(outside)
    (ctx.workspace / "file-link").symlink_to(outside / "root-only.txt")
    outcome = await run(ctx, "open('sub/made.txt', 'w').write('ok')")
    assert outcome.ok, outcome.error
    assert (ctx.workspace / "sub" / "made.txt").stat().st_uid == ctx.settings.python_sandbox_uid
    assert outside.stat().st_uid == 0 and (outside / "root-only.txt").stat().st_uid == 0

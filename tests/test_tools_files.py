"""read_file / write_file: inside the task workspace only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crewbus_agents.tools import ToolContext, ToolOutcome, ToolSettings, default_registry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    settings = ToolSettings(workspace_root=str(tmp_path / "ws"), file_max_bytes=1000)
    return ToolContext.create(settings, task_id="task-files", step_id="s1")


async def call(ctx: ToolContext, name: str, **args: str) -> ToolOutcome:
    return await default_registry(ctx.settings).call(name, json.dumps(args), ctx)


async def test_written_file_can_be_read_back_from_a_subdirectory(ctx: ToolContext) -> None:
    wrote = await call(ctx, "write_file", path="notes/a.txt", content="héllo")
    assert wrote.ok, wrote.error
    assert (ctx.workspace / "notes" / "a.txt").read_text() == "héllo"
    read = await call(ctx, "read_file", path="./notes/a.txt")
    assert read.output == "héllo"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../x", "'..'"),
        ("notes/../../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("/tmp/x", "absolute"),
    ],
)
async def test_paths_that_leave_the_workspace_are_refused(
    ctx: ToolContext, path: str, why: str
) -> None:
    for outcome in (
        await call(ctx, "read_file", path=path),
        await call(ctx, "write_file", path=path, content="x"),
    ):
        assert outcome.status == "error"
        assert outcome.error_type == "PathOutsideWorkspace"
        assert why in (outcome.error or "")
    assert not (ctx.workspace.parent / "x").exists()


async def test_symlinks_out_of_the_workspace_are_refused(ctx: ToolContext, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not read")
    os.symlink(outside, ctx.workspace / "dir_link")
    os.symlink(outside / "secret.txt", ctx.workspace / "file_link")
    for path in ("dir_link/secret.txt", "file_link"):
        outcome = await call(ctx, "read_file", path=path)
        assert outcome.error_type == "PathOutsideWorkspace", outcome
        assert "symbolic link" in (outcome.error or "")
    for path in ("dir_link/new.txt", "file_link"):
        outcome = await call(ctx, "write_file", path=path, content="overwritten")
        assert outcome.error_type == "PathOutsideWorkspace", outcome
    assert (outside / "secret.txt").read_text() == "do not read"
    assert not (outside / "new.txt").exists()


async def test_missing_file_and_directory_get_clear_errors(ctx: ToolContext) -> None:
    missing = await call(ctx, "read_file", path="nope.txt")
    assert "does not exist" in (missing.error or "")
    (ctx.workspace / "d").mkdir()
    directory = await call(ctx, "read_file", path="d")
    assert "not a regular file" in (directory.error or "")


async def test_file_size_limits_apply_to_reads_and_writes(ctx: ToolContext) -> None:
    too_big = await call(ctx, "write_file", path="big.txt", content="x" * 1001)
    assert "limit is 1000" in (too_big.error or "")
    (ctx.workspace / "big.txt").write_text("y" * 5000)
    read = await call(ctx, "read_file", path="big.txt")
    assert read.output.startswith("y" * 1000)
    assert "longer than 1000 bytes" in read.output


def test_each_task_gets_its_own_workspace_and_odd_ids_are_hashed(tmp_path: Path) -> None:
    settings = ToolSettings(workspace_root=str(tmp_path))
    a = ToolContext.create(settings, task_id="a", step_id="s").workspace
    b = ToolContext.create(settings, task_id="b", step_id="s").workspace
    odd = ToolContext.create(settings, task_id="../../etc", step_id="s").workspace
    assert a != b and a.parent == b.parent == odd.parent == tmp_path
    assert odd.name.startswith("t-")


def test_a_tasks_workspace_is_made_once_with_mode_0700(tmp_path: Path) -> None:
    settings = ToolSettings(workspace_root=str(tmp_path / "root"))
    first = ToolContext.create(settings, task_id="t-once", step_id="s1").workspace
    assert first.is_dir() and first.stat().st_mode & 0o777 == 0o700
    (first / "kept.txt").write_text("from s1")
    again = ToolContext.create(settings, task_id="t-once", step_id="s2", round=2)
    assert again.workspace == first and (first / "kept.txt").read_text() == "from s1"
    other = ToolContext.create(settings, task_id="t-other", step_id="s1").workspace
    assert other.is_dir() and other.stat().st_mode & 0o777 == 0o700

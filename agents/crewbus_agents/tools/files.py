"""`read_file` / `write_file`: files inside the task's workspace and nowhere else.

A path must be relative and free of `..`; it is then opened one component at a time from
the workspace directory with O_NOFOLLOW, so a symbolic link (pointing out or in, created
before or during the call) is refused rather than followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Annotated

import msgspec

from crewbus_agents.tools.context import ToolContext
from crewbus_agents.tools.errors import PathOutsideWorkspace, ToolFailed
from crewbus_agents.tools.registry import ToolArgs, tool

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _path(description: str) -> msgspec.Meta:
    return msgspec.Meta(min_length=1, max_length=1024, description=description)


def split_workspace_path(path: str) -> list[str]:
    """The components of a workspace-relative path, or PathOutsideWorkspace saying why not."""
    if "\x00" in path:
        raise PathOutsideWorkspace("the path contains a NUL character")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise PathOutsideWorkspace(
            f"{path!r} is absolute; give a path relative to the task workspace"
        )
    parts = [p for p in pure.parts if p != "."]
    if ".." in parts:
        raise PathOutsideWorkspace(f"{path!r} uses '..'; paths must stay inside the task workspace")
    if not parts:
        raise PathOutsideWorkspace(f"{path!r} names the workspace itself, not a file")
    return parts


@contextmanager
def _open_parent(workspace: Path, parts: list[str], create: bool) -> Iterator[int]:
    """A directory fd for the parent of `parts`, never crossing a symbolic link."""
    fd = os.open(workspace, _DIR_FLAGS)
    try:
        for name in parts[:-1]:
            if create:
                with suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=fd)
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise _explain(e, "/".join(parts), _is_link(name, fd)) from None
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _explain(e: OSError, path: str, is_link: bool = False) -> ToolFailed:
    if is_link or e.errno in (errno.ELOOP, errno.EMLINK):
        return PathOutsideWorkspace(
            f"{path!r} goes through a symbolic link; links are not followed in the workspace"
        )
    if e.errno == errno.ENOENT:
        return ToolFailed(f"{path!r} does not exist in the task workspace")
    if e.errno == errno.ENOTDIR:
        return ToolFailed(f"{path!r}: a parent of it is not a directory")
    if e.errno == errno.EISDIR:
        return ToolFailed(f"{path!r} is a directory")
    return ToolFailed(f"{path!r}: {os.strerror(e.errno or 0)}")


def read_workspace_file(workspace: Path, path: str, max_bytes: int) -> tuple[bytes, bool]:
    """Up to `max_bytes` of a regular file in the workspace, and whether there was more."""
    parts = split_workspace_path(path)
    with _open_parent(workspace, parts, create=False) as parent:
        try:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
        except OSError as e:
            raise _explain(e, path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolFailed(f"{path!r} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    return data[:max_bytes], len(data) > max_bytes


def write_workspace_file(workspace: Path, path: str, data: bytes) -> None:
    """Create or replace a regular file in the workspace, creating parent directories."""
    parts = split_workspace_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with _open_parent(workspace, parts, create=True) as parent:
        try:
            fd = os.open(parts[-1], flags, 0o600, dir_fd=parent)
        except OSError as e:
            raise _explain(e, path) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class ReadFileArgs(ToolArgs):
    path: Annotated[str, _path("Path relative to the task workspace, e.g. notes/summary.txt")]


class WriteFileArgs(ToolArgs):
    path: Annotated[str, _path("Path relative to the task workspace; parents are created")]
    content: Annotated[str, msgspec.Meta(description="The whole new content (UTF-8 text)")]


@tool(
    name="read_file",
    description="Read a UTF-8 text file from the task's workspace (a relative path).",
    read_only=True,
)
def read_file(args: ReadFileArgs, ctx: ToolContext) -> str:
    limit = ctx.settings.file_max_bytes
    data, more = read_workspace_file(ctx.workspace, args.path, limit)
    text = data.decode(errors="replace")
    return f"{text}\n…[file longer than {limit} bytes; the rest was not read]" if more else text


@tool(
    name="write_file",
    description=(
        "Write a UTF-8 text file in the task's workspace (a relative path), replacing it if it "
        "exists."
    ),
)
def write_file(args: WriteFileArgs, ctx: ToolContext) -> str:
    data = args.content.encode()
    if len(data) > ctx.settings.file_max_bytes:
        raise ToolFailed(
            f"content is {len(data)} bytes; the limit is {ctx.settings.file_max_bytes}"
        )
    write_workspace_file(ctx.workspace, args.path, data)
    return f"wrote {len(data)} bytes to {args.path}"

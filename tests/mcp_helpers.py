"""Test helpers for MCP: servers files for the real reference servers, a second Python
with the 1.x SDK for servers of the handshake era, and small SDK-built servers of our own
run as real processes (stdio or streamable HTTP on loopback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.stack import PROCESS_START_S, wait_for_port

REPO = Path(__file__).resolve().parents[1]
LEGACY_PYTHON = Path(os.environ.get("CREWBUS_TEST_MCP1_PYTHON",
                                    REPO / ".venv-mcp1" / "bin" / "python"))
"""A Python with `mcp<2` and `mcp-server-time==2025.9.25` (`.ci/run` makes it): servers
of the `initialize`-handshake era, which the 2.x client must still talk to."""

def time_server(python: str | Path = sys.executable, **more: Any) -> dict[str, Any]:
    """The reference time server (`mcp-server-time`), stdio, in UTC."""
    return {"command": str(python), "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
            **more}


def git_server(repo: Path, **more: Any) -> dict[str, Any]:
    """The reference git server (`mcp-server-git`), stdio, confined to `repo`."""
    return {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository",
                                                 str(repo)], **more}


def write_servers(path: Path, servers: dict[str, dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return path


def make_git_repo(path: Path) -> Path:
    """A repository with one commit and one staged change."""
    path.mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=path, check=True,  # noqa: E731
                                    capture_output=True)
    run("init", "-q")
    run("config", "user.email", "t@example.invalid")
    run("config", "user.name", "test")
    (path / "a.txt").write_text("one\n")
    run("add", "a.txt")
    run("commit", "-q", "-m", "first")
    (path / "a.txt").write_text("two\n")
    run("add", "a.txt")
    return path


def staged(repo: Path) -> str:
    return subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


TEST_SERVER = textwrap.dedent('''
    """A small MCP server built with the SDK, for the tests: counts its calls in a file."""
    import os, sys, time
    from pathlib import Path
    from mcp.server.mcpserver import MCPServer, Context
    from mcp_types import ToolAnnotations

    ledger = Path(sys.argv[2])
    server = MCPServer("crewbus-test", subscriptions=None)

    def note(line):
        with ledger.open("a") as f:
            f.write(line + "\\n")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str, times: int = 1) -> str:
        """Repeat `text`."""
        note(f"echo {text}")
        return " ".join([text] * times)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def header(name: str, ctx: Context) -> str:
        """The value of a header of this HTTP request."""
        return (ctx.headers or {}).get(name.lower(), "(none)")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def pid() -> str:
        """This server's process id."""
        return str(os.getpid())

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def fail(reason: str) -> str:
        """Always reports an error."""
        raise ValueError(reason)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def die() -> str:
        """Ends this server's process in the middle of the call."""
        note("die")
        os._exit(3)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def sleep(seconds: float) -> str:
        """Sleeps."""
        time.sleep(seconds)
        return "slept"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def grow(name: str, ctx: Context) -> str:
        """Adds a tool called `name`, and says so to listening clients."""
        server.add_tool(lambda: name, name=name, description="added later",
                        annotations=ToolAnnotations(read_only_hint=True))
        await ctx.notify_tools_changed()
        try:
            await ctx.session.send_tool_list_changed()
        except Exception:
            pass
        return "grown"

    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
''')


def write_test_server(directory: Path) -> Path:
    path = directory / "test_mcp_server.py"
    path.write_text(TEST_SERVER, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_http_server(script: Path, port: int, ledger: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(script), str(port), str(ledger)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def wait_for_http(port: int, child: subprocess.Popen[bytes],
                        timeout_s: float = PROCESS_START_S) -> None:
    """Until the test MCP server accepts connections (`tests.stack.wait_for_port`)."""
    await wait_for_port(port, child, timeout_s)

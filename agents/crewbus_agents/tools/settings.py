"""ToolSettings: every limit of the tool layer in one Struct, read from `CREWBUS_TOOLS_*`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgspec

from crewbus.settings import data_dir, load

ENV_PREFIX = "CREWBUS_TOOLS_"
DEFAULT_APPROVAL = frozenset({"python", "write_file", "http_get"})


class ToolSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True,
                   dict=True):
    """Limits and policy for tools. Lists and sets are given as JSON in the environment.

    `dict=True` only gives instances a `__dict__` for the cached workspace root."""

    env_shown_defaults: ClassVar[dict[str, str]] = {
        "workspace_root": "`$CREWBUS_DATA_DIR/workspaces`"}

    workspace_root: str = ""
    """Parent of the per-task workspaces; empty means `<data dir>/workspaces`."""
    python_timeout_s: float = 10.0
    """Wall-clock limit of one `python` snippet."""
    python_memory_mb: int = 256
    """Address-space limit (RLIMIT_AS) of the snippet's process."""
    python_file_size_mb: int = 16
    """Largest file a snippet may write (RLIMIT_FSIZE)."""
    python_sandbox: Literal["auto", "bwrap", "none"] = "auto"
    """Where snippets run: `bwrap`, the bubblewrap jail (no network, read-only system, only
    the workspace writable; the executor refuses to start without it); `none`, the
    fallback sandbox (limits only, not a jail); `auto`, the jail where bwrap works here,
    else the fallback with a warning in the log and in the tool's description."""
    python_sandbox_uid: int = 65534
    """The user (and group) a jailed snippet runs as when the executor runs as root."""
    python_max_processes: int = 64
    """RLIMIT_NPROC of a jailed snippet, which bounds a fork bomb. In the jail it counts the
    jail's own processes (its user namespace), or those of `python_sandbox_uid` when the
    executor is root; 0 turns it off. Not applied by the fallback sandbox, where it would
    count every process of the executor's user."""
    python_isolate_processes: bool = True
    """Fallback sandbox only (the jail always has its own): run snippets in their own PID
    namespace with a private /proc (util-linux `unshare`), so a snippet cannot see other
    processes, nor read their environment through /proc. Used when `unshare` works on this
    machine (as root, or with user namespaces)."""
    python_site_packages: bool = False
    """Let snippets import installed packages (drops `-S`); the standard library otherwise."""
    output_limit_chars: int = 8000
    """A tool's answer to the model is cut to this many characters."""
    file_max_bytes: int = 1_000_000
    """Largest file `read_file` reads or `write_file` writes."""
    http_allowlist: list[str] = []
    """Hosts `http_get` may fetch (`example.com`, `*.example.com`); empty turns it off."""
    http_timeout_s: float = 10.0
    """Timeout of one `http_get`."""
    http_max_bytes: int = 1_000_000
    """Largest response body `http_get` reads."""
    requires_approval: frozenset[str] = DEFAULT_APPROVAL
    """Tools whose calls wait for a human's approval."""
    max_tool_calls: int = 8
    """Tool calls allowed in one step before the loop stops."""
    tool_timeout_s: float = 60.0
    """Wall-clock bound on any single tool call."""
    redact_patterns: list[str] = []
    """Extra regular expressions whose matches are redacted from traces and events."""

    def workspace_root_path(self) -> Path:
        return self._workspace_root

    @functools.cached_property
    def _workspace_root(self) -> Path:
        """Resolved once per settings object: the default reads the data dir from the
        environment (the whole settings load), which was most of a tool step's setup."""
        if self.workspace_root:
            return Path(self.workspace_root).resolve()
        return data_dir() / "workspaces"


def load_tool_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> ToolSettings:
    """Build ToolSettings from `CREWBUS_TOOLS_<FIELD>` variables; bad values fail loudly."""
    return load(ToolSettings, prefix=ENV_PREFIX, env=env, **overrides)

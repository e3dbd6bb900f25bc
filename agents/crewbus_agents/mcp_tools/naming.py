"""Names the model sees for MCP tools: `<server>__<tool>`, valid for the model's API.

OpenAI-compatible APIs accept function names matching `^[A-Za-z0-9_-]{1,64}$`. A server's
name is checked when the file is loaded; a tool name the server chose may contain other
characters (`files.read`) or be long, so it is made valid here, deterministically: each
other character becomes `_`, and a name still too long is cut and given a short hash of
the original so two long names never meet.
"""

from __future__ import annotations

import hashlib
import re

from crewbus_agents.tools.registry import TOOL_NAME

SEPARATOR = "__"
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_MAX = 64


def model_name(server: str, tool: str) -> str:
    """The namespaced name of `tool` of `server`, valid for the model's API."""
    name = f"{server}{SEPARATOR}{_INVALID.sub('_', tool) or '_'}"
    if len(name) > _MAX:
        digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
        name = f"{name[: _MAX - 9]}_{digest}"
    assert TOOL_NAME.match(name), name
    return name

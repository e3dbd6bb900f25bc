"""The registry the executor starts from: built-in tools filtered by the settings."""

from __future__ import annotations

from crewbus_agents.tools.calculator import calculator
from crewbus_agents.tools.files import read_file, write_file
from crewbus_agents.tools.memory import MemorySearchFn, memory_search_tool
from crewbus_agents.tools.registry import ToolRegistry
from crewbus_agents.tools.sandbox import python_tool_for
from crewbus_agents.tools.settings import ToolSettings
from crewbus_agents.tools.web import http_get


def default_registry(settings: ToolSettings, memory: MemorySearchFn | None = None) -> ToolRegistry:
    """calculator, python, read_file, write_file; http_get when hosts are allowed;
    memory_search when a memory client is given. Raises `JailUnavailable` when the settings
    require the python tool's jail and this machine cannot run it."""
    registry = ToolRegistry(
        [calculator, python_tool_for(settings), read_file, write_file],
        approval_required_for=settings.requires_approval,
    )
    if settings.http_allowlist:
        registry.register(http_get)
    if memory is not None:
        registry.register(memory_search_tool(memory))
    return registry

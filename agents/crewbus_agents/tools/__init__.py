"""crewbus tools: typed tools for the executor, their sandbox, and the tool-calling loop.

Write a tool as one typed function taking a msgspec Struct, register it, and run
`run_tool_loop` with a model. See docs/tools.md.
"""

from crewbus_agents.tools.builtin import default_registry
from crewbus_agents.tools.chat import ChatFn, ChatMessage, ChatReply, ToolCallRequest
from crewbus_agents.tools.context import ToolContext, ToolOutcome, ToolResult, workspace_for
from crewbus_agents.tools.errors import (
    HostNotAllowed,
    PathOutsideWorkspace,
    SandboxMemoryExceeded,
    SandboxTimeout,
    SnippetFailed,
    ToolArgumentsInvalid,
    ToolDefinitionError,
    ToolError,
    ToolFailed,
    ToolUnavailable,
    UnknownTool,
)
from crewbus_agents.tools.hooks import Decision, LocalToolHooks, PendingToolCall, ToolHooks
from crewbus_agents.tools.jail import JailUnavailable
from crewbus_agents.tools.loop import (
    ToolLoopLimits,
    ToolLoopResult,
    chat_turn_key,
    run_tool_loop,
    tool_call_key,
)
from crewbus_agents.tools.memory import MemoryHit, MemorySearchFn, memory_search_tool
from crewbus_agents.tools.redact import Redactor
from crewbus_agents.tools.registry import (
    Tool,
    ToolArgs,
    ToolRegistry,
    ToolSource,
    make_tool,
    tool,
)
from crewbus_agents.tools.settings import ToolSettings, load_tool_settings

__all__ = [
    "ChatFn",
    "ChatMessage",
    "ChatReply",
    "Decision",
    "HostNotAllowed",
    "JailUnavailable",
    "LocalToolHooks",
    "MemoryHit",
    "MemorySearchFn",
    "PathOutsideWorkspace",
    "PendingToolCall",
    "Redactor",
    "SandboxMemoryExceeded",
    "SandboxTimeout",
    "SnippetFailed",
    "Tool",
    "ToolArgs",
    "ToolArgumentsInvalid",
    "ToolCallRequest",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolFailed",
    "ToolHooks",
    "ToolLoopLimits",
    "ToolLoopResult",
    "ToolOutcome",
    "ToolRegistry",
    "ToolResult",
    "ToolSettings",
    "ToolSource",
    "ToolUnavailable",
    "UnknownTool",
    "chat_turn_key",
    "default_registry",
    "load_tool_settings",
    "make_tool",
    "memory_search_tool",
    "run_tool_loop",
    "tool",
    "tool_call_key",
    "workspace_for",
]

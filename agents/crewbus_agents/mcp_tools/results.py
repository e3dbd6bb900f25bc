"""An MCP `CallToolResult` as a crewbus tool result: the text the model reads, and the
structured content kept beside it in the record.

Text blocks are joined; other blocks (images, audio, resources) are named, since the
model's tool message is text. A result with only structured content is shown as its
JSON. `isError` becomes `McpToolError`, so the model reads the tool's own error message.
"""

from __future__ import annotations

import json

import mcp_types as types

from crewbus_agents.tools.context import ToolResult
from crewbus_agents.tools.errors import ToolFailed


class McpToolError(ToolFailed):
    """The MCP tool ran and reported an error (`isError: true`); the model reads it."""


def as_tool_result(server: str, result: types.CallToolResult) -> ToolResult:
    text = "\n".join(_block_text(block) for block in result.content)
    if result.is_error:
        raise McpToolError(text or f"the tool on MCP server {server!r} reported an error")
    structured = result.structured_content
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False)
    return ToolResult(text=text, structured=structured)


def _block_text(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.EmbeddedResource):
        inner = block.resource
        if isinstance(inner, types.TextResourceContents):
            return inner.text
        return f"[resource {inner.uri}]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link {block.uri}]"
    return f"[{block.type} content, {getattr(block, 'mime_type', '')}]"

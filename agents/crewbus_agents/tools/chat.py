"""The model's side of the tool loop, independent of any client library.

`ChatFn` is what the loop calls for each model turn; the LLM adapter provides one over
`openai.AsyncOpenAI`, tests provide a scripted one. Messages are OpenAI chat messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from crewbus_contracts.tasks import TokenUsage

ChatMessage = dict[str, Any]
OpenAITool = dict[str, Any]

ChatFn = Callable[[list[ChatMessage], list[OpenAITool]], Awaitable["ChatReply"]]
"""`await chat(messages, tools)`: one model turn. An empty `tools` list means: answer now,
without tools (the adapter then omits `tools` from the request)."""


class ToolCallRequest(msgspec.Struct, kw_only=True, frozen=True):
    """A tool call as the model asked for it (OpenAI `tool_calls[i]`)."""

    id: str
    name: str
    arguments: str


class ChatReply(msgspec.Struct, kw_only=True, frozen=True):
    """One model turn: an answer, tool calls, or both. Recorded for replay, so serializable."""

    content: str | None = None
    tool_calls: list[ToolCallRequest] = []
    usage: TokenUsage = msgspec.field(default_factory=TokenUsage)


def assistant_message(reply: ChatReply) -> ChatMessage:
    """The model's turn as it goes back into the conversation."""
    message: ChatMessage = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return message


def tool_message(call_id: str, content: str) -> ChatMessage:
    """A tool's answer to one call."""
    return {"role": "tool", "tool_call_id": call_id, "content": content}

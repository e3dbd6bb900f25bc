"""The chat-completions reply as msgspec Structs: only the fields crewbus reads.

The non-streamed call posts a body encoded once by msgspec through the openai client's
own `post` (its auth, retries, timeouts and error types stay) and decodes the reply here,
skipping the SDK's per-call request transform (it walks `messages` and the JSON Schema)
and its pydantic reply models: together most of the CPU of a call (docs/benchmarks.md).
Unknown fields are ignored, so any OpenAI-compatible server's extras pass.
"""

from __future__ import annotations

import msgspec


class FunctionCall(msgspec.Struct):
    name: str = ""
    arguments: str = ""


class ToolCallPart(msgspec.Struct):
    id: str = ""
    function: FunctionCall | None = None


class ReplyMessage(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ToolCallPart] | None = None


class Choice(msgspec.Struct):
    message: ReplyMessage = msgspec.field(default_factory=ReplyMessage)
    finish_reason: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0


class ChatCompletionReply(msgspec.Struct):
    model: str = ""
    choices: list[Choice] = msgspec.field(default_factory=list)
    usage: Usage | None = None


request_encoder = msgspec.json.Encoder()
reply_decoder = msgspec.json.Decoder(ChatCompletionReply)

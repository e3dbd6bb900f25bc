"""crewbus's LLM layer: one adapter over `openai.AsyncOpenAI`, and the simulated model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crewbus.lazy import lazy_names

if TYPE_CHECKING:
    from crewbus.llm.adapter import (
        AGENT_HEADER,
        DEFAULT_SIMULATED_BASE_URL,
        ChatResult,
        Completion,
        LLMClient,
        Message,
        ToolCall,
    )
    from crewbus.llm.errors import (
        LLMError,
        LLMRequestError,
        LLMUnavailableError,
        OutputValidationError,
    )
    from crewbus.llm.hint import HINT_HEADER, ModelHint, ShownMemory
    from crewbus.llm.schema import response_schema
    from crewbus.llm.settings import (
        DEFAULT_MODEL,
        SIMULATED_MODEL_NAME,
        SIMULATED_MODEL_PORT,
        LLMSettings,
        llm_settings_for,
        uses_simulated_model,
    )
    from crewbus.llm.simulated import (
        RecordedRequest,
        SimulatedModel,
        serve_simulated_model,
    )
    from crewbus.llm.simulated_replies import SimReply

_HOME = {
    **dict.fromkeys(("AGENT_HEADER", "DEFAULT_SIMULATED_BASE_URL", "ChatResult", "Completion",
                     "LLMClient", "Message", "ToolCall"), "adapter"),
    **dict.fromkeys(("LLMError", "LLMRequestError", "LLMUnavailableError",
                     "OutputValidationError"), "errors"),
    **dict.fromkeys(("HINT_HEADER", "ModelHint", "ShownMemory"), "hint"),
    "response_schema": "schema",
    **dict.fromkeys(("DEFAULT_MODEL", "SIMULATED_MODEL_NAME", "SIMULATED_MODEL_PORT",
                     "LLMSettings", "llm_settings_for", "uses_simulated_model"), "settings"),
    **dict.fromkeys(("RecordedRequest", "SimulatedModel", "serve_simulated_model"),
                    "simulated"),
    "SimReply": "simulated_replies",
}
"""Where each name lives. Imported on first use: the settings tree imports
`crewbus.llm.settings`, and a process that makes no model calls (the orchestrator, the
memory service, most CLI commands) need not pay for the openai client's import."""


__getattr__ = lazy_names(__name__, _HOME)


__all__ = [
    "AGENT_HEADER",
    "DEFAULT_MODEL",
    "DEFAULT_SIMULATED_BASE_URL",
    "HINT_HEADER",
    "SIMULATED_MODEL_NAME",
    "SIMULATED_MODEL_PORT",
    "ChatResult",
    "Completion",
    "LLMClient",
    "LLMError",
    "LLMRequestError",
    "LLMSettings",
    "LLMUnavailableError",
    "Message",
    "ModelHint",
    "OutputValidationError",
    "RecordedRequest",
    "ShownMemory",
    "SimReply",
    "SimulatedModel",
    "ToolCall",
    "llm_settings_for",
    "response_schema",
    "serve_simulated_model",
    "uses_simulated_model",
]

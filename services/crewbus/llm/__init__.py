"""crewbus's LLM layer: one adapter over `openai.AsyncOpenAI`, and the simulated model."""

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

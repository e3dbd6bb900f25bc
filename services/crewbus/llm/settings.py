"""Which model each agent talks to, read from the environment.

Lookup order, per field (empty values count as unset):

- model:    CREWBUS_<ROLE>_MODEL, CREWBUS_MODEL, else DEFAULT_MODEL when a key or base URL
            is configured, else the simulated model
- base_url: CREWBUS_<ROLE>_BASE_URL, CREWBUS_LLM_BASE_URL, OPENAI_BASE_URL
- api_key:  CREWBUS_<ROLE>_API_KEY, CREWBUS_LLM_API_KEY, OPENAI_API_KEY
- others:   CREWBUS_<ROLE>_<FIELD>, CREWBUS_LLM_<FIELD> (e.g. CREWBUS_LLM_STREAM=true)

A real model is opt-in: with no key and no base URL the simulated one answers, so a fresh
checkout never spends money or sends data anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from crewbus.settings import load

SIMULATED_MODEL_NAME = "crewbus-simulated"
DEFAULT_MODEL = "gpt-4o-mini"
"""Used when a key or base URL is configured but no model is named."""
SIMULATED_MODEL_PORT = 8765
"""Where `crewbus serve simulated-model` listens, and where clients look when unconfigured."""


class LLMSettings(msgspec.Struct, kw_only=True, frozen=True):
    """How one agent reaches its model. `api_key` never appears in repr or str."""

    env_fallbacks: ClassVar[dict[str, tuple[str, ...]]] = {
        "model": ("CREWBUS_MODEL",),
        "base_url": ("CREWBUS_LLM_BASE_URL", "OPENAI_BASE_URL"),
        "api_key": ("CREWBUS_LLM_API_KEY", "OPENAI_API_KEY"),
        "*": ("CREWBUS_LLM_{FIELD}",),
    }
    env_shown_defaults: ClassVar[dict[str, str]] = {
        "model": f"`{DEFAULT_MODEL}` if a key or base URL is set, else `{SIMULATED_MODEL_NAME}`",
    }

    model: str = SIMULATED_MODEL_NAME
    """Model name requested (e.g. `CREWBUS_CRITIC_MODEL=gpt-4o`)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint. With no key and no base URL, the simulated model answers."""
    api_key: str | None = None
    """API key for that endpoint; never logged, and not sent to the simulated model."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    """Timeout of one model call."""
    max_validation_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    """Times a reply that fails validation is sent back to the model with the error."""
    max_transport_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    """Retries the openai client makes itself on connection errors, 429 and 5xx."""
    stream: bool = False
    """Stream the model's reply."""
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    """Sampling temperature; unset leaves the model's own."""
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    """HTTP transport under the openai client: aiohttp (its `aiohttp` extra; less CPU per
    call) or the SDK's default httpx."""

    @staticmethod
    def env_finish(raw: dict[str, Any]) -> dict[str, Any]:
        """A key or base URL without a model name means DEFAULT_MODEL."""
        if "model" not in raw and ("api_key" in raw or "base_url" in raw):
            raw["model"] = DEFAULT_MODEL
        return raw

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "'***'"
        return (
            f"LLMSettings(model={self.model!r}, base_url={self.base_url!r}, api_key={key}, "
            f"timeout_s={self.timeout_s!r}, max_validation_retries="
            f"{self.max_validation_retries!r}, max_transport_retries="
            f"{self.max_transport_retries!r}, stream={self.stream!r}, "
            f"temperature={self.temperature!r}, http_client={self.http_client!r})"
        )

    __str__ = __repr__


class ModelEndpoint(msgspec.Struct, kw_only=True, frozen=True):
    """A model server a variant may name: where it is and which variable holds its key.

    The key itself is never in the settings' JSON or on the bus: an agent reads it from
    `api_key_env` in its own environment when the endpoint is first used."""

    base_url: Annotated[str, msgspec.Meta(min_length=1)]
    api_key_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    """Name of the environment variable holding the key; unset for keyless servers."""


def llm_settings_for(role: str, env: Mapping[str, str] | None = None) -> LLMSettings:
    """Settings for the agent `role` (planner, researcher, ...) from `env` or os.environ."""
    return load(LLMSettings, prefix=role_prefix(role), env=env)


def role_prefix(role: str) -> str:
    """Where the settings of the agent `role` are read first: `CREWBUS_<ROLE>_`."""
    return f"CREWBUS_{role.upper()}_"


def uses_simulated_model(settings: LLMSettings) -> bool:
    """True when crewbus's simulated model answers: nothing configured, or asked for by name."""
    nothing_configured = not settings.api_key and not settings.base_url
    return nothing_configured or settings.model == SIMULATED_MODEL_NAME

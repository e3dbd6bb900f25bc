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

import os
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

SIMULATED_MODEL_NAME = "crewbus-simulated"
DEFAULT_MODEL = "gpt-4o-mini"
"""Used when a key or base URL is configured but no model is named."""
SIMULATED_MODEL_PORT = 8765
"""Where `crewbus serve simulated-model` listens, and where clients look when unconfigured."""

_FALLBACKS: dict[str, tuple[str, ...]] = {
    "model": ("CREWBUS_MODEL",),
    "base_url": ("CREWBUS_LLM_BASE_URL", "OPENAI_BASE_URL"),
    "api_key": ("CREWBUS_LLM_API_KEY", "OPENAI_API_KEY"),
}


class LLMSettings(msgspec.Struct, kw_only=True, frozen=True):
    """How one agent reaches its model. `api_key` never appears in repr or str."""

    model: str = SIMULATED_MODEL_NAME
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    max_validation_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    """Times a reply that fails validation is sent back to the model with the error."""
    max_transport_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    """Retries the openai client makes itself on connection errors, 429 and 5xx."""
    stream: bool = False
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "'***'"
        return (
            f"LLMSettings(model={self.model!r}, base_url={self.base_url!r}, api_key={key}, "
            f"timeout_s={self.timeout_s!r}, max_validation_retries="
            f"{self.max_validation_retries!r}, max_transport_retries="
            f"{self.max_transport_retries!r}, stream={self.stream!r}, "
            f"temperature={self.temperature!r})"
        )

    __str__ = __repr__


def llm_settings_for(role: str, env: Mapping[str, str] | None = None) -> LLMSettings:
    """Settings for the agent `role` (planner, researcher, ...) from `env` or os.environ."""
    source = os.environ if env is None else env
    role_prefix = f"CREWBUS_{role.upper()}_"
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(LLMSettings):
        name = field.encode_name
        keys = (role_prefix + name.upper(), *_FALLBACKS.get(name, (f"CREWBUS_LLM_{name.upper()}",)))
        for key in keys:
            value = source.get(key)
            if value:
                raw[name] = value
                break
    if "model" not in raw and ("api_key" in raw or "base_url" in raw):
        raw["model"] = DEFAULT_MODEL
    return msgspec.convert(raw, LLMSettings, strict=False)


def uses_simulated_model(settings: LLMSettings) -> bool:
    """True when crewbus's simulated model answers: nothing configured, or asked for by name."""
    nothing_configured = not settings.api_key and not settings.base_url
    return nothing_configured or settings.model == SIMULATED_MODEL_NAME

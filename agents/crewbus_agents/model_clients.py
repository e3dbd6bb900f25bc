"""The model clients one agent serves every variant with: one per (endpoint, model), made
on first use and kept for the life of the agent.

A variant names an endpoint of `CREWBUS_MODEL_ENDPOINTS` by name; the key is read here,
from the variable that endpoint names, in this agent's environment. It never travels on
the bus and never appears in an error: only the variable's name does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from crewbus.llm.adapter import LLMClient
from crewbus.llm.settings import LLMSettings, ModelEndpoint
from crewbus.variants import EndpointError, ResolvedRole


class ModelClients:
    def __init__(self, base: LLMClient, endpoints: Mapping[str, ModelEndpoint],
                 env: Mapping[str, str] | None = None) -> None:
        self.base = base
        """The agent's configured client: what a variant that names no endpoint uses."""
        self.endpoints = endpoints
        self._env = env
        self._owned: dict[tuple[str, str], LLMClient] = {}

    def for_work(self, resolved: ResolvedRole) -> LLMClient:
        """The client for `resolved`'s endpoint and model, at its temperature."""
        client = self.client(resolved.endpoint, resolved.model)
        return client.derived(temperature=resolved.temperature)

    def client(self, endpoint: str | None, model: str | None) -> LLMClient:
        if endpoint is None:
            return self.base.derived(model=model)
        if model is None:
            raise EndpointError(f"a variant names endpoint {endpoint!r} without a model: "
                                "set one with `crewbus variant set NAME --role ROLE --model M`")
        key = (endpoint, model)
        if key not in self._owned:
            self._owned[key] = LLMClient(self._settings(endpoint, model), self.base.role)
        return self._owned[key]

    def _settings(self, endpoint: str, model: str) -> LLMSettings:
        found = self.endpoints.get(endpoint)
        if found is None:
            known = ", ".join(sorted(self.endpoints)) or "none"
            raise EndpointError(f"endpoint {endpoint!r} is not configured for the "
                                f"{self.base.role} (CREWBUS_MODEL_ENDPOINTS names: {known})")
        api_key = None
        if found.api_key_env is not None:
            env = os.environ if self._env is None else self._env
            api_key = env.get(found.api_key_env) or None
            if api_key is None:
                raise EndpointError(f"endpoint {endpoint!r} reads its key from "
                                    f"${found.api_key_env}, which is not set for the "
                                    f"{self.base.role}")
        return msgspec.structs.replace(self.base.settings, model=model,
                                       base_url=found.base_url, api_key=api_key)

    async def aclose(self) -> None:
        for client in self._owned.values():
            await client.aclose()
        self._owned.clear()

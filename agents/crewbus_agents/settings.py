"""An agent service's settings (CREWBUS_* environment variables)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from crewbus.llm.settings import ModelEndpoint
from crewbus.settings import BusSettings
from crewbus_contracts.prompts import ENDPOINT_NAME


class AgentSettings(BusSettings, kw_only=True, frozen=True):
    concurrency: int = 4
    """Work items one replica handles at once (model calls are I/O bound)."""
    model_endpoints: dict[Annotated[str, msgspec.Meta(pattern=ENDPOINT_NAME)],
                          ModelEndpoint] = {}
    """Model servers a variant may name, as JSON `{"name": {"base_url": "...",
    "api_key_env": "VAR"}}`: each key is read from the variable named, never stored on
    the bus."""

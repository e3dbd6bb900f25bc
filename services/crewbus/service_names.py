"""The services a crewbus process can run (`crewbus serve NAME`), named once."""

from __future__ import annotations

from crewbus_contracts import AGENT_ROLES

SERVICES: tuple[str, ...] = (*AGENT_ROLES, "orchestrator", "memory", "simulated-model")

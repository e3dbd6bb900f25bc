"""Environment variables crewbus reads, and the defaults deployment files must agree with.

The compose test checks docker-compose.yml against this list, so a renamed variable
fails a test instead of silently doing nothing. To be reconciled with the settings
module: each entry here must be read somewhere in the code.
"""

from __future__ import annotations

from crewbus.llm.settings import SIMULATED_MODEL_PORT
from crewbus.service_names import SERVICES

ENV_VARS: dict[str, str] = {
    "CREWBUS_NATS_URL": "NATS server URL; unset means start the embedded nats-server.",
    "CREWBUS_DATA_DIR": "Directory for embedded state (nats-server store, embedded Qdrant).",
    "CREWBUS_METRICS_PORT": "Port of this process's /metrics endpoint; 0 disables it.",
    "CREWBUS_PRICES_FILE": "JSON price table (LiteLLM format) merged over the defaults.",
    "CREWBUS_PLANNER_MODEL": "Model name the planner requests.",
    "CREWBUS_RESEARCHER_MODEL": "Model name the researcher requests.",
    "CREWBUS_EXECUTOR_MODEL": "Model name the executor requests.",
    "CREWBUS_CRITIC_MODEL": "Model name the critic requests.",
    "OPENAI_API_KEY": "API key for the OpenAI-compatible endpoint.",
    "OPENAI_BASE_URL": "OpenAI-compatible endpoint; with no key and no URL, the simulated model.",
    "QDRANT_URL": "Qdrant server for the memory service; unset means embedded on disk.",
    "QDRANT_API_KEY": "API key for the Qdrant server.",
}

SERVE_ROLES: tuple[str, ...] = SERVICES
"""What `crewbus serve <role>` accepts."""

DEFAULT_NATS_PORT = 4222
DEFAULT_NATS_MONITOR_PORT = 8222
DEFAULT_METRICS_PORT = 9464
DEFAULT_SIMULATED_MODEL_PORT = SIMULATED_MODEL_PORT

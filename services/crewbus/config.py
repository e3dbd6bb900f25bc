"""The settings tree: everything a crewbus process reads from its environment, in one
Struct, loaded once (`load_settings`) by the one loader in `crewbus.settings`.

Each branch is one service's or one layer's settings Struct with its variable prefix; the
README's configuration reference is rendered from this tree (`crewbus.settings_doc`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

import msgspec

from crewbus.evals.online.settings import EvaluatorSettings
from crewbus.httpapi.settings import ENV_PREFIX as HTTP_PREFIX
from crewbus.httpapi.settings import HttpSettings
from crewbus.llm.settings import LLMSettings, role_prefix
from crewbus.memory.settings import ENV_PREFIX as MEMORY_PREFIX
from crewbus.memory.settings import MemorySettings
from crewbus.orchestrator.settings import OrchestratorSettings
from crewbus.settings import BusSettings, DataSettings, MetricsSettings, load
from crewbus.tracing.settings import ENV_PREFIX as TRACE_PREFIX
from crewbus.tracing.settings import TraceSettings
from crewbus_agents.mcp_tools.settings import ENV_PREFIX as MCP_PREFIX
from crewbus_agents.mcp_tools.settings import McpSettings
from crewbus_agents.settings import AgentSettings
from crewbus_agents.tools.settings import ENV_PREFIX as TOOLS_PREFIX
from crewbus_agents.tools.settings import ToolSettings
from crewbus_contracts import AGENT_ROLES

JUDGE_PREFIX = "CREWBUS_JUDGE_"
"""Where the judge model's settings are read first (then `CREWBUS_LLM_*`, `OPENAI_*`)."""


class RoleModels(msgspec.Struct, kw_only=True, frozen=True):
    """The model of each agent role: `CREWBUS_<ROLE>_<FIELD>`, then the shared names."""

    env_prefixes: ClassVar[dict[str, str]] = {role: role_prefix(role) for role in AGENT_ROLES}
    env_doc_prefix: ClassVar[str] = "CREWBUS_<ROLE>_"

    planner: LLMSettings = msgspec.field(default_factory=LLMSettings)
    researcher: LLMSettings = msgspec.field(default_factory=LLMSettings)
    executor: LLMSettings = msgspec.field(default_factory=LLMSettings)
    critic: LLMSettings = msgspec.field(default_factory=LLMSettings)

    def __getitem__(self, role: str) -> LLMSettings:
        if role not in AGENT_ROLES:
            raise KeyError(role)
        settings: LLMSettings = getattr(self, role)
        return settings


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """One process's settings. A new service adds its Struct here, with its prefix."""

    env_prefixes: ClassVar[dict[str, str]] = {
        "data": "CREWBUS_", "bus": "CREWBUS_", "agents": "CREWBUS_",
        "orchestrator": "CREWBUS_", "llm": "", "judge": JUDGE_PREFIX, "memory": MEMORY_PREFIX,
        "tools": TOOLS_PREFIX, "mcp": MCP_PREFIX, "tracing": TRACE_PREFIX,
        "metrics": "CREWBUS_", "http": HTTP_PREFIX, "evaluator": "CREWBUS_",
    }
    env_titles: ClassVar[dict[str, str]] = {
        "data": "Files", "bus": "Bus", "agents": "Agents", "orchestrator": "Orchestrator",
        "llm": "Models (per agent role)",
        "judge": "Judge model (the `llm_judge` evaluation scorer)", "memory": "Memory",
        "tools": "Tools", "mcp": "MCP servers",
        "tracing": "Traces", "metrics": "Metrics", "http": "HTTP gateway",
        "evaluator": "Online evaluators (`crewbus serve evaluator`)",
    }

    data: DataSettings = msgspec.field(default_factory=DataSettings)
    bus: BusSettings = msgspec.field(default_factory=BusSettings)
    agents: AgentSettings = msgspec.field(default_factory=AgentSettings)
    orchestrator: OrchestratorSettings = msgspec.field(default_factory=OrchestratorSettings)
    llm: RoleModels = msgspec.field(default_factory=RoleModels)
    judge: LLMSettings = msgspec.field(default_factory=LLMSettings)
    """The model `llm_judge` scorers ask: `CREWBUS_JUDGE_<FIELD>`, then the shared names
    (so, like the agents, the simulated model when nothing is configured)."""
    memory: MemorySettings = msgspec.field(default_factory=MemorySettings)
    tools: ToolSettings = msgspec.field(default_factory=ToolSettings)
    mcp: McpSettings = msgspec.field(default_factory=McpSettings)
    tracing: TraceSettings = msgspec.field(default_factory=TraceSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    evaluator: EvaluatorSettings = msgspec.field(default_factory=EvaluatorSettings)


def load_settings(
    env: Mapping[str, str] | None = None, *, nats_url: str | None = None
) -> Settings:
    """The whole tree from `env` (else os.environ); `nats_url` (`--nats`) wins over
    `CREWBUS_NATS_URL`."""
    if nats_url:
        env = {**(os.environ if env is None else env), "CREWBUS_NATS_URL": nats_url}
    return load(Settings, env=env)

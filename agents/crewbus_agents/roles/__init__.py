"""The four agents, one module each: what each asks its model, what it remembers, and how
its answer becomes a result. The runtime (`runtime.py`) does the bus work and calls a
role's hooks (`base.Role`). Adding an agent means adding a module here, its prompt file
and an entry in AGENTS.
"""

from __future__ import annotations

from typing import Any

from crewbus_agents.roles.base import Role, WrongRoleError
from crewbus_agents.roles.critic import Critic
from crewbus_agents.roles.executor import Executor
from crewbus_agents.roles.planner import Planner
from crewbus_agents.roles.researcher import Researcher

AGENTS: dict[str, Role[Any]] = {
    role.name: role for role in (Planner(), Researcher(), Executor(), Critic())
}

__all__ = ["AGENTS", "Critic", "Executor", "Planner", "Researcher", "Role", "WrongRoleError"]

"""The services a crewbus process can run (`crewbus serve NAME`), named once."""

from __future__ import annotations

from crewbus_contracts import AGENT_ROLES

BUS_SERVICES: tuple[str, ...] = ("orchestrator", "memory", *AGENT_ROLES)
"""The services on the bus, in the order `crewbus up` starts them (and numbers their ports)."""

GATEWAY = "gateway"
"""The HTTP gateway (`crewbus.httpapi`): a client of the bus, started after the bus services."""

EVALUATOR = "evaluator"
"""The online evaluators (`crewbus.evals.online`): `crewbus up` starts one when an
evaluators file is configured (`CREWBUS_EVALUATORS_FILE`)."""

SERVICES: tuple[str, ...] = (*AGENT_ROLES, "orchestrator", "memory", GATEWAY, EVALUATOR,
                             "simulated-model")
"""Everything `crewbus serve` runs: the bus services, the HTTP gateway, the evaluator, the
simulated model."""

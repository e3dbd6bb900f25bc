"""The submit gateway, the bus's front door (`crewbus.submit`). It imports nothing of the
orchestrator: it reads task state through `crewbus.taskstore`, as the orchestrator and
the client do."""

from crewbus.gateway.submit import SubmitGateway, start_gateway

__all__ = ["SubmitGateway", "start_gateway"]

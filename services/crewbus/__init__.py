"""crewbus platform services: bus runtime, orchestrator, LLM adapter, CLI, telemetry."""

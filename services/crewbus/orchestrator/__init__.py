"""The orchestrator: turns results into the next work, keeping task state in JetStream KV."""

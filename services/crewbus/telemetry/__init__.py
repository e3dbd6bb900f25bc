"""Telemetry: Prometheus metrics, the LLM price table, queue sampling and trace context.

Every metric object lives in `crewbus.telemetry.metrics`; callers record through the
small helpers there (`record_llm_call`, `record_step`, ...) so a call site is one line.
"""

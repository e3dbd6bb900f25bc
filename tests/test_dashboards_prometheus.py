"""Every dashboard query returns data from a real Prometheus once every metric has been
recorded (synthetic recordings; the stack-level test runs real tasks instead)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from crewbus.telemetry import metrics
from crewbus.telemetry.server import start_metrics_server
from tests.dashboards_helper import is_driven, load_generator, shows_activity
from tests.prometheus_helper import PrometheusServer

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus not installed")


def record_one_of_everything() -> None:
    metrics.mark_service_up("researcher")
    metrics.record_llm_call(metrics.LlmCall(
        "planner", "crewbus-simulated", "crewbus.simulated", 300, 120, 0.4,
        time_to_first_token_s=0.05))
    metrics.record_llm_call(metrics.LlmCall("critic", "unpriced-model", "openai", 10, 5, 0.2))
    metrics.record_llm_call(metrics.LlmCall("executor", "gpt-4o-mini", "openai", 100, 20, 0.3))
    metrics.record_validation_retry("planner", "crewbus-simulated")
    metrics.record_task_submitted()
    metrics.record_task_finished("completed", "", 12.0, 2)
    metrics.record_replan()
    metrics.record_step("researcher", "ok", 1.5)
    metrics.record_critique("planner", "v1", 0.8, "accept")
    metrics.record_critique("critic", "2", 0.7, "revise", variant="terse")
    metrics.record_eval_score(metrics.EvalScore("exact", "arith", "executor@v1", "production",
                                                value=1.0, passed=True))
    metrics.record_redelivery("researcher")
    metrics.record_dead_letter("executor", "max_deliver")
    metrics.record_bad_input("invalid_json", "crewbus.submit")
    metrics.record_bus_message("crewbus.work.researcher", "in")
    metrics.record_memory_search("qdrant-edge", 0.01, 3)
    metrics.record_replay_tool_call("replay", "hit", "served")
    metrics.record_replay_recall("replay", "hit")
    metrics.record_replay_cost("shadow", 0.002)
    metrics.record_shadow("started")
    metrics.queue_pending.labels("CREWBUS_WORK", "agent-researcher").set(2)
    metrics.queue_ack_pending.labels("CREWBUS_WORK", "agent-researcher").set(1)
    metrics.queue_redelivered.labels("CREWBUS_WORK", "agent-researcher").set(0)


def has_data(prom: PrometheusServer, query: Any) -> bool:
    """The query (a generator's `PanelQuery`) returns data; a replay or shadow panel's, a
    value above 0."""
    result = prom.query(query.promql())
    return shows_activity(result) if is_driven(query.panel) else bool(result)


def test_every_panel_query_returns_data(tmp_path: Path) -> None:
    gen = load_generator()
    record_one_of_everything()
    port = start_metrics_server(0, host="127.0.0.1")
    prom = PrometheusServer(tmp_path, {"crewbus": [f"127.0.0.1:{port}"]}).start()
    try:
        assert prom.wait_for('up{job="crewbus"} == 1'), prom.log_tail()
        record_one_of_everything()  # a second sample with increases, for rate()
        queries = list(load_generator().panel_queries())
        deadline = time.monotonic() + 60  # scrapes can lag on a busy machine
        while True:
            empty = [f"{q.dashboard} / {q.panel}: {q.promql()}"
                     for q in queries if not has_data(prom, q)]
            if not empty or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not empty, "panels without data:\n" + "\n".join(empty)
        assert gen.DASHBOARDS
    finally:
        prom.stop()

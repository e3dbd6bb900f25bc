"""The exported metrics: names, labels and bucket bounds the issue and dashboards rely on."""

from __future__ import annotations

import urllib.request

from prometheus_client import REGISTRY

from crewbus.telemetry import metrics
from crewbus.telemetry.server import metrics_port, start_metrics_server


def _buckets(name: str, labels: dict[str, str]) -> list[float]:
    bounds = []
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == f"{name}_bucket" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                bounds.append(float(sample.labels["le"]))
    return sorted(bounds)


def test_llm_call_records_otel_genai_metrics_with_recommended_buckets() -> None:
    call = metrics.LlmCall(
        agent="planner", model="gpt-4o-mini", provider="openai",
        input_tokens=1200, output_tokens=300, duration_s=2.0, time_to_first_token_s=0.3,
    )
    cost = metrics.record_llm_call(call)
    assert cost is not None and cost > 0
    base = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
            "gen_ai_request_model": "gpt-4o-mini"}
    assert REGISTRY.get_sample_value(
        "gen_ai_client_operation_duration_seconds_count", {**base, "error_type": ""}
    ) is not None
    for token_type in ("input", "output"):
        assert REGISTRY.get_sample_value(
            "gen_ai_client_token_usage_count", {**base, "gen_ai_token_type": token_type}
        ) is not None
    assert _buckets("gen_ai_client_operation_duration_seconds", base)[:-1] == [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
    ]
    assert _buckets("gen_ai_client_token_usage", {**base, "gen_ai_token_type": "input"})[:-1] == [
        1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
        67108864,
    ]
    assert REGISTRY.get_sample_value(
        "crewbus_llm_cost_usd_total", {"agent": "planner", "model": "gpt-4o-mini"}
    ) == cost


def test_unpriced_model_is_counted_not_guessed() -> None:
    before = REGISTRY.get_sample_value(
        "crewbus_llm_unpriced_calls_total", {"agent": "critic", "model": "no-such-model"}
    ) or 0.0
    call = metrics.LlmCall("critic", "no-such-model", "openai", 10, 10, 0.1)
    assert metrics.record_llm_call(call) is None
    assert REGISTRY.get_sample_value(
        "crewbus_llm_unpriced_calls_total", {"agent": "critic", "model": "no-such-model"}
    ) == before + 1
    assert REGISTRY.get_sample_value(
        "crewbus_llm_cost_usd_total", {"agent": "critic", "model": "no-such-model"}
    ) is None


def test_failed_call_has_error_type_and_no_token_usage() -> None:
    call = metrics.LlmCall("executor", "gpt-4.1", "openai", 0, 0, 30.0, error_type="timeout")
    metrics.record_llm_call(call)
    labels = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
              "gen_ai_request_model": "gpt-4.1"}
    assert REGISTRY.get_sample_value(
        "gen_ai_client_operation_duration_seconds_count", {**labels, "error_type": "timeout"}
    ) == 1
    assert REGISTRY.get_sample_value(
        "gen_ai_client_token_usage_count", {**labels, "gen_ai_token_type": "input"}
    ) is None


def test_no_metric_has_a_task_id_label() -> None:
    forbidden = {"task_id", "task", "step_id", "trace_id", "text"}
    for metric in metrics.ALL_METRICS:
        assert not forbidden & set(metric._labelnames), metric


def test_subject_kind_never_leaks_a_task_id() -> None:
    assert metrics.subject_kind("crewbus.results.01J9ZX") == "results"
    assert metrics.subject_kind("crewbus.events.01J9ZX.progress") == "events"
    assert metrics.subject_kind("crewbus.work.researcher") == "work.researcher"
    assert metrics.subject_kind("crewbus.work.whatever-you-like") == "work"
    assert metrics.subject_kind("crewbus.submit") == "submit"
    assert metrics.subject_kind("elsewhere.x") == "other"


def test_exposed_names_cover_counter_and_histogram_series() -> None:
    names = metrics.exposed_names()
    assert "crewbus_tasks_total" in names
    assert "crewbus_step_duration_seconds_bucket" in names
    assert "crewbus_queue_pending" in names
    assert "crewbus_service_info" in names


def test_metrics_endpoint_serves_the_registry() -> None:
    metrics.mark_service_up("researcher")
    port = start_metrics_server(0, host="127.0.0.1")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b'crewbus_service_info{role="researcher"' in body


def test_metrics_port_zero_means_disabled() -> None:
    assert metrics_port(env={"CREWBUS_METRICS_PORT": "0"}) is None
    assert metrics_port(env={}) == 9464
    assert metrics_port(env={"CREWBUS_METRICS_PORT": "9500"}) == 9500

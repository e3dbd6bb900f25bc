"""The settings tree: one loader with one rule for empty values, per-role model overrides,
one-line errors, and the README's reference rendered from the tree."""

from __future__ import annotations

import msgspec
import pytest

from crewbus import bootstrap, settings_doc
from crewbus.config import RoleModels, Settings, load_settings
from crewbus.service_names import SERVICES
from crewbus.settings import SettingsError


def test_the_readme_reference_is_the_one_rendered_from_the_settings_tree() -> None:
    text = settings_doc.README.read_text()
    assert settings_doc.readme_section(text) == settings_doc.render(), (
        "README drifted from the settings tree: run `python -m crewbus.settings_doc`")


def test_every_variable_the_readme_documented_is_still_read() -> None:
    documented = {
        "CREWBUS_NATS_URL", "CREWBUS_DATA_DIR", "CREWBUS_CONNECT_TIMEOUT_S", "CREWBUS_ACK_WAIT_S",
        "CREWBUS_HEARTBEAT_S", "CREWBUS_MAX_DELIVER", "CREWBUS_MAX_SUBMIT_BYTES",
        "CREWBUS_EVENTS_MAX_AGE_S", "CREWBUS_CONCURRENCY", "CREWBUS_SWEEP_INTERVAL_S",
        "OPENAI_API_KEY", "OPENAI_BASE_URL", "CREWBUS_MODEL", "CREWBUS_CRITIC_MODEL",
        "CREWBUS_PLANNER_BASE_URL", "CREWBUS_EXECUTOR_API_KEY", "CREWBUS_LLM_TIMEOUT_S",
        "CREWBUS_LLM_STREAM", "CREWBUS_LLM_TEMPERATURE", "CREWBUS_LLM_MAX_VALIDATION_RETRIES",
        "CREWBUS_RESEARCHER_STREAM", "CREWBUS_METRICS_PORT", "CREWBUS_PRICES_FILE",
        "CREWBUS_TOOLS_MAX_TOOL_CALLS", "CREWBUS_TOOLS_HTTP_ALLOWLIST",
        "CREWBUS_TOOLS_REQUIRES_APPROVAL", "CREWBUS_TRACE_RETENTION_S",
        "CREWBUS_TRACE_REDACT_PATTERNS", "CREWBUS_TOOLS_REDACT_PATTERNS", "QDRANT_URL",
        "QDRANT_API_KEY", "CREWBUS_MEMORY_BACKEND", "CREWBUS_MEMORY_OPTIMIZE_IDLE_S",
    }
    assert documented <= set(settings_doc.ENV_VARS), documented - set(settings_doc.ENV_VARS)


def test_defaults_are_the_documented_ones() -> None:
    s = load_settings({})
    assert s == Settings()
    assert (s.agents.concurrency, s.orchestrator.concurrency) == (4, 32)
    assert (s.bus.max_submit_bytes, s.bus.events_max_age_s) == (65536, 604800)
    assert s.llm["critic"].model == "crewbus-simulated" and s.metrics.metrics_port == 9464


def test_an_empty_value_counts_as_unset_in_every_branch() -> None:
    env = {name: "" for name in settings_doc.ENV_VARS}
    assert load_settings(env) == Settings()
    with_fallbacks = {**env, "QDRANT_URL": "http://q:6333", "OPENAI_API_KEY": "sk-x"}
    loaded = load_settings(with_fallbacks)
    assert loaded.memory.qdrant_url == "http://q:6333"
    assert loaded.llm["planner"].api_key == "sk-x"


def test_role_overrides_win_over_shared_settings_in_the_tree() -> None:
    loaded = load_settings({"CREWBUS_MODEL": "shared", "CREWBUS_CRITIC_MODEL": "gpt-4o",
                            "CREWBUS_LLM_STREAM": "true", "CREWBUS_PLANNER_STREAM": "false"})
    assert (loaded.llm["critic"].model, loaded.llm["planner"].model) == ("gpt-4o", "shared")
    assert (loaded.llm["critic"].stream, loaded.llm["planner"].stream) == (True, False)


def test_nats_option_wins_over_the_environment_for_every_service() -> None:
    loaded = load_settings({"CREWBUS_NATS_URL": "nats://env:4222"}, nats_url="nats://cli:1")
    for service in ("orchestrator", "memory", "critic"):
        assert bootstrap.bus_settings(loaded, service).nats_url == "nats://cli:1"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("CREWBUS_ACK_WAIT_S", "soon", ("CREWBUS_ACK_WAIT_S", "float")),
        ("CREWBUS_CRITIC_TIMEOUT_S", "-1", ("CREWBUS_CRITIC_TIMEOUT_S", "timeout_s")),
        ("CREWBUS_METRICS_PORT", "70000", ("CREWBUS_METRICS_PORT", "65535")),
        ("CREWBUS_TOOLS_HTTP_ALLOWLIST", "[oops", ("CREWBUS_TOOLS_HTTP_ALLOWLIST", "JSON")),
        ("CREWBUS_MEMORY_EMBEDDER", "magic", ("CREWBUS_MEMORY_EMBEDDER",)),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_not_the_value(
    key: str, value: str, words: tuple[str, ...]
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({key: value})
    message = str(caught.value)
    assert "\n" not in message
    if key != "CREWBUS_MEMORY_EMBEDDER":  # msgspec names a bad choice; numbers stay unsaid
        assert value not in message.replace(key, "")
    assert all(word in message for word in words), message
    assert isinstance(caught.value, msgspec.ValidationError | ValueError)


def test_every_service_on_the_bus_has_a_bootstrap() -> None:
    on_the_bus = set(SERVICES) - {"simulated-model"}
    agents = on_the_bus - set(bootstrap.BOOTSTRAPS)
    assert agents == set(RoleModels.__struct_fields__)

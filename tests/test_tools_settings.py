"""ToolSettings from CREWBUS_TOOLS_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewbus_agents.tools import ToolSettings, load_tool_settings


def test_defaults_keep_risky_tools_behind_approval_and_http_off() -> None:
    s = load_tool_settings(env={})
    assert s.requires_approval == {"python", "write_file", "http_get"}
    assert s.http_allowlist == []
    assert (s.python_timeout_s, s.python_memory_mb, s.output_limit_chars) == (10.0, 256, 8000)
    assert s.max_tool_calls == 8


def test_environment_sets_numbers_and_json_lists(tmp_path: Path) -> None:
    s = load_tool_settings(
        env={
            "CREWBUS_TOOLS_PYTHON_TIMEOUT_S": "2.5",
            "CREWBUS_TOOLS_MAX_TOOL_CALLS": "3",
            "CREWBUS_TOOLS_HTTP_ALLOWLIST": '["example.com", "*.python.org"]',
            "CREWBUS_TOOLS_REQUIRES_APPROVAL": '["python"]',
            "CREWBUS_TOOLS_PYTHON_SITE_PACKAGES": "true",
            "CREWBUS_TOOLS_WORKSPACE_ROOT": str(tmp_path),
        }
    )
    assert s.python_timeout_s == 2.5 and s.max_tool_calls == 3
    assert s.http_allowlist == ["example.com", "*.python.org"]
    assert s.requires_approval == {"python"}
    assert s.python_site_packages is True
    assert s.workspace_root_path() == tmp_path.resolve()


def test_workspaces_default_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWBUS_DATA_DIR", str(tmp_path))
    assert ToolSettings().workspace_root_path() == tmp_path.resolve() / "workspaces"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("CREWBUS_TOOLS_HTTP_ALLOWLIST", "[not json", "must be JSON"),
        ("CREWBUS_TOOLS_PYTHON_MEMORY_MB", "lots", "python_memory_mb"),
        ("CREWBUS_TOOLS_HTTP_ALLOWLIST", "example.com", "http_allowlist"),
    ],
)
def test_bad_values_fail_loudly(key: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_tool_settings(env={key: value})


def test_the_default_root_is_resolved_once_per_settings_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's setup no longer reloads the settings: the root a settings object found is
    the one it keeps; settings built later read the environment again."""
    monkeypatch.setenv("CREWBUS_DATA_DIR", str(tmp_path / "first"))
    settings = ToolSettings()
    assert settings.workspace_root_path() == tmp_path.resolve() / "first" / "workspaces"
    monkeypatch.setenv("CREWBUS_DATA_DIR", str(tmp_path / "second"))
    assert settings.workspace_root_path() == tmp_path.resolve() / "first" / "workspaces"
    assert ToolSettings().workspace_root_path() == tmp_path.resolve() / "second" / "workspaces"

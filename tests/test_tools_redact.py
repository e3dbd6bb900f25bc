"""Redaction of secrets before anything reaches traces or events."""

from __future__ import annotations

from crewbus_agents.tools import Redactor
from crewbus_agents.tools.redact import REDACTED

ENV = {
    "OPENAI_API_KEY": "plain-looking-value-123",
    "GITHUB_TOKEN": "another-secret-456",
    "DB_PASSWORD": "pa55w0rd!",
    "SHORT_KEY": "1",
    "HOME": "/home/crew",
}


def test_values_of_secret_looking_env_vars_are_redacted_everywhere() -> None:
    r = Redactor(env=ENV)
    text = "key=plain-looking-value-123 tok another-secret-456 pw pa55w0rd! home /home/crew 1"
    out = r.text(text)
    assert "plain-looking-value-123" not in out
    assert "another-secret-456" not in out
    assert "pa55w0rd!" not in out
    assert out.endswith("home /home/crew 1")  # not secret, and too short to be one


def test_well_known_credential_shapes_are_redacted() -> None:
    r = Redactor(env={})
    samples = {
        "use sk-proj-AbCdEf0123456789AbCdEf please": "sk-proj-AbCdEf0123456789AbCdEf",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig": "eyJhbGciOiJIUzI1NiJ9",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==": "dXNlcjpwYXNzd29yZA==",
        "postgres://crew:hunter2secret@db:5432/x": "hunter2secret",
        "aws AKIAIOSFODNN7EXAMPLE": "AKIAIOSFODNN7EXAMPLE",
        "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    }
    for text, secret in samples.items():
        out = r.text(text)
        assert secret not in out, out
        assert REDACTED in out
    assert r.text("Bearer abcdefghijklmnop") == f"Bearer {REDACTED}"


def test_configured_patterns_are_redacted() -> None:
    r = Redactor(patterns=[r"ACME-\d{6}"], env={})
    assert r.text("ticket ACME-123456 done") == f"ticket {REDACTED} done"


def test_structured_data_is_redacted_by_key_and_by_value_without_touching_counts() -> None:
    r = Redactor(env=ENV)
    data = {
        "api_key": "zzz",
        "headers": {"Authorization": "Basic abc", "Accept": "text/plain"},
        "arguments": ["see plain-looking-value-123", {"password": "x", "author": "Ada"}],
        "usage": {"input_tokens": 12, "max_tokens": 100},
        "access_token": None,
        "pair": ("sk-abcdefghijklmnopqrstu", 3),
    }
    out = r.data(data)
    assert out["api_key"] == REDACTED
    assert out["headers"] == {"Authorization": REDACTED, "Accept": "text/plain"}
    assert out["arguments"] == [f"see {REDACTED}", {"password": REDACTED, "author": "Ada"}]
    assert out["usage"] == {"input_tokens": 12, "max_tokens": 100}
    assert out["access_token"] is None
    assert out["pair"] == (REDACTED, 3)
    assert data["api_key"] == "zzz"  # the input is not modified

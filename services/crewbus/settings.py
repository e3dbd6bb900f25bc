"""Settings: msgspec Structs read from the environment by one loader with one set of rules.

- Every field `foo` of a settings Struct is read from `<prefix>FOO`, then from the names
  the Struct lists in `env_fallbacks` (`"*"` applies to every field; `{FIELD}` is the
  field's upper-case name). The first non-empty value wins: **an empty value is unset**.
- A field holding a list, set or dict takes JSON (`'["a", "b"]'`).
- A Struct whose fields are Structs (a settings tree, `crewbus.config.Settings`) names each
  one's prefix in `env_prefixes`; the loader walks it and converts the whole tree at once.
- A bad value raises `SettingsError` (a `msgspec.ValidationError`), one line naming the
  variable and never echoing its value.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)

DEFAULT_METRICS_PORT = 9464


class SettingsError(msgspec.ValidationError):
    """A setting's value is not valid; the message names the variable (never its value)."""


def load(
    cls: type[S], prefix: str = "CREWBUS_", env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> S:
    """Build `cls` from the environment (`env`, else os.environ), then apply `overrides`."""
    keys: dict[str, str] = {}
    raw = _raw(cls, prefix, os.environ if env is None else env, "$", keys)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc), keys)) from None


def env_names(cls: type[msgspec.Struct], field: str, prefix: str) -> tuple[str, ...]:
    """The variables `field` of `cls` is read from, first one first."""
    fallbacks: dict[str, tuple[str, ...]] = getattr(cls, "env_fallbacks", {})
    more = fallbacks.get(field, fallbacks.get("*", ()))
    return (prefix + field.upper(), *(name.format(FIELD=field.upper()) for name in more))


def _raw(
    cls: type[msgspec.Struct], prefix: str, source: Mapping[str, str], path: str,
    keys: dict[str, str],
) -> dict[str, Any]:
    nested: dict[str, str] = getattr(cls, "env_prefixes", {})
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        name = field.encode_name
        if name in nested:
            raw[name] = _raw(field.type, nested[name], source, f"{path}.{name}", keys)
            continue
        for key in env_names(cls, name, prefix):
            value = source.get(key, "")
            if value:
                keys[f"{path}.{name}"] = key
                raw[name] = _json(key, value) if _takes_json(field.type, value) else value
                break
    finish = getattr(cls, "env_finish", None)
    return finish(raw) if finish is not None else raw


def _takes_json(annotation: Any, value: str) -> bool:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    container = typing.get_origin(annotation) or annotation
    return container in (list, set, frozenset, dict) and value[:1] in "[{"


def _json(key: str, value: str) -> Any:
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise SettingsError(f"{key} must be JSON: {exc}") from None


def _explain(message: str, keys: dict[str, str]) -> str:
    """msgspec's message with the variable the bad value came from."""
    found = re.search(r"`(\$[^`]*)`", message)
    key = keys.get(found.group(1)) if found else None
    return f"{key}: {message}" if key else f"invalid settings: {message}"


class DataSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where a process keeps its files."""

    data_dir: str = "./.crewbus"
    """Embedded nats-server store, logs, memory store, tool workspaces."""


class MetricsSettings(msgspec.Struct, kw_only=True, frozen=True):
    """What a process tells Prometheus."""

    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = DEFAULT_METRICS_PORT
    """Port of this process's /metrics endpoint (`crewbus up`: the first of one port per
    service); 0 disables it."""
    prices_file: str | None = None
    """JSON price table (LiteLLM format) merged over the built-in prices."""


class BusSettings(msgspec.Struct, kw_only=True, frozen=True):
    """How every service reaches NATS and how work is delivered."""

    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server, or the servers of a cluster separated by commas (`--nats` overrides);
    a service reconnects to any of them."""
    connect_timeout_s: float = 60.0
    """How long a starting service waits for NATS before giving up."""
    ack_wait_s: float = 30.0
    """Unacked work is redelivered after this (a busy worker marks it in progress)."""
    heartbeat_s: float = 5.0
    """In-progress acks while a model call runs: how often a busy worker tells JetStream
    it is still working on a message."""
    max_deliver: int = 3
    """Deliveries of one work item before it is dead-lettered."""
    orchestrator_max_deliver: int = 50
    """Deliveries of a submission or result to the orchestrator: these must not be lost to a
    busy or restarting orchestrator, so the bound is far higher than for agent work."""
    max_submit_bytes: int = 64 * 1024
    """Largest submission the gateway accepts."""
    events_max_age_s: float = 7 * 24 * 3600.0
    """How long task events are kept."""
    publish_retry_s: float = 30.0
    """How long a result, a dispatch or an event is published again while its stream has
    no leader (a NATS cluster electing a new one after a node failed takes seconds)."""
    stream_replicas: int = 1
    """Replicas of each JetStream stream, KV bucket and object store: 1 on a single
    nats-server, 3 on a 3-node cluster (`crewbus up --cluster 3` sets it)."""
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """The event loop of every crewbus process: uvloop (less CPU per message) where it is
    installed, else asyncio's own; `asyncio` turns uvloop off."""
    nats_creds: str | None = None
    """This process's NATS identity: a JSON file `{"user": ..., "password": ...}` (mode
    0600) as `crewbus auth init` writes them, one per identity; unset: connect anonymously.
    The CLI, when unset, uses the identity its command needs from `<data dir>/nats-auth/`
    if `crewbus up` made one."""
    nats_tls_ca: str | None = None
    """CA certificate (PEM) to verify the NATS server with; set, the connection is TLS."""
    nats_tls_cert: str | None = None
    """Client certificate (PEM) for servers that verify clients (with `nats_tls_key`)."""
    nats_tls_key: str | None = None
    """Private key (PEM) of `nats_tls_cert`."""


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where embedded parts keep their files: `$CREWBUS_DATA_DIR` or `./.crewbus`."""
    return Path(load(DataSettings, env=env).data_dir).resolve()

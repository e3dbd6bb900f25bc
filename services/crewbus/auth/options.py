"""The nats-py connect options a process's bus settings ask for: its identity, its inbox
and TLS."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from crewbus.auth.credentials import Credentials, read_credentials
from crewbus.auth.permissions import ADMIN, inbox
from crewbus.settings import BusSettings


class TlsSettingsError(RuntimeError):
    def __init__(self, what: str, path: str, problem: str) -> None:
        super().__init__(f"NATS TLS {what} {path}: {problem}")


def identity_of(settings: BusSettings) -> Credentials | None:
    return read_credentials(Path(settings.nats_creds)) if settings.nats_creds else None


def manages_topology(settings: BusSettings) -> bool:
    """Whether this process creates the streams, consumers and buckets at start-up: without
    authentication every service does (idempotently); with it only `admin` may, and the
    services find them made (`crewbus up` makes them before it starts any)."""
    creds = identity_of(settings)
    return creds is None or creds.user == ADMIN


def tls_context(settings: BusSettings) -> ssl.SSLContext | None:
    if not settings.nats_tls_ca:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.nats_tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSettingsError("CA", settings.nats_tls_ca, str(exc)) from None
    if settings.nats_tls_cert:
        try:
            context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSettingsError("client certificate", settings.nats_tls_cert,
                                   str(exc)) from None
    return context


def connect_options(settings: BusSettings) -> dict[str, Any]:
    """user, password and inbox prefix of the identity (when set), and the TLS context
    (when a CA is set)."""
    options: dict[str, Any] = {}
    creds = identity_of(settings)
    if creds is not None:
        options.update(user=creds.user, password=creds.password,
                       inbox_prefix=inbox(creds.user))
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    return options


def command_settings(identity: str, creds_dir: Path | None = None) -> BusSettings:
    """The bus settings of one CLI command that acts as `identity`: its file in `creds_dir`
    if given, else `CREWBUS_NATS_CREDS` if set, else its file in `<data dir>/nats-auth/`
    when `crewbus up` made one (else none: an anonymous connection)."""
    import msgspec

    from crewbus.auth.credentials import credentials_path, default_dir
    from crewbus.settings import data_dir, load

    settings = load(BusSettings)
    if creds_dir is not None:
        return msgspec.structs.replace(
            settings, nats_creds=str(credentials_path(creds_dir, identity)))
    if settings.nats_creds:
        return settings
    found = credentials_path(default_dir(data_dir()), identity)
    if not found.exists():
        return settings
    return msgspec.structs.replace(settings, nats_creds=str(found))

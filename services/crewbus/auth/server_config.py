"""The nats-server config that enforces `permissions.IDENTITIES` for these credentials.

nats-server reads JSON as its config syntax; the file holds the passwords, so it is written
mode 0600 like the credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from crewbus.auth.credentials import SERVER_CONFIG, Credentials, write_private
from crewbus.auth.permissions import grants_for, inbox


class ServerTls(msgspec.Struct, frozen=True, kw_only=True):
    """The server's certificate and key; `ca_file` set, clients must present a certificate
    it signed."""

    cert_file: str
    key_file: str
    ca_file: str | None = None


def user_entry(creds: Credentials) -> dict[str, Any]:
    grants = grants_for(creds.user)
    permissions: dict[str, Any] = {
        "publish": {"allow": list(grants.publish)},
        "subscribe": {"allow": [*grants.subscribe, f"{inbox(creds.user)}.>"]},
    }
    if grants.responds:
        permissions["allow_responses"] = True
    return {"user": creds.user, "password": creds.password, "permissions": permissions}


def render_server_config(credentials: dict[str, Credentials],
                         tls: ServerTls | None = None) -> bytes:
    config: dict[str, Any] = {
        "authorization": {"users": [user_entry(c) for c in credentials.values()]},
    }
    if tls is not None:
        block: dict[str, Any] = {"cert_file": tls.cert_file, "key_file": tls.key_file}
        if tls.ca_file:
            block.update(ca_file=tls.ca_file, verify=True)
        config["tls"] = block
    return msgspec.json.format(msgspec.json.encode(config), indent=2)


def write_server_config(directory: Path, credentials: dict[str, Credentials],
                        tls: ServerTls | None = None) -> Path:
    path = directory / SERVER_CONFIG
    write_private(path, render_server_config(credentials, tls))
    return path

"""`crewbus up` with authentication: the credentials it makes or is given, the server config
it starts nats-server with, each child's own identity, and the bus set up as `admin`."""

from __future__ import annotations

from pathlib import Path

import msgspec

from crewbus.auth.credentials import (
    SERVER_CONFIG,
    credentials_path,
    default_dir,
    ensure,
    read_credentials,
)
from crewbus.auth.permissions import ADMIN, SERVICE_IDENTITIES
from crewbus.config import Settings


class StackAuth(msgspec.Struct, frozen=True):
    """Where the stack's credentials are; `server_config` is None for an external server
    (it enforces its own)."""

    directory: Path
    server_config: Path | None

    def child_env(self, service: str) -> dict[str, str]:
        """The variables that make `service` connect as itself."""
        return {"CREWBUS_NATS_CREDS": str(credentials_path(self.directory, service))}


def stack_auth(root: Path, creds_dir: str | None, no_auth: bool, external: bool
               ) -> StackAuth | None:
    """None without authentication (`--no-auth`, or an external server and no `--creds`).
    The embedded server gets the credentials in `--creds DIR`, else in
    `<data dir>/nats-auth/` (made on the first run, kept afterwards)."""
    if no_auth or (external and creds_dir is None):
        return None
    directory = Path(creds_dir).resolve() if creds_dir else default_dir(root)
    if external:
        for identity in (ADMIN, *SERVICE_IDENTITIES):  # say now which one is missing
            read_credentials(credentials_path(directory, identity))
        return StackAuth(directory, None)
    ensure(directory)
    return StackAuth(directory, directory / SERVER_CONFIG)


async def set_up_bus(url: str, settings: Settings, auth: StackAuth) -> None:
    """Streams, consumers, buckets and the trace stream, made as `admin`: the services'
    own identities may not, so they find them ready."""
    from crewbus.bus.connection import connect_for_command
    from crewbus.bus.topology import ensure_topology
    from crewbus.tracing import ensure_trace_stream

    nc = await connect_for_command(url, ADMIN, auth.directory)
    try:
        js = nc.jetstream(timeout=10)
        await ensure_topology(js, settings.orchestrator)
        await ensure_trace_stream(js, settings.tracing)
    finally:
        await nc.close()


async def set_up_bus_command(url: str, creds_dir: str | None) -> int:
    """`crewbus auth setup-bus`: the streams, consumers and buckets, made as `admin`, for
    services that run on their own identities (which may not make them)."""
    from crewbus.config import load_settings
    from crewbus.settings import data_dir

    directory = Path(creds_dir).resolve() if creds_dir else default_dir(data_dir())
    await set_up_bus(url, load_settings(), StackAuth(directory, None))
    print(f"streams, consumers and buckets are in place on {url}")
    return 0

"""NATS credentials: one JSON file per identity (`{"user", "password"}`), readable only by
the user who runs crewbus, in a directory only that user can enter."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import msgspec

from crewbus.auth.permissions import IDENTITIES

DIR_NAME = "nats-auth"
"""The credentials' directory under the data directory (`crewbus up`, `crewbus auth init`)."""
SERVER_CONFIG = "nats-server.conf"
"""The nats-server config beside the credentials (users, passwords, permissions)."""
PASSWORD_BYTES = 32


class Credentials(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: str
    password: str

    def __repr__(self) -> str:  # never the password, whatever prints it
        return f"Credentials(user={self.user!r})"


class CredentialsError(RuntimeError):
    """A credentials file is missing, unreadable or malformed; says which, never its content."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"NATS credentials {path}: {problem}")


def default_dir(data_dir: Path) -> Path:
    return data_dir / DIR_NAME


def credentials_path(directory: Path, identity: str) -> Path:
    return directory / f"{identity}.json"


def read_credentials(path: Path) -> Credentials:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CredentialsError(path, "no such file (run `crewbus auth init`)") from None
    except OSError as exc:
        raise CredentialsError(path, f"cannot read it ({exc.strerror})") from None
    try:
        return msgspec.json.decode(raw, type=Credentials)
    except msgspec.DecodeError:
        raise CredentialsError(path, 'not a JSON object {"user": ..., "password": ...}') from None


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a file created with mode 0600 (never readable by others, not even
    for a moment), replacing any older one atomically."""
    temporary = path.with_suffix(path.suffix + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def make_private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)


def generate(directory: Path) -> dict[str, Credentials]:
    """A fresh password for every identity in `IDENTITIES`, written one file each, plus the
    server config that accepts them (`server_config.write_server_config`)."""
    from crewbus.auth.server_config import write_server_config

    make_private_dir(directory)
    made = {identity: Credentials(identity, secrets.token_urlsafe(PASSWORD_BYTES))
            for identity in IDENTITIES}
    for identity, creds in made.items():
        write_private(credentials_path(directory, identity), msgspec.json.encode(creds))
    write_server_config(directory, made)
    return made


def read_all(directory: Path) -> dict[str, Credentials]:
    """Every identity's credentials in `directory`; a missing one is an error that says so."""
    return {identity: read_credentials(credentials_path(directory, identity))
            for identity in IDENTITIES}


def ensure(directory: Path) -> dict[str, Credentials]:
    """The credentials in `directory`, generated when there are none yet (an identity added
    since they were made gets the whole set regenerated: the table changed)."""
    if all(credentials_path(directory, i).exists() for i in IDENTITIES):
        found = read_all(directory)
        from crewbus.auth.server_config import write_server_config

        write_server_config(directory, found)  # permissions follow the table in this code
        return found
    return generate(directory)

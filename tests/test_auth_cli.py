"""`crewbus auth init|show`, and the CLI with missing, malformed or wrong credentials: one
line naming the problem, a non-zero exit, and never a secret on the screen."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from crewbus.auth.credentials import credentials_path, generate, read_credentials
from crewbus.auth.permissions import IDENTITIES
from crewbus.devstack.nats_server import NatsServer
from tests.test_cli_errors import one_line_error


def crewbus(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CREWBUS_")}
    return subprocess.run([sys.executable, "-m", "crewbus", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_auth_init_writes_private_files_and_refuses_to_overwrite_without_rotate(
    tmp_path: Path
) -> None:
    directory = tmp_path / "creds"
    made = crewbus("auth", "init", "--dir", str(directory))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.iterdir())
    assert {p.name for p in files} == {f"{i}.json" for i in IDENTITIES} | {"nats-server.conf"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    before = read_credentials(credentials_path(directory, "client")).password

    one_line_error(crewbus("auth", "init", "--dir", str(directory)), 1, "already",
                   "--rotate")
    rotated = crewbus("auth", "init", "--dir", str(directory), "--rotate")
    assert rotated.returncode == 0 and "reload" in rotated.stdout, rotated.stdout
    after = read_credentials(credentials_path(directory, "client")).password
    assert after != before


def test_auth_show_says_who_may_do_what_and_never_prints_a_password(tmp_path: Path) -> None:
    directory = tmp_path / "creds"
    made = generate(directory)
    shown = crewbus("auth", "show", "--dir", str(directory))
    detail = crewbus("auth", "show", "--dir", str(directory), "--identity", "planner")
    for result in (shown, detail):
        assert result.returncode == 0, result.stderr
        for creds in made.values():
            assert creds.password not in result.stdout + result.stderr
    for identity in IDENTITIES:
        assert re.search(rf"^{identity} \(", shown.stdout, re.M), shown.stdout
    assert "CREWBUS_WORK / agent-planner" in shown.stdout
    assert "$JS.API.CONSUMER.MSG.NEXT.CREWBUS_WORK.agent-planner" in detail.stdout
    assert "_INBOX.planner.>" in detail.stdout
    one_line_error(crewbus("auth", "show", "--identity", "nobody"), 1, "nobody")


@pytest.fixture
def auth_server(tmp_path: Path) -> tuple[NatsServer, Path]:
    directory = tmp_path / "creds"
    generate(directory)
    server = NatsServer(tmp_path / "nats", config_file=directory / "nats-server.conf").start()
    yield server, directory  # type: ignore[misc]
    server.stop()


def test_missing_malformed_and_wrong_credentials_are_one_line_each(
    auth_server: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, directory = auth_server
    url = server.url
    one_line_error(crewbus("submit", "hi", "--nats", url), 1, "refused the connection",
                   "authorization violation", "CREWBUS_NATS_CREDS")
    one_line_error(crewbus("submit", "hi", "--nats", url,
                           CREWBUS_NATS_CREDS=str(tmp_path / "nope.json")), 1,
                   "nope.json", "no such file", "crewbus auth init")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("user=client")
    one_line_error(crewbus("watch", "t1", "--nats", url, CREWBUS_NATS_CREDS=str(garbage)), 1,
                   "garbage.json", "not a JSON object")
    real = read_credentials(credentials_path(directory, "client"))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(f'{{"user": "client", "password": "{real.password}x"}}')
    line = one_line_error(crewbus("cancel", "t1", "--nats", url,
                                  CREWBUS_NATS_CREDS=str(wrong)), 1, "refused")
    assert real.password not in line
    # A service with wrong credentials stops at once instead of waiting for NATS.
    one_line_error(crewbus("serve", "planner", "--nats", url, CREWBUS_NATS_CREDS=str(wrong),
                           CREWBUS_METRICS_PORT="0"), 1, "crewbus serve:", "refused")
    # The right identity for the wrong command: the violation, named, instead of a timeout.
    one_line_error(crewbus("status", "t1", "--nats", url,
                           CREWBUS_NATS_CREDS=str(credentials_path(directory, "client"))), 1,
                   "permissions violation", "kv_crewbus_tasks", "crewbus auth show")
    one_line_error(crewbus("up", "--nats", url, "--creds", str(tmp_path / "none")), 1,
                   "admin.json", "no such file")

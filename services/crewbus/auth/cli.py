"""`crewbus auth init|show`: make the credentials, and say who may do what (never a secret)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crewbus.auth.credentials import credentials_path, default_dir, generate
from crewbus.auth.describe import describe
from crewbus.auth.permissions import IDENTITIES, Grants, grants_for, inbox
from crewbus.settings import data_dir

EXIT_ERROR = 1


def auth_command(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve() if args.dir else default_dir(data_dir())
    if args.auth_command == "init":
        return _init(directory, args.rotate)
    if args.identity:
        print(identity_detail(args.identity, grants_for(args.identity)))
        return 0
    print(permissions_table(directory))
    return 0


def _init(directory: Path, rotate: bool) -> int:
    existing = [i for i in IDENTITIES if credentials_path(directory, i).exists()]
    if existing and not rotate:
        print(f"crewbus auth init: credentials already in {directory} (--rotate replaces "
              "them)", file=sys.stderr)
        return EXIT_ERROR
    generate(directory)
    print(f"credentials for {len(IDENTITIES)} identities and nats-server.conf in {directory}/ "
          "(mode 0600)")
    if rotate:
        print("now reload nats-server (nats-server --signal reload, or restart `crewbus up`), "
              "then restart every service: the old passwords no longer work")
    return 0


def permissions_table(directory: Path) -> str:
    """One block per identity: where its credentials are, and what it may do."""
    blocks = []
    for identity, grants in IDENTITIES.items():
        path = credentials_path(directory, identity)
        where = str(path) if path.exists() else "none yet: crewbus auth init"
        lines = [f"{identity} ({where})"]
        lines += [f"  {column:<11} {text}" for column, text in describe(grants).items()]
        blocks.append("\n".join(lines))
    return "\n".join([*blocks, "", "`crewbus auth show --identity NAME` lists every subject, "
                      "JetStream API requests included."])


def identity_detail(identity: str, grants: Grants) -> str:
    lines = [f"{identity}: may publish to"]
    lines += [f"  {name}" for name in grants.publish]
    lines.append("may subscribe to")
    lines += [f"  {name}" for name in (*grants.subscribe, f"{inbox(identity)}.>")]
    if grants.responds:
        lines.append("and may reply to the requests it receives")
    return "\n".join(lines)

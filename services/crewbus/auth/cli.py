"""`crewbus auth init|show`: make the credentials, and say who may do what (never a secret)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crewbus.auth.credentials import credentials_path, default_dir, generate
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
    """One row per identity: where its credentials are, and its grants in short."""
    rows = [("identity", "credentials", "may publish", "may subscribe")]
    for identity, grants in IDENTITIES.items():
        path = credentials_path(directory, identity)
        rows.append((identity, str(path) if path.exists() else "(none yet)",
                     summary(grants.publish), summary(grants.subscribe, grants.responds)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
             for row in rows]
    return "\n".join([*lines, "", "`crewbus auth show --identity NAME` lists every subject."])


def summary(names: tuple[str, ...], responds: bool = False) -> str:
    """The crewbus subjects in full, the JetStream API requests counted."""
    if names == (">",):
        return "everything"
    own = [n for n in names if not n.startswith("$")]
    api = len(names) - len(own)
    parts = [*own, *([f"+{api} JetStream API subjects"] if api else []),
             *(["replies to requests"] if responds else [])]
    return ", ".join(parts) or "-"


def identity_detail(identity: str, grants: Grants) -> str:
    lines = [f"{identity}: may publish to"]
    lines += [f"  {name}" for name in grants.publish]
    lines.append("may subscribe to")
    lines += [f"  {name}" for name in (*grants.subscribe, f"{inbox(identity)}.>")]
    if grants.responds:
        lines.append("and may reply to the requests it receives")
    return "\n".join(lines)

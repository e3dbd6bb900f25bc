"""The `crewbus` console script: a Ctrl-C while the command line loads (its imports, its
parser) exits with 130 and no traceback, as one during the command does (`crewbus.cli`)."""

from __future__ import annotations


def main() -> int:
    try:
        from crewbus.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        return 130

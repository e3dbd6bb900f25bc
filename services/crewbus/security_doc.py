"""`python -m crewbus.security_doc`: write the identity table (`crewbus.auth.describe`)
into docs/security.md, between its markers; `tests/test_auth_permissions.py` checks it."""

from __future__ import annotations

import sys
from pathlib import Path

from crewbus.auth.describe import markdown_table
from crewbus.settings_doc import generated_section

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
BEGIN, END = "<!-- identities:begin -->", "<!-- identities:end -->"


def doc_section(text: str) -> str:
    return generated_section(text, BEGIN, END)


def render_section() -> str:
    return f"{BEGIN}\n{markdown_table()}\n{END}"


def main() -> None:
    text = DOC.read_text()
    DOC.write_text(text.replace(doc_section(text), render_section()))
    print(f"wrote the identity table to {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()

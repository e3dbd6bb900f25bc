"""The identity table in words: what each identity may do, read off its grants (so the
words cannot drift from what the server enforces). `crewbus auth show` prints it, and
docs/security.md holds it (`python -m crewbus.security_doc` rewrites that section)."""

from __future__ import annotations

import re

from crewbus.auth.permissions import IDENTITIES, JS_API, Grants


def _after(prefix: str, names: tuple[str, ...]) -> list[str]:
    return [n.removeprefix(prefix) for n in names if n.startswith(prefix)]


def describe(grants: Grants) -> dict[str, str]:
    """Column → text: publishes, subscribes, consumes, writes KV, reads."""
    if grants.publish == (">",):
        return {"publishes": "everything", "subscribes": "everything", "consumes": "any",
                "writes KV": "any", "reads": "any, and administers streams"}
    pub = grants.publish
    consumes = [n.replace(".", " / ", 1) for n in _after(f"{JS_API}.CONSUMER.MSG.NEXT.", pub)]
    writes = [n.removesuffix(".>") for n in _after("$KV.", pub)]
    read_streams = [n for n in _after(f"{JS_API}.CONSUMER.CREATE.", pub) if "." not in n]
    reads = [s.removeprefix("KV_") for s in read_streams if s.removeprefix("KV_") not in writes]
    subscribes = [*grants.subscribe, *(["replies to requests"] if grants.responds else [])]
    plain = [n for n in pub if not n.startswith("$")]
    return {"publishes": ", ".join(plain) or "-", "subscribes": ", ".join(subscribes) or "-",
            "consumes": ", ".join(consumes) or "-", "writes KV": ", ".join(writes) or "-",
            "reads": ", ".join(reads) or "-"}


def markdown_table() -> str:
    columns = ["publishes", "subscribes", "consumes", "writes KV", "reads"]
    lines = ["| identity | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for identity, grants in IDENTITIES.items():
        row = describe(grants)
        lines.append(f"| `{identity}` | " + " | ".join(
            re.sub(r"([\w.*>$-]*[.*>][\w.*>$-]*)", r"`\1`", row[c]) for c in columns) + " |")
    return "\n".join(lines)

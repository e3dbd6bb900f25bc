"""Judge rubrics: a prompt file with its own version, packaged or the user's.

A rubric starts with its version, in front matter or on its first line:

    ---                          version: 2
    version: 2                   You are grading ...
    ---
    You are grading ...

The version goes into every score the judge gives (`scorer_version`), so a changed rubric
never silently mixes with the old one's results. A file without a version is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.errors import ScorerConfigError

PACKAGE = "crewbus.evals.rubrics"
_VERSION = re.compile(r"^version\s*:\s*(\S+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Rubric:
    name: str
    version: str
    text: str
    source: str


def packaged_rubrics() -> list[str]:
    return sorted(
        entry.name.removesuffix(".md")
        for entry in resources.files(PACKAGE).iterdir()
        if entry.name.endswith(".md")
    )


def load_rubric(name: str, context: ScorerContext) -> Rubric:
    """A packaged rubric by name (`correctness`), or a file (a path, or a name ending in
    `.md`, relative to the eval file)."""
    if "/" not in name and "\\" not in name and not name.endswith(".md"):
        if name not in packaged_rubrics():
            raise ScorerConfigError(
                f"no packaged rubric {name!r} (packaged: {', '.join(packaged_rubrics())}; "
                "or give a path to your own .md file)"
            )
        text = resources.files(PACKAGE).joinpath(f"{name}.md").read_text(encoding="utf-8")
        return parse_rubric(text, name, f"packaged rubric {name}")
    path = context.resolve(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScorerConfigError(f"cannot read rubric {path}: {exc.strerror}") from None
    return parse_rubric(text, path.stem, str(path))


def parse_rubric(text: str, name: str, source: str) -> Rubric:
    """The version and the prompt of a rubric file's text."""
    lines = text.lstrip("\ufeff").splitlines()
    version: str | None = None
    body_from = 0
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is None:
            raise ScorerConfigError(f"{source}: its front matter has no closing `---`")
        for line in lines[1:end]:
            found = _VERSION.match(line.strip())
            if found:
                version = found.group(1)
        body_from = end + 1
    elif lines:
        found = _VERSION.match(lines[0].strip())
        if found:
            version, body_from = found.group(1), 1
    if version is None:
        raise ScorerConfigError(
            f"{source} has no version: start it with `version: 1` (or front matter)"
        )
    body = "\n".join(lines[body_from:]).strip()
    if not body:
        raise ScorerConfigError(f"{source} has a version but no prompt")
    return Rubric(name=name, version=version, text=body, source=source)

"""System prompts, one file per agent; each carries the version that travels with results."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Prompt:
    version: str
    text: str


class PromptFileError(ValueError):
    """A prompt file lacks its `version:` header."""


def load_prompt(name: str) -> Prompt:
    """Read the file `name` (`planner.md`) of this folder: a `---` header with
    `version: ...`, then the prompt text."""
    raw = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    if not raw.startswith("---\n"):
        raise PromptFileError(f"{name} must start with a '---' header naming its version")
    header, _, body = raw[4:].partition("\n---\n")
    fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
    version = fields.get("version", "").strip()
    if not version:
        raise PromptFileError(f"{name} header has no version")
    return Prompt(version=version, text=body.strip())

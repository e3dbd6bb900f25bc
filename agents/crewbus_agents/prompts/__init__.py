"""System prompts, one file per agent, in the one prompt-file format.

A prompt file is a `---` header naming its version, then the prompt text:

    ---
    version: critic-v3
    ---
    You are the critic of ...

The files here are each role's packaged prompt, seeded as version 1 on a new bus
(`crewbus.variants.seed`); `crewbus prompt push` takes files of the same format, so a
packaged file can be pushed as it is and `crewbus prompt show` prints one back.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_HEADER_END = re.compile(r"\n---[ \t]*(?:\n|$)")
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class Prompt:
    version: str
    """The header's `version:`, the author's name for this text (e.g. `critic-v2`)."""
    text: str

    @property
    def sha256(self) -> str:
        """Of the text exactly as the model is sent it."""
        return prompt_sha256(self.text)


class PromptFileError(ValueError):
    """A prompt file is not a `---` header with `version:` followed by the prompt text."""


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_prompt(raw: str, source: str) -> Prompt:
    """The prompt in `raw`, the contents of a prompt file (`source` names it in errors)."""
    raw = raw.replace("\r\n", "\n").lstrip("\ufeff")
    if not raw.startswith("---\n"):
        raise PromptFileError(f"{source} must start with a '---' header naming its version "
                              "(a line '---', then 'version: NAME', then '---')")
    end = _HEADER_END.search(raw, 3)
    if end is None:
        raise PromptFileError(f"{source}: the header is not closed by a '---' line")
    header, body = raw[4:end.start() + 1], raw[end.end():]
    fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
    version = fields.get("version", "").strip()
    if not version:
        raise PromptFileError(f"{source}: the header has no 'version: NAME' line")
    if len(version) > MAX_NAME_LENGTH or "\n" in version:
        raise PromptFileError(f"{source}: the version name is over {MAX_NAME_LENGTH} "
                              "characters")
    text = body.strip()
    if not text:
        raise PromptFileError(f"{source} has no prompt text after its header")
    return Prompt(version=version, text=text)


def prompt_file(prompt: Prompt) -> str:
    """`prompt` in the prompt-file format, as `parse_prompt` reads it back."""
    return f"---\nversion: {prompt.version}\n---\n{prompt.text}\n"


def load_prompt(name: str) -> Prompt:
    """The packaged prompt file `name` (`planner.md`) of this folder."""
    raw = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return parse_prompt(raw, name)

"""Prompts and variants on the bus: versioned, labelled system prompts and the named sets of
per-role overrides a task runs under.

Kept in JetStream KV (see `subjects.py`):

- `PROMPTS_KV`: per role, a `PromptIndex` at key `<role>` (every version's metadata and
  the labels) and each version's text as a `PromptText` at `<role>.<number>`. Versions are
  numbered per role from 1, immutable and never deleted; labels (`production`,
  `candidate`, ...) point at a version and move.
- `VARIANTS_KV`: a `Variant` at key `<name>`. `production` is never stored: it is the
  implicit variant, every role on its `production` label.
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

import msgspec

from crewbus_contracts.base import AgentRole, Message, Model

PRODUCTION = "production"
"""The label every role's served prompt carries, and the name of the implicit variant."""

VARIANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""A variant's name: it is a KV key and a metric label value."""
LABEL_NAME = r"^[a-z][a-z0-9_-]{0,31}$"
"""A prompt label: starts with a letter, so it never reads as a version number."""
PROMPT_REF = r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,31})$"
"""What a variant names a prompt by: a version number (`3`) or a label (`candidate`)."""
ENDPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A model endpoint's name, as configured in `CREWBUS_MODEL_ENDPOINTS`."""

PromptSource = Literal["packaged", "pushed"]
"""`packaged`: a prompt file shipped in `crewbus_agents/prompts/`, seeded at start-up;
`pushed`: stored by `crewbus prompt push`."""


class PromptVersionInfo(Model):
    """One version of a role's prompt, without its text (that is a `PromptText`)."""

    number: Annotated[int, msgspec.Meta(ge=1)]
    sha256: str
    """Of the prompt text exactly as the model is sent it."""
    name: str
    """The `version:` the prompt file's header gave (e.g. `critic-v2`): the author's name
    for it. The number, not the name, is what results and traces carry."""
    created_at: float
    source: PromptSource = "pushed"


class PromptIndex(Message, tag="prompt_index"):
    """A role's prompt versions (oldest first) and where each label points."""

    role: AgentRole
    versions: list[PromptVersionInfo] = []
    labels: dict[str, int] = {}
    """Label -> version number; `production` is the one a task gets by default."""

    def version(self, number: int) -> PromptVersionInfo | None:
        return next((v for v in self.versions if v.number == number), None)

    def by_sha256(self, sha256: str) -> PromptVersionInfo | None:
        return next((v for v in self.versions if v.sha256 == sha256), None)

    def labels_of(self, number: int) -> list[str]:
        return sorted(label for label, n in self.labels.items() if n == number)

    def resolve(self, ref: str) -> int | None:
        """The version `ref` names (a number or a label), None when there is none."""
        number = self.labels.get(ref) if not ref.isdigit() else int(ref)
        return number if number is not None and self.version(number) is not None else None


class PromptText(Message, tag="prompt_text"):
    """The text of one prompt version, at key `<role>.<number>`; written once."""

    role: AgentRole
    number: Annotated[int, msgspec.Meta(ge=1)]
    name: str
    sha256: str
    text: Annotated[str, msgspec.Meta(min_length=1)]


class RoleOverride(Model):
    """What a variant changes for one role; every field left unset keeps production's."""

    prompt: Annotated[str, msgspec.Meta(pattern=PROMPT_REF)] | None = None
    """A version number or a label; unset means the `production` label."""
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    """The model name to request; unset keeps the agent's configured model."""
    endpoint: Annotated[str, msgspec.Meta(pattern=ENDPOINT_NAME)] | None = None
    """A named endpoint of the agents' `CREWBUS_MODEL_ENDPOINTS` (a base URL and the
    variable holding its key: never the key itself); unset keeps the configured one."""
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    max_tool_calls: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    """Tool calls allowed in one step (roles that use tools)."""


class Variant(Message, tag="variant"):
    """A named set of per-role overrides; a task names one at submission."""

    name: Annotated[str, msgspec.Meta(pattern=VARIANT_NAME)]
    roles: dict[AgentRole, RoleOverride] = {}
    created_at: float = 0.0
    updated_at: float = 0.0
    description: str = ""

    def override(self, role: str) -> RoleOverride:
        return self.roles.get(cast(AgentRole, role)) or RoleOverride()

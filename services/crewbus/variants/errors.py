"""What can be wrong with a prompt or a variant: one class per condition, each saying what
to do. None is retried: the same request fails the same way until someone changes a
prompt, a variant or the agents' settings."""

from __future__ import annotations

from crewbus_contracts import PromptIndex


class VariantsError(Exception):
    """Base of every error of `crewbus.variants`."""


class UnknownVariantError(VariantsError):
    def __init__(self, name: str) -> None:
        super().__init__(f"variant {name!r} does not exist (`crewbus variant list` shows "
                         "those that do)")
        self.name = name


class UnknownPromptError(VariantsError):
    """A version number or label that a role's prompts do not have."""

    def __init__(self, role: str, ref: str, index: PromptIndex | None,
                 variant: str | None = None) -> None:
        have = describe(index) if index is not None else f"no {role} prompt is stored yet"
        if variant:
            message = (f"variant {variant!r} asks for {role} prompt {ref!r}, which does not "
                       f"exist ({have})")
        else:
            message = f"{role} has no prompt {ref!r} ({have})"
        super().__init__(message)
        self.role, self.ref, self.variant = role, ref, variant


class EndpointError(VariantsError):
    """A variant names a model endpoint this agent cannot use (unknown, or its key unset)."""


class StoreContendedError(VariantsError):
    """Others changed the same document every time this writer tried."""


def describe(index: PromptIndex) -> str:
    """`versions 1-3; labels candidate=3, production=2`: what a role's prompts offer."""
    numbers = [v.number for v in index.versions]
    if not numbers:
        return f"no {index.role} prompt is stored yet"
    versions = (f"version {numbers[0]}" if len(numbers) == 1
                else f"versions {min(numbers)}-{max(numbers)}")
    labels = ", ".join(f"{label}={n}" for label, n in sorted(index.labels.items()))
    return f"{versions}; labels {labels or 'none'}"

"""The scorers' errors: one class per condition, each a single line that names the scorer."""

from __future__ import annotations


class ScorerDefinitionError(TypeError):
    """A function cannot be a scorer (wrong signature, bad kind, reserved parameter name):
    raised when it is decorated, so the mistake shows at import time."""


class ScorerConfigError(ValueError):
    """A scorer cannot be built from its spec (unknown kind, bad parameters, a missing
    rubric or schema file, a plugin that does not import). Raised before any item runs."""


class ScoringError(Exception):
    """This item cannot be judged (no expected value, an unreachable judge...). Raised
    inside a scorer, it becomes a Score with `error` set: an evaluation error, never a pass
    and never a plain fail."""

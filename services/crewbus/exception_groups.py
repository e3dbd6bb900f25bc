"""What an error that travelled through task groups was, before they wrapped it."""

from __future__ import annotations


def innermost(exc: BaseException) -> BaseException:
    """The error itself, out of the single-error groups it travelled through."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc

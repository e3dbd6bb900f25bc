"""The LLM layer's errors: one class per condition, so callers decide retry vs. fail."""

from __future__ import annotations

from crewbus_contracts.tasks import TokenUsage


class LLMError(Exception):
    """Base of every error raised by `crewbus.llm`."""


class LLMUnavailableError(LLMError):
    """The model could not be reached or was overloaded (connection, timeout, 429, 5xx).

    Retryable: the work message should be redelivered, not failed.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMRequestError(LLMError):
    """The provider rejected the request (bad key, unknown model, bad parameters).

    Not retryable: the same request fails the same way until the configuration changes.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OutputValidationError(LLMError):
    """The model's reply did not match the contract, even after being shown its error.

    Carries the tokens spent, and their USD cost (None: unpriced), so the caller can still
    account for them.
    """

    def __init__(
        self, output_type: str, validation_error: str, *, attempts: int, usage: TokenUsage,
        cost_usd: float | None = None,
    ) -> None:
        super().__init__(
            f"model reply is not a valid {output_type} after {attempts} attempt(s): "
            f"{validation_error}"
        )
        self.output_type = output_type
        self.validation_error = validation_error
        self.attempts = attempts
        self.usage = usage
        self.cost_usd = cost_usd

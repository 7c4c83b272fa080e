"""The errors a `ChatModel` raises, independent of the provider.

Adapters translate their SDK's exceptions into these, so retry and failover decisions are made once,
on `retryable` and `retry_after`, never on vendor types.
"""

from __future__ import annotations


class ModelError(Exception):
    """A model call failed. `retryable` says whether the same call may succeed if tried again."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def kind(self) -> str:
        """Short machine-readable name of the failure, used in results and events."""
        return _KINDS.get(type(self), "model_error")


class ModelTimeout(ModelError):
    """The call did not finish within the agent's timeout."""

    retryable = True


class RateLimited(ModelError):
    """HTTP 429: the provider asked us to slow down, maybe with `Retry-After`."""

    retryable = True


class ProviderUnavailable(ModelError):
    """A 5xx answer or a connection failure: the provider may recover."""

    retryable = True


class MalformedResponse(ModelError):
    """The provider answered, but the answer is unusable (bad tool-call JSON, truncated stream)."""

    retryable = True


class EmptyAnswer(ModelError):
    """The provider answered with nothing: no text (null, empty or blank) and no tool call. A failed
    call like any other, so the step fails over; not retried on the same agent, which would most
    likely answer the same prompt with nothing again."""


class AuthenticationFailed(ModelError):
    """HTTP 401/403: the key is missing, wrong or lacks permission. Retrying will not help."""


class BadRequest(ModelError):
    """HTTP 4xx other than 401/403/429: the request itself is wrong. Retrying will not help."""


class ModelRequestsForbidden(ModelError):
    """A real provider was called while real calls are switched off (the test suite)."""


_KINDS: dict[type[ModelError], str] = {
    ModelTimeout: "timeout",
    RateLimited: "rate_limited",
    ProviderUnavailable: "provider_unavailable",
    MalformedResponse: "malformed_response",
    EmptyAnswer: "empty_answer",
    AuthenticationFailed: "authentication_failed",
    BadRequest: "bad_request",
    ModelRequestsForbidden: "model_requests_forbidden",
}

"""The one exception hierarchy of cynaps_data (stdlib only).

Every error raised by the client, the ingest/export helpers and the consensus engine derives
from :class:`CynapsError`. Errors that come from the platform carry the HTTP ``status``, the
machine-readable ``code``, the human ``message`` and the ``request_id`` the server assigned, so a
bug report can name the exact request. Subclasses also derive from the built-in exception they
resemble (``ValueError``, ``LookupError``, ...) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "CynapsError",
    "ConfigurationError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ValidationError",
    "ConflictError",
    "InvalidStateError",
    "IdempotencyError",
    "InsufficientCreditsError",
    "PaymentDeclinedError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "WebhookVerificationError",
]


class CynapsError(Exception):
    """Root of every error raised by cynaps_data."""

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.param = param

    def __str__(self) -> str:
        text = self.message
        if self.request_id:
            text += f" (request id: {self.request_id})"
        return text


class ConfigurationError(CynapsError, ValueError):
    """The client could not be configured (missing API key, bad config file, ...)."""


class APIError(CynapsError):
    """An error response from the platform."""


class AuthenticationError(APIError, ConfigurationError):
    """401: the API key is missing, malformed, unknown or revoked."""


class PermissionDeniedError(APIError, PermissionError):
    """403: the key is valid but its role may not do this."""


class NotFoundError(APIError, LookupError):
    """404: no such resource for this account (other accounts' resources are 404 too)."""


class ValidationError(CynapsError, ValueError):
    """400/413/422: the request (or local input such as a DataFrame) is invalid.

    ``param`` names the offending field, column or row where known.
    """


class ConflictError(APIError):
    """409: the request conflicts with the resource's current state."""


class InvalidStateError(ConflictError):
    """409: the project is in a state that does not allow this call; the message says what to do."""


class IdempotencyError(ConflictError):
    """409/422: an ``Idempotency-Key`` was reused with a different request, or is still in flight."""


class InsufficientCreditsError(APIError):
    """402: the account balance cannot cover the operation."""


class PaymentDeclinedError(APIError):
    """402: the payment method declined the charge."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` holds the seconds the server asked to wait."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the platform failed; the request may be retried."""


class APIConnectionError(CynapsError, ConnectionError):
    """The platform could not be reached (refused, reset, DNS, ...)."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """The platform did not answer within the client's timeout."""


class WebhookVerificationError(CynapsError, ValueError):
    """A received webhook failed verification (``cynaps_data.webhooks.verify``): a missing
    header, no matching signature, or a timestamp outside the tolerance. ``code`` says which."""

"""Server-side errors and their one response shape: ``{"error": {"type", "message", "code"}}``.

Services raise :class:`Problem` (or a helper below); the app turns it into JSON with the
request id header. The client maps these back in ``cynaps_data._http.error_from_response``.
"""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """An error the API reports to the caller."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def not_found(what: str, ident: object) -> Problem:
    return Problem(404, "resource_missing", f"No such {what}: {ident!r}", param="id")


def invalid(message: str, *, param: str | None = None, code: str = "invalid_request") -> Problem:
    return Problem(422, code, message, param=param)


def invalid_state(message: str) -> Problem:
    return Problem(409, "invalid_state", message, type="invalid_state_error")


def forbidden(message: str) -> Problem:
    return Problem(403, "permission_denied", message, type="permission_error")


def insufficient_credits(needed_cents: int, balance_cents: int) -> Problem:
    return Problem(
        402,
        "insufficient_credits",
        "Not enough credits for this operation: need "
        f"{needed_cents / 100:.2f}, balance {balance_cents / 100:.2f}. "
        "Add credits (POST /v1/billing/topups) or pay with a payment method.",
        type="billing_error",
    )

"""``client.api_keys``: create (the secret is shown once), list and revoke API keys."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._http import Transport
from ..errors import ValidationError


@dataclass(frozen=True)
class ApiKey:
    """One API key. ``secret`` is set only on the object :meth:`ApiKeysService.create` returns."""

    id: str
    name: str | None
    prefix: str
    status: str  # active | expired | revoked
    created_at: float
    last_used_at: float | None = None
    expires_at: float | None = None
    revoked_at: float | None = None
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> ApiKey:
        return cls(
            id=body["id"],
            name=body.get("name"),
            prefix=body["prefix"],
            status=body["status"],
            created_at=body["created_at"],
            last_used_at=body.get("last_used_at"),
            expires_at=body.get("expires_at"),
            revoked_at=body.get("revoked_at"),
            secret=body.get("secret"),
        )


class ApiKeysService:
    """Keys of the client's account. Several may be live at once (rotate without downtime)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create(
        self,
        name: str,
        *,
        expires_at: datetime | float | None = None,
        expires_in_days: float | None = None,
    ) -> ApiKey:
        """A new key; its ``secret`` is in the returned object and never shown again."""
        body: dict[str, Any] = {"name": name}
        if isinstance(expires_at, datetime):
            expires_at = expires_at.timestamp()
        if expires_at is not None:
            body["expires_at"] = expires_at
        if expires_in_days is not None:
            if (
                not isinstance(expires_in_days, numbers.Real)
                or isinstance(expires_in_days, bool)
                or not math.isfinite(expires_in_days)
            ):
                # (NaN would travel as JSON null: a key that never expires)
                raise ValidationError(
                    f"expires_in_days must be a finite number of days, got {expires_in_days!r}",
                    param="expires_in_days",
                )
            body["expires_in_days"] = expires_in_days
        return ApiKey.from_api(self._transport.request("POST", "/v1/api_keys", json=body))

    def list(self) -> list[ApiKey]:
        """Every key of the account (revoked ones too), newest first, without secrets."""
        body = self._transport.request("GET", "/v1/api_keys")
        return [ApiKey.from_api(item) for item in body["data"]]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (``key_…``): the next request with it is refused (401)."""
        return ApiKey.from_api(self._transport.request("DELETE", f"/v1/api_keys/{key_id}"))

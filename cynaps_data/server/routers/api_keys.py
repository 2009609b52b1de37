"""/v1/api_keys: create (secret shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import DB, Body, Customer
from ..services import api_keys as service

router = APIRouter(prefix="/v1", tags=["api_keys"])

_TEXT = {"type": "string", "pattern": r"^[^\u0000]*[^\s\u0000][^\u0000]*$", "maxLength": 200}
_CREATE = {
    "type": "object",
    "properties": {
        "name": _TEXT,
        # null: the key does not expire (as when the field is left out)
        "expires_in_days": {
            "anyOf": [
                {"type": "number", "minimum": service.MIN_DAYS, "maximum": 3650},
                {"type": "null"},
            ]
        },
        "expires_at": {"anyOf": [{"type": "number"}, {"type": "null"}]},  # Unix s, future
    },
    "required": ["name"],
    "additionalProperties": False,
}


@router.post(
    "/api_keys",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _CREATE}}}
    },
)
def create_key(db: DB, caller: Customer, body: Body) -> dict:
    """A new key (``name``, optional ``expires_at`` or ``expires_in_days``); ``secret`` is shown
    only in this answer."""
    return service.create(db, caller.account_id, body)


@router.get("/api_keys")
def list_keys(db: DB, caller: Customer) -> dict:
    """The caller's keys: name, display prefix, status, created, last used, expires."""
    return {"object": "list", "data": service.list_for(db, caller.account_id)}


@router.delete("/api_keys/{key_id}")
def revoke_key(db: DB, caller: Customer, key_id: str) -> dict:
    """Revoke a key: the next request with it is a 401 ``api_key_revoked``."""
    return service.revoke(db, caller.account_id, key_id)

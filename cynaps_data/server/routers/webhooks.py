"""/v1/webhooks: endpoints, secret rotation, test events, the delivery log, redelivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..deps import DB, AppSettings, Body, Customer
from ..services import webhooks as service
from ..services.outbox import EVENT_TYPES

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_ENDPOINT = {
    "url": {"type": "string", "maxLength": 2048},
    "events": {
        "type": ["array", "null"],
        "items": {"type": "string", "enum": list(EVENT_TYPES)},
    },
    "project_id": {"type": ["string", "null"], "maxLength": 40},
    "description": {"type": "string", "maxLength": 500, "pattern": r"^[^\u0000]*$"},
    "disabled": {"type": "boolean"},
}


def _owned(db: DB, caller: Customer, endpoint_id: str) -> str:
    """404 for another account's (or no) endpoint *before* the body is read: a body is only
    read for an endpoint the caller owns."""
    service.get(db, caller.account_id, endpoint_id)
    return endpoint_id


Owned = Annotated[str, Depends(_owned)]


def _body(properties: dict, required: list[str], body_required: bool = True) -> dict:
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": body_required,
            "content": {"application/json": {"schema": schema}},
        }
    }


@router.get("/settings")
def delivery_settings(settings: AppSettings, caller: Customer) -> dict:
    """How this platform delivers: https only (live mode), loopback allowed, retry schedule."""
    return service.public_settings(settings)


@router.post("/endpoints", status_code=201, openapi_extra=_body(_ENDPOINT, ["url"]))
def create_endpoint(db: DB, settings: AppSettings, caller: Customer, body: Body) -> dict:
    """A new endpoint (``url``, optional ``events``, ``project_id``, ``description``); its
    ``secret`` (``whsec_…``) is shown only in this answer."""
    return service.create(db, settings, caller.account_id, body)


@router.get("/endpoints")
def list_endpoints(db: DB, caller: Customer) -> dict:
    return {"object": "list", "data": service.list_for(db, caller.account_id)}


@router.get("/endpoints/{endpoint_id}")
def get_endpoint(db: DB, caller: Customer, endpoint_id: str) -> dict:
    return service.get(db, caller.account_id, endpoint_id)


@router.patch("/endpoints/{endpoint_id}", openapi_extra=_body(_ENDPOINT, [], False))
def update_endpoint(
    db: DB, settings: AppSettings, caller: Customer, endpoint_id: Owned, body: Body
) -> dict:
    """Change ``url``, ``events``, ``project_id``, ``description`` or ``disabled``."""
    return service.update(db, settings, caller.account_id, endpoint_id, body)


@router.delete("/endpoints/{endpoint_id}")
def delete_endpoint(db: DB, caller: Customer, endpoint_id: str) -> dict:
    return service.delete(db, caller.account_id, endpoint_id)


@router.post(
    "/endpoints/{endpoint_id}/rotate_secret",
    openapi_extra=_body(
        {"grace_seconds": {"type": "number", "minimum": 0, "maximum": 604800}}, [], False
    ),
)
def rotate_secret(
    db: DB, settings: AppSettings, caller: Customer, endpoint_id: Owned, body: Body
) -> dict:
    """A new secret (shown once); both are used to sign for ``grace_seconds`` (default 24 h)."""
    return service.rotate_secret(db, settings, caller.account_id, endpoint_id, body)


@router.post("/endpoints/{endpoint_id}/test", status_code=202)
def send_test(db: DB, caller: Customer, endpoint_id: str) -> dict:
    """Queue a ``ping`` event for this endpoint."""
    return service.send_test(db, caller.account_id, endpoint_id)


@router.get("/endpoints/{endpoint_id}/attempts")
def list_attempts(db: DB, caller: Customer, endpoint_id: str, limit: int = 100) -> dict:
    """Delivery attempts, newest first: status code, latency, first bytes of the answer."""
    return {"object": "list", "data": service.attempts(db, caller.account_id, endpoint_id, limit)}


@router.get("/endpoints/{endpoint_id}/deliveries")
def list_deliveries(db: DB, caller: Customer, endpoint_id: str, limit: int = 100) -> dict:
    """Messages sent (or to send) to this endpoint and where each stands."""
    return {
        "object": "list",
        "data": service.deliveries(db, caller.account_id, endpoint_id, limit),
    }


@router.post("/endpoints/{endpoint_id}/deliveries/{message_id}/redeliver", status_code=202)
def redeliver(db: DB, caller: Customer, endpoint_id: str, message_id: str) -> dict:
    """Send a message again now, with the same ``webhook-id``."""
    return service.redeliver(db, caller.account_id, endpoint_id, message_id)

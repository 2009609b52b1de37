"""Webhook endpoints of an account: register, list, change, rotate, test, log, redeliver.

An endpoint receives the account's events (optionally one project's, optionally chosen event
types), signed with its ``whsec_`` secret, which is shown once (at creation and at rotation) and
stored only encrypted (:mod:`..secretbox`). Delivery itself is in :mod:`.webhook_delivery`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
import sqlalchemy as sa

from ...webhooks import new_secret
from .. import net
from ..db import Database
from ..ids import random_id
from ..problems import Problem, invalid, not_found
from ..secretbox import SecretBox
from ..settings import Settings
from ..tables import (
    projects,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_messages,
)
from .outbox import EVENT_TYPES

#: Standard Webhooks retry schedule: seconds after the 1st, 2nd, … failed attempt (then give up)
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_ENDPOINTS = 20
DEFAULT_GRACE = 24 * 3600.0
_FIELDS = {"url", "events", "project_id", "description", "disabled"}


def box(settings: Settings) -> SecretBox:
    """The settings' secret box (cached on the settings object)."""
    cached = settings.__dict__.get("_secret_box")
    if cached is None:
        cached = settings.__dict__["_secret_box"] = SecretBox.for_settings(settings)
    return cached


def public_settings(settings: Settings) -> dict:
    """What a customer may know of the delivery settings (``GET /v1/webhooks/settings``)."""
    return {
        "object": "webhook_settings",
        "livemode": not settings.sandbox,
        "https_only": not settings.sandbox,
        "allow_loopback": settings.webhook_allow_loopback,
        "retry_schedule_seconds": [s * settings.webhook_retry_scale for s in SCHEDULE],
        "timeout_seconds": settings.webhook_timeout_seconds,
        "max_response_bytes": settings.webhook_max_response_bytes,
        "event_types": list(EVENT_TYPES),
    }


def check_url(settings: Settings, url: Any) -> str:
    try:
        net.check_url(
            url, https_only=not settings.sandbox, allow_loopback=settings.webhook_allow_loopback
        )
    except net.Refused as exc:
        raise invalid(f"url refused: {exc}", param="url", code="url_refused") from None
    return url


def _events(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid("events must be a list of event type names, or null for all", param="events")
    unknown = sorted(set(value) - set(EVENT_TYPES))
    if unknown:
        raise invalid(
            f"Unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}", param="events"
        )
    return sorted(set(value)) or None


def _project(conn: sa.Connection, owner_id: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("project_id must be a project id or null", param="project_id")
    found = conn.execute(
        sa.select(projects.c.id).where(projects.c.id == value, projects.c.owner_id == owner_id)
    ).first()
    if found is None:
        raise not_found("project", value)
    return value


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 500:
        raise invalid("description must be a string of at most 500 characters", param="description")
    return value


def _check_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise invalid("The body must be an object with 'url' (and optional 'events', …)")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise invalid(
            f"Unknown field {unknown[0]!r}; send {', '.join(sorted(_FIELDS))}", param=unknown[0]
        )
    return body


def view(row: Any, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    rotating = row.old_secret_enc is not None and (row.old_secret_expires_at or 0) > now
    return {
        "id": row.id,
        "object": "webhook_endpoint",
        "url": row.url,
        "description": row.description,
        "project_id": row.project_id,
        "events": row.event_types,
        "disabled": bool(row.disabled),
        "disabled_reason": row.disabled_reason,
        "previous_secret_expires_at": row.old_secret_expires_at if rotating else None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def load(conn: sa.Connection, owner_id: str, endpoint_id: str) -> Any:
    row = conn.execute(
        sa.select(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.account_id == owner_id
        )
    ).first()
    if row is None:
        raise not_found("webhook endpoint", endpoint_id)
    return row


def create(db: Database, settings: Settings, owner_id: str, body: Any) -> dict:
    """A new endpoint; the answer carries its ``secret`` (shown this once)."""
    body = _check_body(body)
    if "url" not in body:
        raise invalid("url is required", param="url")
    url = check_url(settings, body["url"])
    events = _events(body.get("events"))
    description = _description(body.get("description"))
    secret = new_secret()
    endpoint_id = random_id("we")
    now = time.time()
    with db.write() as conn:
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(webhook_endpoints)
            .where(webhook_endpoints.c.account_id == owner_id)
        ).scalar_one()
        if count >= MAX_ENDPOINTS:
            raise invalid(f"An account may have at most {MAX_ENDPOINTS} webhook endpoints")
        row = {
            "id": endpoint_id,
            "account_id": owner_id,
            "url": url,
            "description": description,
            "project_id": _project(conn, owner_id, body.get("project_id")),
            "event_types": events,
            "secret_enc": box(settings).seal(secret, endpoint_id),
            "disabled": bool(body.get("disabled", False)),
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(webhook_endpoints.insert(), row)
        created = load(conn, owner_id, endpoint_id)
    return {**view(created, now), "secret": secret}


def list_for(db: Database, owner_id: str) -> list[dict]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(webhook_endpoints)
            .where(webhook_endpoints.c.account_id == owner_id)
            .order_by(webhook_endpoints.c.created_at)
        ).all()
    now = time.time()
    return [view(r, now) for r in rows]


def get(db: Database, owner_id: str, endpoint_id: str) -> dict:
    with db.read() as conn:
        return view(load(conn, owner_id, endpoint_id))


def update(db: Database, settings: Settings, owner_id: str, endpoint_id: str, body: Any) -> dict:
    """Change url/events/project_id/description, or ``disabled`` (re-enabling resumes delivery)."""
    body = _check_body({} if body is None else body)
    values: dict[str, Any] = {"updated_at": time.time()}
    if "url" in body:
        values["url"] = check_url(settings, body["url"])
    if "events" in body:
        values["event_types"] = _events(body["events"])
    if "description" in body:
        values["description"] = _description(body["description"])
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise invalid("disabled must be true or false", param="disabled")
        values["disabled"] = body["disabled"]
        values["disabled_reason"] = "disabled by the account" if body["disabled"] else None
    with db.write() as conn:
        load(conn, owner_id, endpoint_id)
        if "project_id" in body:
            values["project_id"] = _project(conn, owner_id, body["project_id"])
        conn.execute(
            webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint_id).values(**values)
        )
        return view(load(conn, owner_id, endpoint_id))


def delete(db: Database, owner_id: str, endpoint_id: str) -> dict:
    """Remove an endpoint; its undelivered messages are dropped (marked failed)."""
    now = time.time()
    with db.write() as conn:
        row = load(conn, owner_id, endpoint_id)
        conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id))
        conn.execute(
            webhook_deliveries.update()
            .where(
                webhook_deliveries.c.endpoint_id == endpoint_id,
                webhook_deliveries.c.status == "pending",
            )
            .values(status="failed", finished_at=now)
        )
    return {**view(row, now), "deleted": True}


def rotate_secret(
    db: Database, settings: Settings, owner_id: str, endpoint_id: str, body: Any
) -> dict:
    """A new secret (shown once); the old one keeps signing too for ``grace_seconds``."""
    body = {} if body is None else body
    grace = body.get("grace_seconds", DEFAULT_GRACE) if isinstance(body, dict) else None
    if (
        isinstance(grace, bool)
        or not isinstance(grace, (int, float))
        or not 0 <= grace <= 7 * 86400
    ):
        raise invalid(
            "grace_seconds must be a number from 0 to 604800 (7 days)", param="grace_seconds"
        )
    secret = new_secret()
    now = time.time()
    with db.write() as conn:
        row = load(conn, owner_id, endpoint_id)
        conn.execute(
            webhook_endpoints.update()
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(
                secret_enc=box(settings).seal(secret, endpoint_id),
                old_secret_enc=row.secret_enc if grace > 0 else None,
                old_secret_expires_at=now + grace if grace > 0 else None,
                updated_at=now,
            )
        )
        return {**view(load(conn, owner_id, endpoint_id), now), "secret": secret}


def message_row(
    account_id: str, event_type: str, data: dict, project_id: str | None, created_at: float
) -> dict:
    """One ``webhook_messages`` row: a new ``msg_`` id and the exact body that is signed."""
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(created_at, timezone.utc).isoformat().replace("+00:00", "Z")
    return {
        "id": "msg_" + secrets.token_hex(12),
        "account_id": account_id,
        "event_type": event_type,
        "project_id": project_id,
        "body": orjson.dumps({"type": event_type, "timestamp": stamp, "data": data}).decode(),
        "created_at": created_at,
    }


def new_message(
    conn: sa.Connection,
    account_id: str,
    event_type: str,
    data: dict,
    project_id: str | None,
    created_at: float,
) -> str:
    """Store one message; returns its ``msg_`` id."""
    row = message_row(account_id, event_type, data, project_id, created_at)
    conn.execute(webhook_messages.insert(), row)
    return row["id"]


def send_test(db: Database, owner_id: str, endpoint_id: str) -> dict:
    """Queue a ``ping`` message for this endpoint only; returns its message id."""
    now = time.time()
    with db.write() as conn:
        row = load(conn, owner_id, endpoint_id)
        if row.disabled:
            raise Problem(
                409,
                "endpoint_disabled",
                f"Endpoint {endpoint_id} is disabled ({row.disabled_reason}); enable it first.",
                type="invalid_state_error",
            )
        data = {"endpoint_id": endpoint_id, "message": "Test event from Cynaps"}
        message_id = new_message(conn, owner_id, "ping", data, None, now)
        conn.execute(
            webhook_deliveries.insert(),
            {
                "message_id": message_id,
                "endpoint_id": endpoint_id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            },
        )
    return {"object": "webhook_test", "endpoint_id": endpoint_id, "message_id": message_id}


def attempts(db: Database, owner_id: str, endpoint_id: str, limit: int = 100) -> list[dict]:
    """The endpoint's delivery attempts, newest first (status, latency, first bytes)."""
    a, m = webhook_attempts, webhook_messages
    with db.read() as conn:
        load(conn, owner_id, endpoint_id)
        rows = conn.execute(
            sa.select(a, m.c.event_type)
            .join(m, m.c.id == a.c.message_id)
            .where(a.c.endpoint_id == endpoint_id)
            .order_by(a.c.id.desc())
            .limit(max(1, min(int(limit), 1000)))
        ).all()
    return [
        {
            "object": "webhook_attempt",
            "message_id": r.message_id,
            "event_type": r.event_type,
            "attempt": r.attempt,
            "status_code": r.status_code,
            "error": r.error,
            "latency_ms": round(r.latency_ms, 1),
            "response": r.response,
            "created_at": r.created_at,
        }
        for r in rows
    ]


def deliveries(db: Database, owner_id: str, endpoint_id: str, limit: int = 100) -> list[dict]:
    """The endpoint's messages and where each stands, newest first."""
    d, m = webhook_deliveries, webhook_messages
    with db.read() as conn:
        load(conn, owner_id, endpoint_id)
        rows = conn.execute(
            sa.select(d, m.c.event_type, m.c.created_at.label("message_created_at"))
            .join(m, m.c.id == d.c.message_id)
            .where(d.c.endpoint_id == endpoint_id)
            .order_by(d.c.id.desc())
            .limit(max(1, min(int(limit), 1000)))
        ).all()
    return [
        {
            "object": "webhook_delivery",
            "message_id": r.message_id,
            "event_type": r.event_type,
            "status": r.status,
            "attempts": r.attempts,
            "last_status_code": r.last_status_code,
            "next_attempt_at": r.next_attempt_at if r.status == "pending" else None,
            "created_at": r.message_created_at,
            "finished_at": r.finished_at,
        }
        for r in rows
    ]


def redeliver(db: Database, owner_id: str, endpoint_id: str, message_id: str) -> dict:
    """Send a message again now (same ``webhook-id``); its retry schedule starts over."""
    d = webhook_deliveries
    with db.write() as conn:
        row = load(conn, owner_id, endpoint_id)
        if row.disabled:
            raise Problem(
                409,
                "endpoint_disabled",
                f"Endpoint {endpoint_id} is disabled ({row.disabled_reason}); enable it first.",
                type="invalid_state_error",
            )
        done = conn.execute(
            d.update()
            .where(d.c.endpoint_id == endpoint_id, d.c.message_id == message_id)
            .values(status="pending", attempts=0, next_attempt_at=time.time(), finished_at=None)
        ).rowcount
        if done != 1:
            raise not_found("message for this endpoint", message_id)
    return {"object": "webhook_redelivery", "endpoint_id": endpoint_id, "message_id": message_id}

"""Webhook events, written to the outbox in the same transaction as the change that causes them.

The one public entry point for the rest of the platform is :func:`emit` (plus two small helpers
for the commonest call sites). A change that rolls back takes its event with it; a committed
change's event stays in ``webhook_outbox`` until the delivery worker has turned it into
messages (``services/webhooks.relay``), so a crash between commit and delivery loses nothing.

Event types and their ``data`` (docs/webhooks.md):

- ``project.state_changed`` ``{project_id, old_state, new_state}``
- ``tasks.finalised`` / ``tasks.disputed`` ``{project_id, task_ids, count}`` (batched by the relay)
- ``deposit.paid`` ``{project_id, amount, amount_cents, currency, payment_id}``
- ``deposit.refunded`` ``{project_id, amount, amount_cents, currency}``
- ``results.released`` ``{project_id, amount, amount_cents, judgements}``
- ``webhook.endpoint_disabled`` ``{endpoint_id, url, reason}``
- ``ping`` ``{endpoint_id, message}`` (sent to one endpoint, not through the outbox)
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from ..tables import projects
from .fastsql import Raw

EVENT_TYPES = (
    "project.state_changed",
    "tasks.finalised",
    "tasks.disputed",
    "deposit.paid",
    "deposit.refunded",
    "results.released",
    "webhook.endpoint_disabled",
    "ping",
)
#: task events the relay batches: many task ids per message
BATCHED = frozenset({"tasks.finalised", "tasks.disputed"})

# Written only when the account has an endpoint (checked in the same transaction), so accounts
# without webhooks pay one indexed lookup per event and leave nothing for the relay to clear.
_INSERT_SQL = (
    "INSERT INTO webhook_outbox (account_id, event_type, project_id, data, created_at)"
    " SELECT CAST(:account AS VARCHAR(40)), CAST(:type AS VARCHAR(60)),"
    " CAST(:project AS VARCHAR(40)), CAST(:data AS TEXT), CAST(:now AS DOUBLE PRECISION)"
    " WHERE EXISTS (SELECT 1 FROM webhook_endpoints"
    " WHERE account_id = CAST(:account AS VARCHAR(40)))"
)


def emit(
    conn: sa.Connection,
    account_id: str,
    event_type: str,
    data: dict[str, Any],
    project_id: str | None = None,
) -> None:
    """Record one event for ``account_id`` inside the caller's transaction (``conn``).

    Cheap (one INSERT on the driver, a no-op for an account without endpoints), so it may sit
    on the annotator hot path. An endpoint receives the events committed after its own creation.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    Raw(conn).run(
        _INSERT_SQL,
        {
            "account": account_id,
            "type": event_type,
            "project": project_id,
            "data": orjson.dumps(data).decode(),
            "now": time.time(),
        },
    )


def task_decided(
    conn: sa.Connection, account_id: str, project_id: str, task_id: int, status: str
) -> None:
    """A task became ``completed`` (→ ``tasks.finalised``) or ``disputed`` (→ ``tasks.disputed``)."""
    kind = "tasks.finalised" if status == "completed" else "tasks.disputed"
    emit(conn, account_id, kind, {"task_id": int(task_id)}, project_id)


def state_changing(conn: sa.Connection, project_id: str, new_state: str) -> None:
    """Call just before a project's state is set: emits ``project.state_changed`` if it changes."""
    row = conn.execute(
        sa.select(projects.c.owner_id, projects.c.state).where(projects.c.id == project_id)
    ).first()
    if row is not None and row.state != new_state:
        emit(
            conn,
            row.owner_id,
            "project.state_changed",
            {"project_id": project_id, "old_state": row.state, "new_state": new_state},
            project_id,
        )


def money(cents: int) -> dict[str, Any]:
    return {"amount": f"{cents / 100:.2f}", "amount_cents": int(cents), "currency": "Credits"}


def deposit_paid(conn: sa.Connection, project: Any, cents: int, payment_id: str | None) -> None:
    """``deposit.paid`` (and the draft → pending_deposit state change it may bring)."""
    state_changing(conn, project.id, "pending_deposit")
    data = {"project_id": project.id, **money(cents), "payment_id": payment_id}
    emit(conn, project.owner_id, "deposit.paid", data, project.id)


def deposit_refunded(conn: sa.Connection, project: Any, cents: int) -> None:
    emit(
        conn,
        project.owner_id,
        "deposit.refunded",
        {"project_id": project.id, **money(cents)},
        project.id,
    )


def results_released(conn: sa.Connection, project: Any, cents: int, judgements: int) -> None:
    emit(
        conn,
        project.owner_id,
        "results.released",
        {"project_id": project.id, **money(cents), "judgements": int(judgements)},
        project.id,
    )

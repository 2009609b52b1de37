"""The delivery side of webhooks: outbox → messages (relay), claiming due deliveries, and
recording each attempt's outcome (retry schedule, ``Retry-After``, 410, disabling).

Run by :class:`..webhook_worker.WebhookWorker` in every platform process; safe with several
processes on one database (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer at a time).
A claimed delivery's ``next_attempt_at`` is pushed out by the lease, so if the process dies
mid-attempt another one (or the restarted one) sends it again after the lease: at-least-once,
with the same ``webhook-id``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from ..db import Database
from ..tables import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_messages,
    webhook_outbox,
)
from .fastsql import Raw
from .outbox import BATCHED, emit
from .webhooks import SCHEDULE, message_row

RELAY_BATCH = 5000
MAX_TASK_IDS = 1000  # task ids per tasks.finalised / tasks.disputed message
MAX_RETRY_AFTER = 24 * 3600.0


def _wants(endpoint: Any, event_type: str, project_id: str | None) -> bool:
    if endpoint.event_types and event_type not in endpoint.event_types:
        return False
    return endpoint.project_id is None or project_id is None or endpoint.project_id == project_id


_MESSAGE_SQL = (
    "INSERT INTO webhook_messages (id, account_id, event_type, project_id, body, created_at)"
    " VALUES (:id, :account_id, :event_type, :project_id, :body, :created_at)"
)
_DELIVERY_SQL = (
    "INSERT INTO webhook_deliveries (message_id, endpoint_id, status, attempts, next_attempt_at,"
    " created_at) VALUES (:message_id, :endpoint_id, 'pending', 0, :next_attempt_at, :created_at)"
)


def relay(db: Database, lease: float | None = None, lease_limit: int = 0) -> tuple[int, list[Job]]:
    """Turn committed outbox events into messages and deliveries.

    Returns ``(events consumed, jobs)``: with a ``lease``, up to ``lease_limit`` of the new
    deliveries are created already leased to the caller (``next_attempt_at = now + lease``) and
    returned as jobs to send at once, saving the claim of work this pass just made; the rest
    are due now for :func:`claim`.
    """
    o, e = webhook_outbox, webhook_endpoints
    with db.read() as conn:  # idle passes never take the write lock
        if conn.execute(sa.select(o.c.id).limit(1)).first() is None:
            return 0, []
    with db.write() as conn:
        query = sa.select(o).order_by(o.c.id).limit(RELAY_BATCH)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        if not rows:
            return 0, []
        accounts = {r.account_id for r in rows}
        by_account: dict[str, list] = defaultdict(list)
        for endpoint in conn.execute(
            sa.select(e).where(e.c.account_id.in_(accounts), ~e.c.disabled)
        ).all():
            by_account[endpoint.account_id].append(endpoint)
        singles: list[tuple[str, str, dict, str | None, float]] = []
        batches: dict[tuple[str, str, str | None], tuple[list[int], float]] = {}
        for r in rows:
            if not any(_wants(x, r.event_type, r.project_id) for x in by_account[r.account_id]):
                continue
            data = orjson.loads(r.data)
            if r.event_type in BATCHED:
                ids, first = batches.setdefault(
                    (r.account_id, r.event_type, r.project_id), ([], r.created_at)
                )
                ids.append(data["task_id"])
            else:
                singles.append((r.account_id, r.event_type, data, r.project_id, r.created_at))
        for (account, kind, project), (ids, first) in batches.items():
            for i in range(0, len(ids), MAX_TASK_IDS):
                chunk = ids[i : i + MAX_TASK_IDS]
                data = {"project_id": project, "task_ids": chunk, "count": len(chunk)}
                singles.append((account, kind, data, project, first))
        now = time.time()
        leased_until = now + lease if lease else now
        messages, deliveries, planned = [], [], []
        for account, kind, data, project, created in sorted(singles, key=lambda s: s[4]):
            message = message_row(account, kind, data, project, created)
            messages.append(message)
            for endpoint in by_account[account]:
                if not _wants(endpoint, kind, project):
                    continue
                leased = len(planned) < lease_limit
                if leased:
                    planned.append((message, endpoint))
                deliveries.append(
                    {
                        "message_id": message["id"],
                        "endpoint_id": endpoint.id,
                        "next_attempt_at": leased_until if leased else now,
                        "created_at": now,
                    }
                )
        raw = Raw(conn)
        if messages:
            raw.many(_MESSAGE_SQL, messages)
            raw.many(_DELIVERY_SQL, deliveries)
        ids = [r.id for r in rows]
        for i in range(0, len(ids), 500):
            conn.execute(o.delete().where(o.c.id.in_(ids[i : i + 500])))
        jobs = _leased_jobs(conn, planned, now)
    return len(rows), jobs


def _leased_jobs(conn: sa.Connection, planned: list[tuple[dict, Any]], now: float) -> list[Job]:
    """The jobs of the deliveries :func:`relay` created leased (their ids read back)."""
    if not planned:
        return []
    d = webhook_deliveries
    wanted = {(m["id"], x.id) for m, x in planned}
    found: dict[tuple[str, str], int] = {}
    message_ids = sorted({m["id"] for m, _ in planned})
    for i in range(0, len(message_ids), 500):
        for r in conn.execute(
            sa.select(d.c.id, d.c.message_id, d.c.endpoint_id).where(
                d.c.message_id.in_(message_ids[i : i + 500])
            )
        ):
            if (r.message_id, r.endpoint_id) in wanted:
                found[(r.message_id, r.endpoint_id)] = r.id
    return [
        Job(
            found[(m["id"], x.id)],
            m["id"],
            x.id,
            x.account_id,
            1,
            x.url,
            m["body"],
            x.secret_enc,
            x.old_secret_enc if (x.old_secret_expires_at or 0) > now else None,
            m["created_at"],
        )
        for m, x in planned
    ]


@dataclass
class Job:
    """One claimed delivery, with what is needed to send it."""

    delivery_id: int
    message_id: str
    endpoint_id: str
    account_id: str
    attempt: int  # this attempt's number (1-based)
    url: str
    body: str
    secret_enc: str
    old_secret_enc: str | None
    message_created_at: float


def claim(db: Database, limit: int, lease: float) -> list[Job]:
    """Due deliveries to enabled endpoints, leased to this worker for ``lease`` seconds."""
    d, m, e = webhook_deliveries, webhook_messages, webhook_endpoints
    now = time.time()
    with db.read() as conn:  # idle passes never take the write lock
        due = conn.execute(
            sa.select(d.c.id).where(d.c.status == "pending", d.c.next_attempt_at <= now).limit(1)
        ).first()
        if due is None:
            return []
    with db.write() as conn:
        query = (
            sa.select(d.c.id)
            .join(e, e.c.id == d.c.endpoint_id)
            .where(d.c.status == "pending", d.c.next_attempt_at <= now, ~e.c.disabled)
            .order_by(d.c.next_attempt_at)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=d, skip_locked=True)
        ids = conn.execute(query).scalars().all()
        if not ids:
            return []
        conn.execute(d.update().where(d.c.id.in_(ids)).values(next_attempt_at=now + lease))
        rows = conn.execute(
            sa.select(
                d.c.id,
                d.c.message_id,
                d.c.endpoint_id,
                d.c.attempts,
                e.c.account_id,
                e.c.url,
                e.c.secret_enc,
                e.c.old_secret_enc,
                e.c.old_secret_expires_at,
                m.c.body,
                m.c.created_at,
            )
            .join(e, e.c.id == d.c.endpoint_id)
            .join(m, m.c.id == d.c.message_id)
            .where(d.c.id.in_(ids))
        ).all()
    return [
        Job(
            r.id,
            r.message_id,
            r.endpoint_id,
            r.account_id,
            r.attempts + 1,
            r.url,
            r.body,
            r.secret_enc,
            r.old_secret_enc if (r.old_secret_expires_at or 0) > now else None,
            r.created_at,
        )
        for r in rows
    ]


@dataclass
class Outcome:
    """What one attempt gave."""

    job: Job
    status_code: int | None
    error: str | None
    latency_ms: float
    response: str | None
    retry_after: float | None
    at: float


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped at 24 h."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


_ATTEMPT_SQL = (
    "INSERT INTO webhook_attempts (endpoint_id, message_id, attempt, status_code, error,"
    " latency_ms, response, created_at) VALUES (:endpoint_id, :message_id, :attempt,"
    " :status_code, :error, :latency_ms, :response, :created_at)"
)
_SUCCEEDED_SQL = (
    "UPDATE webhook_deliveries SET status = 'succeeded', attempts = :b_n,"
    " last_status_code = :b_code, finished_at = :now WHERE id = :b_id"
)


def record(db: Database, outcomes: list[Outcome], scale: float) -> None:
    """Log the attempts and move each delivery on: done, retried later, or given up."""
    d, e = webhook_deliveries, webhook_endpoints
    now = time.time()
    with db.write() as conn:
        raw = Raw(conn)
        raw.many(
            _ATTEMPT_SQL,
            [
                {
                    "endpoint_id": o.job.endpoint_id,
                    "message_id": o.job.message_id,
                    "attempt": o.job.attempt,
                    "status_code": o.status_code,
                    "error": o.error,
                    "latency_ms": o.latency_ms,
                    "response": o.response,
                    "created_at": o.at,
                }
                for o in outcomes
            ],
        )
        done, disable = [], {}
        for o in outcomes:
            job = o.job
            if o.status_code is not None and 200 <= o.status_code < 300:
                done.append({"b_id": job.delivery_id, "b_n": job.attempt, "b_code": o.status_code})
                continue
            values: dict[str, Any] = {"attempts": job.attempt, "last_status_code": o.status_code}
            if o.status_code == 410:
                values.update(status="failed", finished_at=now)
                disable[job.endpoint_id] = (job, "the endpoint answered 410 Gone")
            elif job.attempt > len(SCHEDULE):
                values.update(status="failed", finished_at=now)
                succeeded_since = conn.execute(
                    sa.select(d.c.id)
                    .where(
                        d.c.endpoint_id == job.endpoint_id,
                        d.c.status == "succeeded",
                        d.c.finished_at >= job.message_created_at,
                    )
                    .limit(1)
                ).first()
                if succeeded_since is None:
                    disable[job.endpoint_id] = (
                        job,
                        f"every attempt failed for message {job.message_id} "
                        f"({job.attempt} attempts over the retry schedule)",
                    )
            else:
                delay = SCHEDULE[job.attempt - 1] * scale
                if o.retry_after is not None:
                    delay = max(delay, o.retry_after)
                values["next_attempt_at"] = now + delay
            conn.execute(d.update().where(d.c.id == job.delivery_id).values(**values))
        if done:
            raw.many(_SUCCEEDED_SQL, [{**row, "now": now} for row in done])
        for endpoint_id, (job, reason) in disable.items():
            changed = conn.execute(
                e.update()
                .where(e.c.id == endpoint_id, ~e.c.disabled)
                .values(disabled=True, disabled_reason=reason, updated_at=now)
            ).rowcount
            if changed:
                data = {"endpoint_id": endpoint_id, "url": job.url, "reason": reason}
                emit(conn, job.account_id, "webhook.endpoint_disabled", data)

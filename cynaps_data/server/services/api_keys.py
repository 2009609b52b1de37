"""API keys as a resource: create (the secret is shown once), list, revoke; expiry.

Keys are stored as SHA-256 only (``api_keys.key_hash``), with a display prefix
(``sk_test_AbCd``), a name, and optional ``expires_at``. An account may hold several live keys,
so a key is rotated by creating the new one, switching, and revoking the old. Revoking takes
effect at once in this process and within ``accounts.AUTH_CACHE_SECONDS`` in others.
``last_used_at`` is recorded in memory by authentication and written by the webhook worker
(:func:`flush_last_used`) or before a listing, never on the request path.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from ..db import Database
from ..ids import hash_key, key_prefix, new_api_key, random_id
from ..problems import invalid, invalid_state, not_found
from ..tables import accounts, api_keys
from . import accounts as account_service

MAX_KEYS = 50
MIN_DAYS = 1 / 1440  # one minute: a shorter life gives a key that is expired on arrival
_FIELDS = {"name", "expires_at", "expires_in_days"}


def view(row: Any, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    if row.revoked:
        status = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "id": row.id,
        "object": "api_key",
        "name": row.name,
        "prefix": row.prefix,
        "status": status,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


def _expiry(body: dict, now: float) -> float | None:
    if body.get("expires_at") is not None and body.get("expires_in_days") is not None:
        raise invalid("Send expires_at or expires_in_days, not both", param="expires_at")
    days = body.get("expires_in_days")
    if days is not None:
        if (
            isinstance(days, bool)
            or not isinstance(days, (int, float))
            or not MIN_DAYS <= days <= 3650
        ):
            raise invalid(
                "expires_in_days must be a number from 1 minute to 3650 days",
                param="expires_in_days",
            )
        return now + float(days) * 86400
    at = body.get("expires_at")
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise invalid("expires_at must be a time in Unix seconds", param="expires_at")
    if at <= now:
        raise invalid("expires_at must be in the future", param="expires_at")
    return float(at)


def create(db: Database, account_id: str, body: Any) -> dict:
    """A new key for the caller's account; the answer's ``secret`` is shown this once."""
    body = body if body is not None else {}
    if not isinstance(body, dict):
        raise invalid("The body must be an object with 'name' (and optional 'expires_at')")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise invalid(
            f"Unknown field {unknown[0]!r}; send {', '.join(sorted(_FIELDS))}", param=unknown[0]
        )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise invalid("name must be a non-empty string of at most 200 characters", param="name")
    now = time.time()
    expires_at = _expiry(body, now)
    with db.write() as conn:
        account = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).one()
        live = conn.execute(
            sa.select(sa.func.count())
            .select_from(api_keys)
            .where(api_keys.c.account_id == account_id, ~api_keys.c.revoked)
        ).scalar_one()
        if live >= MAX_KEYS:
            raise invalid(
                f"An account may hold at most {MAX_KEYS} unrevoked keys; revoke one first"
            )
        secret = new_api_key(account.role, sandbox=account.sandbox)
        row = {
            "key_hash": hash_key(secret),
            "id": random_id("key"),
            "name": name.strip(),
            "prefix": key_prefix(secret),
            "account_id": account_id,
            "revoked": False,
            "created_at": now,
            "expires_at": expires_at,
        }
        conn.execute(api_keys.insert(), row)
        created = conn.execute(sa.select(api_keys).where(api_keys.c.id == row["id"])).one()
    return {**view(created, now), "secret": secret}


def list_for(db: Database, account_id: str) -> list[dict]:
    """The account's keys (revoked ones too), newest first; never the secrets."""
    flush_last_used(db)
    with db.read() as conn:
        rows = conn.execute(
            sa.select(api_keys)
            .where(api_keys.c.account_id == account_id)
            .order_by(api_keys.c.created_at.desc())
        ).all()
    now = time.time()
    return [view(r, now) for r in rows]


def revoke(db: Database, account_id: str, key_id: str) -> dict:
    """Revoke one of the account's keys: the next request with it is a 401 saying so."""
    now = time.time()
    with db.write() as conn:
        row = conn.execute(
            sa.select(api_keys).where(api_keys.c.id == key_id, api_keys.c.account_id == account_id)
        ).first()
        if row is None:
            raise not_found("API key", key_id)
        if row.revoked:
            raise invalid_state(f"API key {key_id} is already revoked.")
        conn.execute(
            api_keys.update().where(api_keys.c.id == key_id).values(revoked=True, revoked_at=now)
        )
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one()
    account_service.forget_key(db, row.key_hash)
    return view(row, now)


def flush_last_used(db: Database) -> int:
    """Write the in-memory ``last_used_at`` times of ``db``'s keys; returns how many."""
    pending = [
        (digest, t) for (url, digest), t in list(account_service.LAST_USED.items()) if url == db.url
    ]
    if not pending:
        return 0
    with db.write() as conn:
        conn.execute(
            api_keys.update()
            .where(api_keys.c.key_hash == sa.bindparam("h"))
            .values(last_used_at=sa.bindparam("t")),
            [{"h": digest, "t": t} for digest, t in pending],
        )
    for digest, t in pending:
        if account_service.LAST_USED.get((db.url, digest)) == t:
            account_service.LAST_USED.pop((db.url, digest), None)
    return len(pending)

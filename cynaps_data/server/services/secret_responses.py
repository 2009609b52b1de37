"""Secret-bearing responses and the idempotency store (issue 12, defect 1).

Some responses carry a secret shown once: ``api_key`` (a new annotator, expert or sandbox
customer) and an invite ``token``. The idempotency store must never keep them in clear, yet a
client that lost such a response and retries with the same ``Idempotency-Key`` (the SDK does so
on connection errors) must end up with a working secret. Design (rotate on replay):

- :func:`redact` replaces each secret in the stored response by ``{"redacted_sha256": h}``
  (``h`` the SHA-256 already kept in ``api_keys`` / ``invites``; nothing new is learned from it);
- :func:`reissue`, on a replay, revokes the secret with that hash (the client never saw it, or
  saw it and is asking again) and mints a fresh one for the same account or invite, which the
  replayed response carries. Each replay therefore answers with a *new* working secret and the
  earlier one stops working, as a key rotation would. Only the caller who made the first request
  can replay it (keys are scoped to the caller's API key).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
import sqlalchemy as sa

from ..db import Database
from ..ids import hash_key, key_prefix, new_api_key, random_id
from ..tables import accounts, api_keys, invites
from . import accounts as account_service

#: response fields that hold a secret shown once, by the response's ``object``
SECRET_FIELDS = ("api_key", "token")
SECRET_OBJECTS = {"account": "api_key", "session": "api_key", "invite": "token"}
REDACTED = "redacted_sha256"


def redact(body: bytes) -> tuple[bytes, bool]:
    """``(body to store, whether a secret was redacted)``; non-JSON bodies are kept as they are."""
    if not any(f'"{field}"'.encode() in body for field in SECRET_FIELDS):
        return body, False
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, False
    if not isinstance(value, dict):
        return body, False
    found = False
    for field in SECRET_FIELDS:
        secret = value.get(field)
        if isinstance(secret, str) and SECRET_OBJECTS.get(value.get("object")) == field:
            value[field] = {REDACTED: hash_key(secret)}
            if field == "token" and isinstance(value.get("path"), str):
                value["path"] = value["path"].replace(secret, "")
            found = True
    return (orjson.dumps(value), True) if found else (body, False)


def is_redacted(body: bytes | None) -> bool:
    return bool(body) and REDACTED.encode() in body


def reissue(db: Database, body: bytes, caller_account: str | None) -> bytes:
    """The stored (redacted) response with a freshly minted secret in place of each redacted one."""
    value = orjson.loads(body)
    now = time.time()
    rotated: list[str] = []  # the replaced keys' hashes, dropped from the login cache below
    with db.write() as conn:
        for field in SECRET_FIELDS:
            held = value.get(field)
            if not (isinstance(held, dict) and REDACTED in held):
                continue
            if field == "api_key":
                value[field] = _rotate_key(conn, held[REDACTED], now)
                rotated.append(held[REDACTED])
            else:
                token = _rotate_invite(conn, held[REDACTED], now)
                value[field] = token
                if isinstance(value.get("path"), str):
                    value["path"] = value["path"] + token
    for old_hash in rotated:  # refused at once, not when the cache entry ages out
        account_service.forget_key(db, old_hash)
    return orjson.dumps(value)


def _rotate_key(conn: sa.Connection, old_hash: str, now: float) -> str:
    row = conn.execute(
        sa.select(
            api_keys.c.account_id,
            api_keys.c.expires_at,
            api_keys.c.name,
            accounts.c.role,
            accounts.c.sandbox,
        )
        .join(accounts, accounts.c.id == api_keys.c.account_id)
        .where(api_keys.c.key_hash == old_hash)
    ).one()
    conn.execute(
        api_keys.update()
        .where(api_keys.c.key_hash == old_hash)
        .values(revoked=True, revoked_at=now)
    )
    key = new_api_key(row.role, sandbox=bool(row.sandbox))
    conn.execute(
        api_keys.insert(),
        {
            "key_hash": hash_key(key),
            "id": random_id("key"),
            "name": row.name or "default",
            "prefix": key_prefix(key),
            "account_id": row.account_id,
            "revoked": False,
            "created_at": now,
            "expires_at": row.expires_at,
        },
    )
    return key


def _rotate_invite(conn: sa.Connection, old_hash: str, now: float) -> str:
    row = conn.execute(sa.select(invites).where(invites.c.token_hash == old_hash)).one()
    # the old token stops working (as if redeemed now); the new one keeps its expiry
    conn.execute(
        invites.update()
        .where(invites.c.token_hash == old_hash, invites.c.redeemed_at.is_(None))
        .values(redeemed_at=now)
    )
    token = "inv_" + secrets.token_urlsafe(32)
    conn.execute(
        invites.insert(),
        {
            "token_hash": hash_key(token),
            "account_id": row.account_id,
            "created_at": now,
            "expires_at": row.expires_at,
        },
    )
    return token


def reissue_safe(db: Database, body: bytes | None, caller: Any) -> bytes | None:
    """:func:`reissue` when ``body`` holds a redacted secret, else ``body`` unchanged."""
    if body is None or not is_redacted(body):
        return body
    return reissue(db, body, caller)

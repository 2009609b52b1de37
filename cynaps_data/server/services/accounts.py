"""Accounts and API keys. Keys are returned once at creation and stored only as SHA-256."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..db import Database
from ..ids import hash_key, key_prefix, new_api_key, random_id
from ..problems import Problem, invalid
from ..tables import accounts, api_keys
from . import ledger

ROLES = frozenset({"customer", "annotator", "expert", "admin"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account behind an API key."""

    account_id: str
    role: str
    owner_id: str | None
    key_hash: str
    simulated: bool = False


def create_account(
    db: Database,
    *,
    role: str,
    name: str,
    owner_id: str | None = None,
    sandbox: bool = True,
    simulated: bool = False,
    starting_credits_cents: int = 0,
) -> tuple[dict, str]:
    """Create an account with one API key; returns ``(account, key)``."""
    if role not in ROLES:
        raise invalid(f"role must be one of {sorted(ROLES)}, got {role!r}", param="role")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise invalid("name must be a non-empty string of at most 200 characters", param="name")
    now = time.time()
    account = {
        "id": random_id("acct"),
        "role": role,
        "name": name,
        "owner_id": owner_id,
        "sandbox": sandbox,
        "simulated": simulated,
        "created_at": now,
    }
    key = new_api_key(role, sandbox=sandbox)
    with db.write() as conn:
        conn.execute(accounts.insert(), account)
        conn.execute(
            api_keys.insert(),
            {
                "key_hash": hash_key(key),
                "id": random_id("key"),
                "name": "default",
                "prefix": key_prefix(key),
                "account_id": account["id"],
                "revoked": False,
                "created_at": now,
            },
        )
        if starting_credits_cents:
            ledger.post(
                conn,
                "sandbox_topup",
                [(ledger.EXTERNAL, ledger.customer(account["id"]), starting_credits_cents)],
                memo="sandbox starting credits",
            )
    return public(account), key


def public(account: dict) -> dict:
    return {
        "id": account["id"],
        "object": "account",
        "role": account["role"],
        "name": account["name"],
        "owner_id": account["owner_id"],
        "livemode": not account["sandbox"],
        "simulated": account["simulated"],
    }


_UNAUTHORIZED = (
    "Invalid API key. Check CYNAPS_API_KEY (or the api_key argument); keys look like "
    "sk_test_… or sk_live_…"
)


#: Valid keys are remembered this long (per database URL), so the annotator hot path does not
#: read the key table on every request; a revoked key stops working within this time.
AUTH_CACHE_SECONDS = 2.0
AUTH_CACHE_SIZE = 10_000
_AUTH_CACHE: dict[tuple[str, str], tuple[Principal, float]] = {}
#: (database URL, key hash) -> time of the key's latest use; written to ``api_keys.last_used_at``
#: by ``services.api_keys.flush_last_used`` (not on the request path)
LAST_USED: dict[tuple[str, str], float] = {}


def forget_key(db: Database, key_hash: str) -> None:
    """Drop a key from this process's authentication cache (after revoking it)."""
    _AUTH_CACHE.pop((db.url, key_hash), None)


def cached_principal(db: Database, authorization: str | None) -> Principal | None:
    """The principal of a key validated in the last :data:`AUTH_CACHE_SECONDS`, else ``None``."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    cached = _AUTH_CACHE.get((db.url, hash_key(key.strip())))
    return cached[0] if cached is not None and cached[1] > time.monotonic() else None


def authenticate(db: Database, authorization: str | None) -> Principal:
    """The principal for an ``Authorization: Bearer <key>`` header, or 401."""
    if not authorization:
        raise Problem(
            401,
            "missing_api_key",
            "No API key provided. Send 'Authorization: Bearer <key>'.",
            type="authentication_error",
        )
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Problem(401, "invalid_api_key", _UNAUTHORIZED, type="authentication_error")
    digest = hash_key(key)
    cached = _AUTH_CACHE.get((db.url, digest))
    if cached is not None and cached[1] > time.monotonic():
        LAST_USED[(db.url, digest)] = time.time()
        return cached[0]
    with db.read() as conn:
        row = conn.execute(
            sa.select(
                api_keys.c.key_hash,
                api_keys.c.revoked,
                api_keys.c.id.label("key_id"),
                api_keys.c.prefix,
                api_keys.c.revoked_at,
                api_keys.c.expires_at,
                accounts.c.id,
                accounts.c.role,
                accounts.c.owner_id,
                accounts.c.simulated,
            )
            .join(accounts, accounts.c.id == api_keys.c.account_id)
            .where(api_keys.c.key_hash == digest)
        ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Problem(401, "invalid_api_key", _UNAUTHORIZED, type="authentication_error")
    now = time.time()
    if row.revoked or (row.expires_at is not None and row.expires_at <= now):
        raise _dead_key(row)
    principal = Principal(row.id, row.role, row.owner_id, digest, bool(row.simulated))
    if len(_AUTH_CACHE) >= AUTH_CACHE_SIZE:
        _AUTH_CACHE.clear()
    ttl = (
        AUTH_CACHE_SECONDS
        if row.expires_at is None
        else min(AUTH_CACHE_SECONDS, row.expires_at - now)
    )
    _AUTH_CACHE[(db.url, digest)] = (principal, time.monotonic() + ttl)
    LAST_USED[(db.url, digest)] = now
    return principal


def _dead_key(row: Any) -> Problem:
    """401 for a revoked or expired key, saying which (and when) and what to do."""
    from datetime import datetime, timezone

    def when(t: float | None) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t else "?"

    fix = (
        "Use another live key, or create one in Settings → API & Webhooks "
        "(or `cynaps keys create`)."
    )
    if row.revoked:
        return Problem(
            401,
            "api_key_revoked",
            f"This API key ({row.prefix}…, {row.key_id}) was revoked at {when(row.revoked_at)}. {fix}",
            type="authentication_error",
        )
    return Problem(
        401,
        "api_key_expired",
        f"This API key ({row.prefix}…, {row.key_id}) expired at {when(row.expires_at)}. {fix}",
        type="authentication_error",
    )

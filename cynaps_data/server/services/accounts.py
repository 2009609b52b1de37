"""Accounts and API keys. Keys are returned once at creation and stored only as SHA-256."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

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
        return cached[0]
    with db.read() as conn:
        row = conn.execute(
            sa.select(
                api_keys.c.key_hash,
                api_keys.c.revoked,
                api_keys.c.expires_at,
                accounts.c.id,
                accounts.c.role,
                accounts.c.owner_id,
                accounts.c.simulated,
            )
            .join(accounts, accounts.c.id == api_keys.c.account_id)
            .where(api_keys.c.key_hash == digest)
        ).first()
    expired = row is not None and row.expires_at is not None and row.expires_at <= time.time()
    if row is None or row.revoked or expired or not hmac.compare_digest(row.key_hash, digest):
        raise Problem(401, "invalid_api_key", _UNAUTHORIZED, type="authentication_error")
    principal = Principal(row.id, row.role, row.owner_id, digest, bool(row.simulated))
    if len(_AUTH_CACHE) >= AUTH_CACHE_SIZE:
        _AUTH_CACHE.clear()
    _AUTH_CACHE[(db.url, digest)] = (principal, time.monotonic() + AUTH_CACHE_SECONDS)
    return principal

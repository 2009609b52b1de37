"""One-time invite links for annotators and experts.

An invite is a random token (stored as SHA-256 only) bound to one team member. The link carries
it in the URL *fragment* (``/ui/#invite=…``), which browsers never send to a server or in a
``Referer``. The page exchanges it once, over POST, for a fresh session key of that member; a
used or expired token is refused with the same message, so a guesser learns nothing.
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa

from ..db import Database
from ..ids import hash_key, key_prefix, new_api_key
from ..problems import Problem, invalid, not_found
from ..tables import accounts, api_keys, invites

INVITE_TTL_SECONDS = 7 * 24 * 3600.0
#: a session key from an invite link works this long (12 hours); then open a new invite
SESSION_TTL_SECONDS = 12 * 3600.0
_INVALID = (
    "This invite link is invalid, already used or expired. Ask the project owner for a new one."
)


def create(db: Database, owner_id: str, account_id: str, ttl: float = INVITE_TTL_SECONDS) -> dict:
    """A new invite for a member of ``owner_id``'s team; another owner's member is a 404."""
    token = "inv_" + secrets.token_urlsafe(32)
    now = time.time()
    with db.write() as conn:
        member = conn.execute(
            sa.select(accounts.c.id, accounts.c.role, accounts.c.name).where(
                accounts.c.id == account_id,
                accounts.c.owner_id == owner_id,
                accounts.c.role.in_(("annotator", "expert")),
            )
        ).first()
        if member is None:
            raise not_found("annotator", account_id)
        conn.execute(
            invites.insert(),
            {
                "token_hash": hash_key(token),
                "account_id": member.id,
                "created_at": now,
                "expires_at": now + ttl,
            },
        )
    return {
        "object": "invite",
        "account_id": member.id,
        "role": member.role,
        "name": member.name,
        "token": token,
        "path": f"/ui/{'review' if member.role == 'expert' else ''}#invite={token}",
        "expires_at": now + ttl,
    }


def redeem(db: Database, token: object, sandbox: bool) -> dict:
    """Exchange an unused, unexpired invite token for a new session key of its member."""
    if not isinstance(token, str) or not token.startswith("inv_") or len(token) > 200:
        raise invalid("token must be the invite token from the link", param="token")
    now = time.time()
    with db.write() as conn:
        claimed = conn.execute(
            invites.update()
            .where(
                invites.c.token_hash == hash_key(token),
                invites.c.redeemed_at.is_(None),
                invites.c.expires_at > now,
            )
            .values(redeemed_at=now)
            .returning(invites.c.account_id)
        ).first()
        if claimed is None:
            raise Problem(401, "invalid_invite", _INVALID, type="authentication_error")
        member = conn.execute(
            sa.select(accounts.c.id, accounts.c.role, accounts.c.name).where(
                accounts.c.id == claimed.account_id
            )
        ).one()
        key = new_api_key(member.role, sandbox=sandbox)
        conn.execute(
            api_keys.insert(),
            {
                "key_hash": hash_key(key),
                "prefix": key_prefix(key),
                "account_id": member.id,
                "revoked": False,
                "created_at": now,
                "expires_at": now + SESSION_TTL_SECONDS,
            },
        )
    return {
        "object": "session",
        "expires_at": now + SESSION_TTL_SECONDS,
        "account_id": member.id,
        "role": member.role,
        "name": member.name,
        "api_key": key,
    }

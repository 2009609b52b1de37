"""Double-entry credits ledger: immutable entries, balances derived by summing.

Accounts are strings: ``customer:<acct>``, ``deposit_hold:<proj>``, ``escrow:<proj>``,
``earnings:<acct>`` and ``external`` (outside payments and sandbox top-ups). Statements run on the
driver connection (``fastsql``) inside the caller's transaction. Every transaction's
entries sum to zero, so the sum over all accounts is always zero. ``ledger_balances`` holds each
account's sum, updated in the same transaction as its entries (a derived cache, never edited on
its own), so a balance is one row read however long the account's history.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import sqlalchemy as sa

from ..ids import random_id
from ..problems import insufficient_credits
from .fastsql import Raw

EXTERNAL = "external"


def customer(account_id: str) -> str:
    return f"customer:{account_id}"


def deposit_hold(project_id: str) -> str:
    return f"deposit_hold:{project_id}"


def escrow(project_id: str) -> str:
    return f"escrow:{project_id}"


def earnings(account_id: str) -> str:
    return f"earnings:{account_id}"


def balance(conn: sa.Connection, account: str) -> int:
    """Balance of one ledger account in cents.

    In a write transaction on PostgreSQL the account is locked first (until commit), so a
    decision taken on this balance cannot race another transaction's (``db.lock_ledger_account``).
    """
    raw = Raw(conn)
    if raw.pg and conn.get_execution_options().get("write"):
        raw.run(_LOCK_SQL, {"a": account})
    row = raw.run(_BALANCE_SQL, {"account": account}).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(:a, 0))"  # as db.lock_ledger_account
_BALANCE_SQL = "SELECT balance_cents FROM ledger_balances WHERE account = :account"
_ENTRY_SQL = (
    "INSERT INTO ledger_entries (txn_id, account, amount_cents, kind, project_id, memo, created_at)"
    " VALUES (:txn_id, :account, :amount_cents, :kind, :project_id, :memo, :created_at)"
)
_UPSERT_BALANCE_SQL = (
    "INSERT INTO ledger_balances (account, balance_cents) VALUES (:account, :delta) "
    "ON CONFLICT (account) DO UPDATE "
    "SET balance_cents = ledger_balances.balance_cents + excluded.balance_cents"
)


def post(
    conn: sa.Connection,
    kind: str,
    moves: Iterable[tuple[str, str, int]],
    *,
    project_id: str | None = None,
    memo: str | None = None,
) -> str:
    """Post one transaction of ``(from_account, to_account, cents)`` moves; returns its id."""
    txn = random_id("txn")
    now = time.time()
    rows = []
    for source, target, cents in moves:
        if cents < 0:
            raise ValueError("ledger moves are non-negative; swap the accounts instead")
        if cents == 0:
            continue
        common = {"txn_id": txn, "kind": kind, "project_id": project_id, "memo": memo}
        rows.append({**common, "account": source, "amount_cents": -cents, "created_at": now})
        rows.append({**common, "account": target, "amount_cents": cents, "created_at": now})
    if rows:
        raw = Raw(conn)
        raw.many(_ENTRY_SQL, rows)
        deltas: dict[str, int] = {}
        for row in rows:
            deltas[row["account"]] = deltas.get(row["account"], 0) + row["amount_cents"]
        # accounts in sorted order: concurrent transactions on PostgreSQL lock rows in one order
        raw.many(
            _UPSERT_BALANCE_SQL, [{"account": a, "delta": d} for a, d in sorted(deltas.items())]
        )
    return txn


def move_checked(
    conn: sa.Connection,
    kind: str,
    source: str,
    target: str,
    cents: int,
    *,
    project_id: str | None = None,
) -> str:
    """Move ``cents`` only if ``source`` can cover it; else 402 insufficient credits."""
    available = balance(conn, source)
    if available < cents:
        raise insufficient_credits(cents, available)
    return post(conn, kind, [(source, target, cents)], project_id=project_id)

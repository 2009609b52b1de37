"""The customer console's billing views: ledger history with a running balance (JSON and CSV),
and the deposits per project. Read-only, scoped to the caller's own ledger account.

CSV cells that a spreadsheet would run as a formula (text starting with ``=``, ``+``, ``-``,
``@``, tab or carriage return; project names and memos are the customer's own text) are
prefixed with ``'`` (OWASP "CSV injection"); the numeric columns are written as numbers.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import sqlalchemy as sa

from ..db import Database
from ..services import ledger
from ..tables import ledger_entries, projects

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_ROWS = 10_000


def cell(text: str | None) -> str:
    """A text cell that no spreadsheet evaluates."""
    text = "" if text is None else str(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def history(db: Database, account_id: str, limit: int = 1000) -> dict:
    """The caller's ledger entries, newest first, each with the balance right after it."""
    limit = max(1, min(int(limit), MAX_ROWS))
    mine = ledger.customer(account_id)
    e = ledger_entries
    with db.read() as conn:
        balance = ledger.balance(conn, mine)
        rows = conn.execute(
            sa.select(e, projects.c.name.label("project_name"))
            .outerjoin(projects, projects.c.id == e.c.project_id)
            .where(e.c.account == mine)
            .order_by(e.c.id.desc())
            .limit(limit)
        ).all()
    running = balance
    data = []
    for r in rows:
        data.append(
            {
                "id": r.id,
                "txn_id": r.txn_id,
                "kind": r.kind,
                "amount": f"{r.amount_cents / 100:.2f}",
                "amount_cents": r.amount_cents,
                "balance": f"{running / 100:.2f}",
                "balance_cents": running,
                "project_id": r.project_id,
                "project_name": r.project_name,
                "memo": r.memo,
                "created_at": r.created_at,
            }
        )
        running -= r.amount_cents
    return {
        "object": "list",
        "balance": f"{balance / 100:.2f}",
        "balance_cents": balance,
        "currency": "Credits",
        "data": data,
    }


def history_csv(db: Database, account_id: str, limit: int = MAX_ROWS) -> str:
    """:func:`history` as CSV, oldest first (a statement reads top to bottom)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        ["time_utc", "kind", "amount", "balance", "project_id", "project_name", "memo", "txn_id"]
    )
    for r in reversed(history(db, account_id, limit)["data"]):
        when = datetime.fromtimestamp(r["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        writer.writerow(
            [
                when,
                cell(r["kind"]),
                r["amount"],
                r["balance"],
                cell(r["project_id"]),
                cell(r["project_name"]),
                cell(r["memo"]),
                cell(r["txn_id"]),
            ]
        )
    return out.getvalue()


def deposits(db: Database, account_id: str) -> list[dict]:
    """Each of the caller's projects with a paid deposit: amount paid and what is still held."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(projects.c.id, projects.c.name, projects.c.state, projects.c.deposit_cents)
            .where(projects.c.owner_id == account_id, projects.c.deposit_cents.is_not(None))
            .order_by(projects.c.created_at.desc())
        ).all()
        held = {r.id: ledger.balance(conn, ledger.deposit_hold(r.id)) for r in rows}
    return [
        {
            "project_id": r.id,
            "name": r.name,
            "state": r.state,
            "deposit": f"{r.deposit_cents / 100:.2f}",
            "held": f"{held[r.id] / 100:.2f}",
            "held_cents": held[r.id],
        }
        for r in rows
    ]

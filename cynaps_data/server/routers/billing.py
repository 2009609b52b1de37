"""Deposits, balance, top-ups and the caller's ledger."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from ..deps import DB, Body, Customer
from ..problems import invalid
from ..services import billing as service
from ..services import ledger, states
from ..services import projects as project_service
from ..tables import ledger_entries

router = APIRouter(prefix="/v1", tags=["billing"])


@router.post("/projects/{project_id}/deposit/quote")
def quote_deposit(db: DB, caller: Customer, project_id: str) -> dict:
    """Quote the security deposit for the tasks uploaded so far; moves draft → pending_deposit."""
    with db.write() as conn:
        project = project_service.load(conn, caller.account_id, project_id, lock=True)
        target = states.check("quote", project.state)
        q = service.current_quote(conn, project)
        if q.task_count == 0:
            raise invalid(
                "Upload tasks before asking for a deposit quote.", param="tasks", code="no_tasks"
            )
        if target != project.state:
            project_service.set_state(conn, project.id, target)
    return {"object": "deposit_quote", "project_id": project_id, **q.as_dict()}


@router.post("/projects/{project_id}/deposit/pay")
def pay_deposit(db: DB, caller: Customer, project_id: str, body: Body) -> dict:
    method = body.get("payment_method") if isinstance(body, dict) else None
    if not isinstance(method, str):
        raise invalid(
            "payment_method is required, e.g. 'razorpay', 'card' or 'credits'",
            param="payment_method",
        )
    with service.payment_transaction(db) as conn:  # a declined payment is kept
        project = project_service.load(conn, caller.account_id, project_id, lock=True)
        states.check("pay", project.state)
        return service.pay_deposit(conn, project, method)


@router.get("/billing/balance")
def balance(db: DB, caller: Customer) -> dict:
    with db.read() as conn:
        return service.balances(conn, caller.account_id)


@router.post("/billing/topups", status_code=201)
def topup(db: DB, caller: Customer, body: Body) -> dict:
    if not isinstance(body, dict):
        raise invalid("The body must be an object with 'amount' and 'payment_method'")
    unknown = sorted(set(body) - {"amount", "payment_method"})
    if unknown:
        raise invalid(
            f"Unknown field {unknown[0]!r}; send 'amount' and 'payment_method'", param=unknown[0]
        )
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
        raise invalid("amount must be a number of Credits", param="amount")
    try:
        cents = round(float(amount) * 100)
    except (ValueError, OverflowError):
        raise invalid(
            f"amount must be a number of Credits, got {amount!r}", param="amount"
        ) from None
    if not 0 < cents <= 100_000_000:
        raise invalid("amount must be between 0.01 and 1,000,000.00 Credits", param="amount")
    method = body.get("payment_method", "card")
    if not isinstance(method, str):
        raise invalid("payment_method must be a string such as 'card'", param="payment_method")
    with service.payment_transaction(db) as conn:  # a declined payment is kept
        payment = service.topup(conn, caller.account_id, method, cents)
        return {**payment, "object": "topup", **service.balances(conn, caller.account_id)}


@router.get("/billing/ledger")
def my_ledger(db: DB, caller: Customer, limit: int = 1000) -> dict:
    """The caller's own customer-account entries, newest first."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(ledger_entries)
            .where(ledger_entries.c.account == ledger.customer(caller.account_id))
            .order_by(ledger_entries.c.id.desc())
            .limit(max(1, min(limit, 10_000)))
        ).all()
    return {
        "object": "list",
        "data": [
            {
                "txn_id": r.txn_id,
                "kind": r.kind,
                "amount": f"{r.amount_cents / 100:.2f}",
                "amount_cents": r.amount_cents,
                "project_id": r.project_id,
                "memo": r.memo,
                "created_at": r.created_at,
            }
            for r in rows
        ],
    }

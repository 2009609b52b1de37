"""The customer console's pages (Projects, Billing, Settings → API & Webhooks) and its billing
views. Pages are static files served by ``routers/ui`` rules (same CSP, no HTML sinks)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import DB, Customer
from ..ui import console

router = APIRouter(tags=["billing"])


@router.get("/v1/billing/history")
def billing_history(db: DB, caller: Customer, limit: int = 1000) -> dict:
    """Ledger entries of the caller's balance, newest first, with the running balance."""
    return console.history(db, caller.account_id, limit)


@router.get(
    "/v1/billing/history.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def billing_history_csv(db: DB, caller: Customer, limit: int = console.MAX_ROWS) -> Response:
    """The same as CSV (oldest first; text cells escaped against spreadsheet formulas)."""
    return Response(
        console.history_csv(db, caller.account_id, limit),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="cynaps-ledger.csv"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/v1/billing/deposits")
def billing_deposits(db: DB, caller: Customer) -> dict:
    """Deposits per project: paid, and still held."""
    return {"object": "list", "data": console.deposits(db, caller.account_id)}

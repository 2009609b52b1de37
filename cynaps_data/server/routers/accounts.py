"""/v1/me, team annotators, and sandbox account creation."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from ..deps import DB, Admin, AppSettings, Body, Caller, Customer
from ..problems import invalid
from ..services import accounts as service
from ..tables import accounts

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.get("/me")
def me(db: DB, caller: Caller) -> dict:
    with db.read() as conn:
        row = conn.execute(sa.select(accounts).where(accounts.c.id == caller.account_id)).one()
    return service.public(row._asdict())


@router.post("/annotators", status_code=201)
def add_annotator(db: DB, settings: AppSettings, caller: Customer, body: Body) -> dict:
    """Add an annotator or expert to the caller's team; returns its key (shown once)."""
    if not isinstance(body, dict):
        raise invalid("The body must be an object with 'name' and 'role'")
    unknown = sorted(set(body) - {"name", "role"})
    if unknown:
        raise invalid(f"Unknown field {unknown[0]!r}; send 'name' and 'role'", param=unknown[0])
    role = body.get("role", "annotator")
    if role not in ("annotator", "expert"):
        raise invalid("role must be 'annotator' or 'expert'", param="role")
    account, key = service.create_account(
        db, role=role, name=body.get("name"), owner_id=caller.account_id, sandbox=settings.sandbox
    )
    return {**account, "api_key": key}


@router.get("/annotators")
def list_annotators(db: DB, caller: Customer) -> dict:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(accounts)
            .where(accounts.c.owner_id == caller.account_id)
            .order_by(accounts.c.created_at)
        ).all()
    return {"object": "list", "data": [service.public(r._asdict()) for r in rows]}


@router.post("/sandbox/customers", status_code=201)
def create_customer(db: DB, settings: AppSettings, caller: Admin, body: Body) -> dict:
    """Admin: a new sandbox customer with starting credits; returns its key (shown once)."""
    name = body.get("name", "Sandbox customer") if isinstance(body, dict) else "Sandbox customer"
    account, key = service.create_account(
        db,
        role="customer",
        name=name,
        sandbox=settings.sandbox,
        starting_credits_cents=settings.starting_credits_cents if settings.sandbox else 0,
    )
    return {**account, "api_key": key}

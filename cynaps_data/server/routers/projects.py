"""/v1/projects: create, list, get, status and state changes."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import DB, Body, Customer
from ..problems import invalid
from ..services import projects as service

router = APIRouter(prefix="/v1/projects", tags=["projects"])


@router.post("", status_code=201)
def create_project(db: DB, caller: Customer, body: Body) -> dict:
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object describing the project")
    unknown = sorted(
        set(body) - {"name", "annotation_type", "labels", "instructions", "quality_settings"}
    )
    if unknown:
        raise invalid(f"Unknown field {unknown[0]!r}", param=unknown[0])
    return service.create(db, caller.account_id, body)


@router.get("")
def list_projects(db: DB, caller: Customer, limit: int = 100, offset: int = 0) -> dict:
    if not 1 <= limit <= 1000 or offset < 0:
        raise invalid("limit must be 1..1000 and offset >= 0", param="limit")
    if offset > 1_000_000_000:
        raise invalid("offset must be at most 1,000,000,000", param="offset")
    return {"object": "list", "data": service.list_for(db, caller.account_id, limit, offset)}


@router.get("/{project_id}")
def get_project(db: DB, caller: Customer, project_id: str) -> dict:
    return service.get(db, caller.account_id, project_id)


@router.get("/{project_id}/status")
def project_status(db: DB, caller: Customer, project_id: str) -> dict:
    return service.status(db, caller.account_id, project_id)


def _action(name: str):
    def endpoint(db: DB, caller: Customer, project_id: str) -> dict:
        return service.transition(db, caller.account_id, project_id, name)

    endpoint.__name__ = f"{name}_project"
    router.post(f"/{{project_id}}/{name}", name=f"{name}_project")(endpoint)


for _name in ("start", "pause", "resume", "cancel"):
    _action(_name)

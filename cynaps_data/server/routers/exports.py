"""/v1/projects/{id}/export: results download."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import DB, Customer
from ..problems import invalid
from ..services import exports as service

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["exports"])


@router.get("/export")
def export(db: DB, caller: Customer, project_id: str, format: str = "json") -> Response:
    """Download results (releases escrowed credits to annotators, once per task)."""
    if format != "json":
        raise invalid(f"Unknown export format {format!r}; the platform serves 'json'", param="format")
    records = service.json_records(db, caller.account_id, project_id)
    return Response(orjson.dumps(records), media_type="application/json")

"""/v1/projects/{id}/tasks: the batch upload endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import DB, AppSettings, Body, Customer
from ..services import tasks as service

router = APIRouter(prefix="/v1/projects/{project_id}/tasks", tags=["tasks"])


@router.post("/batch", status_code=201)
def upload_batch(
    db: DB, settings: AppSettings, caller: Customer, project_id: str, body: Body
) -> dict:
    """Upload up to ``max_batch_tasks`` tasks at once; the batch is stored whole or not at all."""
    return service.upload(db, caller.account_id, project_id, body, settings.max_batch_tasks)

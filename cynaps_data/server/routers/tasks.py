"""/v1/projects/{id}/tasks: the batch upload endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..deps import DB, AppSettings, Customer
from ..services import arrow_batch
from ..services import tasks as service

router = APIRouter(prefix="/v1/projects/{project_id}/tasks", tags=["tasks"])


@router.post("/batch", status_code=201)
async def upload_batch(
    request: Request, db: DB, settings: AppSettings, caller: Customer, project_id: str
) -> dict:
    """Upload up to ``max_batch_tasks`` tasks at once; the batch is stored whole or not at all.

    Body: a JSON list of tasks or ``{"tasks": [...], "source_schema": {...}}``.
    Or an Arrow IPC stream (``application/vnd.apache.arrow.stream``), see
    :mod:`..services.arrow_batch`.
    """
    raw = await request.body()
    if request.headers.get("content-type", "").startswith(arrow_batch.CONTENT_TYPE):
        # Arrow IPC body from the typed-ingest client (issue 4); same contract, no JSON walk
        return await run_in_threadpool(
            arrow_batch.upload, db, caller.account_id, project_id, raw, settings.max_batch_tasks
        )
    return await run_in_threadpool(
        service.upload, db, caller.account_id, project_id, raw, settings.max_batch_tasks
    )

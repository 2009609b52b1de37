"""/v1/projects/{id}/import (tasks with their judgements) and /tasks/reopen (curation)."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import DB, AppSettings, Body, Customer
from ..services import curation, imports

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["imports", "curation"])


@router.post("/import", status_code=201)
def import_tasks(
    db: DB, settings: AppSettings, caller: Customer, project_id: str, body: Body
) -> dict:
    """Create tasks with judgements made elsewhere (recorded as imported, never billed)."""
    imports.check_body(body)
    return imports.import_batch(db, caller.account_id, project_id, body, settings.max_batch_tasks)


@router.post("/tasks/reopen")
def reopen_tasks(db: DB, caller: Customer, project_id: str, body: Body) -> dict:
    """Send tasks back for ``n`` more judgements each (``{"task_ids": [...], "n": 1}``)."""
    return curation.reopen(db, caller.account_id, project_id, body)

"""/v1/annotator and /v1/review: the API people's browsers and the sandbox workforce use."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import DB, AppSettings, Body, Caller
from ..services import work

router = APIRouter(prefix="/v1", tags=["annotators"])


@router.get("/annotator/next", response_model=None)
def next_task(db: DB, settings: AppSettings, caller: Caller, project_id: str | None = None) -> dict | Response:
    """The caller's next task (its live assignment first); 204 when there is nothing to do."""
    task = work.next_task(db, caller, settings.assignment_ttl_seconds, project_id)
    return task if task is not None else Response(status_code=204)


@router.post("/annotator/tasks/{task_id}/judgements", status_code=201)
def submit_judgement(db: DB, caller: Caller, task_id: int, body: Body) -> dict:
    return work.submit(db, caller, task_id, body)


@router.get("/review/next", response_model=None)
def next_review(db: DB, settings: AppSettings, caller: Caller) -> dict | Response:
    """The next disputed task with every vote; 204 when none is waiting."""
    task = work.next_review(db, caller, settings.assignment_ttl_seconds)
    return task if task is not None else Response(status_code=204)


@router.post("/review/tasks/{task_id}/decision", status_code=201)
def decide(db: DB, caller: Caller, task_id: int, body: Body) -> dict:
    return work.decide_review(db, caller, task_id, body)

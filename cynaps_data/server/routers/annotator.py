"""/v1/annotator, /v1/review and invites: the API people's browsers and the sandbox workforce use."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import DB, AppSettings, Body, Caller, Customer
from ..problems import invalid
from ..services import work
from ..ui import invites

router = APIRouter(prefix="/v1", tags=["annotators"])


@router.get("/annotator/next", response_model=None)
def next_task(db: DB, settings: AppSettings, caller: Caller, project_id: str | None = None) -> dict | Response:
    """The caller's next task (its live assignment first); 204 when there is nothing to do."""
    task = work.next_task(db, caller, settings.assignment_ttl_seconds, project_id)
    return task if task is not None else Response(status_code=204)


@router.post("/annotator/tasks/{task_id}/judgements", status_code=201)
def submit_judgement(
    db: DB, settings: AppSettings, caller: Caller, task_id: int, body: Body,
    next: bool = False, project_id: str | None = None,
) -> dict:
    """Record a judgement; with ``?next=true`` the answer also carries the next task (or null)."""
    ttl = settings.assignment_ttl_seconds if next else None
    return work.submit(db, caller, task_id, body, next_ttl=ttl, project_id=project_id)


@router.post("/annotator/tasks/{task_id}/skip")
def skip_task(db: DB, caller: Caller, task_id: int) -> dict:
    """Give an assigned task back; it is not offered to the caller again."""
    return work.skip(db, caller, task_id)


@router.get("/annotator/progress")
def progress(db: DB, caller: Caller) -> dict:
    """The caller's own counts (judgements, skips, tasks left for it)."""
    return work.progress(db, caller)


@router.get("/review/next", response_model=None)
def next_review(db: DB, settings: AppSettings, caller: Caller) -> dict | Response:
    """The next disputed task with every vote; 204 when none is waiting."""
    task = work.next_review(db, caller, settings.assignment_ttl_seconds)
    return task if task is not None else Response(status_code=204)


@router.post("/review/tasks/{task_id}/decision", status_code=201)
def decide(db: DB, caller: Caller, task_id: int, body: Body) -> dict:
    return work.decide_review(db, caller, task_id, body)


@router.post("/annotators/{account_id}/invites", status_code=201)
def create_invite(db: DB, caller: Customer, account_id: str) -> dict:
    """A one-time invite link (path with the token in its fragment) for a member of the caller's team."""
    return invites.create(db, caller.account_id, account_id)


@router.post("/invites/redeem", status_code=201)
def redeem_invite(db: DB, settings: AppSettings, body: Body) -> dict:
    """Exchange an invite token (``{"token": "inv_…"}``) for a session key; no API key needed."""
    if not isinstance(body, dict):
        raise invalid("The body must be an object with the invite 'token'", param="token")
    return invites.redeem(db, body.get("token"), settings.sandbox)

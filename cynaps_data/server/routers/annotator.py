"""/v1/annotator, /v1/review and invites: the API people's browsers and the sandbox workforce use.

The hot endpoints are ``async`` and run authentication plus the service call in one hop onto a
single worker lane (``anyio`` capacity 1) per app: SQLite takes one writer at a time anyway, and
keeping the other pool threads out of the way spares the lock holder from queueing for the GIL
after every statement (measured in ``benchmarks/annotate.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..deps import DB, AppSettings, Body, Customer
from ..problems import invalid
from ..services import accounts as account_service
from ..services import work
from ..services.accounts import authenticate
from ..tables import accounts
from ..ui import invites

router = APIRouter(prefix="/v1", tags=["annotators"])


def _lane(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    lane = getattr(state, "work_lane", None)
    if lane is None:
        lane = state.work_lane = anyio.CapacityLimiter(1)
    return lane


async def _as_caller(request: Request, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Authenticate the request and run ``call(db, principal, *args, **kwargs)`` on the lane."""
    db = request.app.state.db
    authorization = request.headers.get("authorization")

    def run() -> Any:
        return call(db, authenticate(db, authorization), *args, **kwargs)

    return await anyio.to_thread.run_sync(run, limiter=_lane(request))


def _ttl(request: Request) -> float:
    return request.app.state.settings.assignment_ttl_seconds


@router.get("/annotator/next", response_model=None)
async def next_task(request: Request, project_id: str | None = None) -> dict | Response:
    """The caller's next task (its live assignment first); 204 when there is nothing to do."""
    task = await _as_caller(request, work.next_task, _ttl(request), project_id)
    return task if task is not None else Response(status_code=204)


@router.post("/annotator/tasks/{task_id}/judgements", status_code=201)
async def submit_judgement(
    request: Request, task_id: int, body: Body, next: bool = False, project_id: str | None = None
) -> dict:
    """Record a judgement; with ``?next=true`` the answer also carries the next task (or null)."""
    ttl = _ttl(request) if next else None
    return await _as_caller(request, work.submit, task_id, body, next_ttl=ttl, project_id=project_id)


@router.post("/annotator/tasks/{task_id}/skip")
async def skip_task(request: Request, task_id: int) -> dict:
    """Give an assigned task back; it is not offered to the caller again."""
    return await _as_caller(request, work.skip, task_id)


@router.get("/annotator/progress")
async def progress(request: Request) -> dict:
    """The caller's own counts (judgements, skips, tasks left for it)."""
    return await _as_caller(request, work.progress)


@router.get("/review/next", response_model=None)
async def next_review(request: Request) -> dict | Response:
    """The next disputed task with every vote; 204 when none is waiting."""
    task = await _as_caller(request, work.next_review, _ttl(request))
    return task if task is not None else Response(status_code=204)


@router.post("/review/tasks/{task_id}/decision", status_code=201)
async def decide(request: Request, task_id: int, body: Body) -> dict:
    return await _as_caller(request, work.decide_review, task_id, body)


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


@router.get("/workforce")
def workforce(db: DB, settings: AppSettings, caller: Customer) -> dict:
    """Platform-pool members (the sandbox workforce among them) who may work on any project.

    They are annotator and expert accounts like a team's own and appear in exports and the
    dashboard under their account ids; ``simulated`` marks the sandbox workforce.
    """
    with db.read() as conn:
        rows = conn.execute(
            sa.select(accounts).where(accounts.c.owner_id.is_(None), accounts.c.role.in_(("annotator", "expert")))
            .order_by(accounts.c.role.desc(), accounts.c.name)
        ).all()
    return {"object": "list", "data": [account_service.public(r._asdict()) for r in rows]}

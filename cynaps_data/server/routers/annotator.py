"""/v1/annotator, /v1/review and invites: the API people's browsers and the sandbox workforce use.

The hot endpoints are ``async`` and run authentication plus the service call in one hop onto a
worker lane per app (``anyio`` capacity ``settings.annotator_lanes``). On SQLite it is one lane:
SQLite takes one writer at a time anyway, and keeping the other pool threads out of the way
spares the lock holder from queueing for the GIL after every statement. On PostgreSQL it is
:data:`~..settings.PG_ANNOTATOR_LANES`: there a transaction spends most of its time waiting on
round trips and row locks, and one lane let one slow request hold up every annotator of the
process (measured in ``benchmarks/annotate.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import lanes
from ..deps import DB, AppSettings, Body, Customer, parse_json_body
from ..middleware import HotHandler, handle_error, header, send_json
from ..problems import invalid
from ..services import accounts as account_service
from ..services import assignment, judgements, review
from ..services.accounts import authenticate
from ..settings import PG_ANNOTATOR_LANES
from ..tables import accounts
from ..ui import invites

router = APIRouter(prefix="/v1", tags=["annotators"])


def _lane(request: Request) -> anyio.CapacityLimiter:
    return _app_lane(request.app)


def _app_lane(app: Any) -> anyio.CapacityLimiter:
    state = app.state
    lane = getattr(state, "work_lane", None)
    if lane is None:
        width = state.settings.annotator_lanes
        if width is None:
            width = 1 if state.db.is_sqlite else PG_ANNOTATOR_LANES
        lane = state.work_lane = anyio.CapacityLimiter(width)
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
    task = await _as_caller(request, assignment.next_task, _ttl(request), project_id)
    return task if task is not None else Response(status_code=204)


@router.post("/annotator/tasks/{task_id}/judgements", status_code=201)
async def submit_judgement(
    request: Request, task_id: int, body: Body, next: bool = False, project_id: str | None = None
) -> dict:
    """Record a judgement; with ``?next=true`` the answer also carries the next task (or null).

    Retried with an ``Idempotency-Key``, a submission that already went through is answered as
    the first time and records nothing (idempotent per task and annotator)."""
    ttl = _ttl(request) if next else None
    retry = request.headers.get("idempotency-key") is not None
    return await _as_caller(
        request, judgements.submit, task_id, body, next_ttl=ttl, project_id=project_id, retry=retry
    )


@router.post("/annotator/tasks/{task_id}/skip")
async def skip_task(request: Request, task_id: int) -> dict:
    """Give an assigned task back; it is not offered to the caller again."""
    return await _as_caller(request, assignment.skip, task_id)


@router.get("/annotator/progress")
async def progress(request: Request) -> dict:
    """The caller's own counts (judgements, skips, tasks left for it)."""
    return await _as_caller(request, assignment.progress)


@router.get("/review/next", response_model=None)
async def next_review(request: Request) -> dict | Response:
    """The next disputed task with every vote; 204 when none is waiting."""
    task = await _as_caller(request, review.next_review, _ttl(request))
    return task if task is not None else Response(status_code=204)


@router.post("/review/tasks/{task_id}/decision", status_code=201)
async def decide(request: Request, task_id: int, body: Body) -> dict:
    return await _as_caller(request, review.decide_review, task_id, body)


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
            sa.select(accounts)
            .where(accounts.c.owner_id.is_(None), accounts.c.role.in_(("annotator", "expert")))
            .order_by(accounts.c.role.desc(), accounts.c.name)
        ).all()
    return {"object": "list", "data": [account_service.public(r._asdict()) for r in rows]}


# -- hot path ------------------------------------------------------------------------------
# ``POST /v1/annotator/tasks/{id}/judgements`` and ``GET /v1/annotator/next`` answered straight
# from the ASGI scope (``middleware.HotRoutes``): the same service calls, authentication, lane,
# status codes and error bodies as the routes above, without the router and dependency
# resolution. A request these handlers do not recognise exactly (an unknown query parameter,
# a ``next`` value other than true/false, a task id too long for an integer) is left to the
# routes above, which answer it (or its 422) the usual way.

_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})


def _query(scope: dict, allowed: frozenset[str]) -> dict[str, str] | None:
    """The query parameters if they are all known and given once, else ``None``."""
    raw = scope.get("query_string", b"")
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    query = dict(pairs)
    if len(query) != len(pairs) or not set(query) <= allowed:
        return None
    return query


async def _read_body(receive: Callable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise anyio.get_cancelled_exc_class()()  # the client went away
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


#: Pauses between inline attempts before a hot call waits for the database on the worker lane.
INLINE_RETRY_PAUSES = (0.0003, 0.001, 0.0)


async def _hot_call(scope: dict, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(db, principal, ...)``: on SQLite right here on the event loop when the database is
    free (a transaction of a few hundred µs, cheaper than the hop to a thread and back), else
    on the worker lane like the routes above."""
    app = scope["app"]
    db = app.state.db
    authorization = header(scope, b"authorization")
    if db.is_sqlite:
        principal = authenticate(db, authorization)
        for pause in INLINE_RETRY_PAUSES:
            try:
                return call(db, principal, *args, inline=True, **kwargs)
            except lanes.WouldBlock:  # another writer holds it: a transaction is ~0.3 ms
                await anyio.sleep(pause)

    def run() -> Any:
        return call(db, authenticate(db, authorization), *args, **kwargs)

    return await anyio.to_thread.run_sync(run, limiter=_app_lane(app))


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


async def _hot_submit(scope: dict, receive: Callable, send: Callable, match: re.Match[str]) -> bool:
    query = _query(scope, frozenset({"next", "project_id"}))
    if query is None:
        return False
    flag = query.get("next", "false").lower()
    if flag not in _TRUE and flag not in _FALSE:
        return False
    task_id = int(match.group(1))
    try:
        body = parse_json_body(await _read_body(receive))
        ttl = scope["app"].state.settings.assignment_ttl_seconds if flag in _TRUE else None
        retry = header(scope, b"idempotency-key") is not None
        result = await _hot_call(
            scope,
            judgements.submit,
            task_id,
            body,
            next_ttl=ttl,
            project_id=query.get("project_id"),
            retry=retry,
        )
    except Exception as exc:  # answered as the routed endpoint would
        await handle_error(scope, receive, send, exc)
        return True
    await send_json(send, 201, _dumps(result))
    return True


async def _hot_next(scope: dict, receive: Callable, send: Callable, match: re.Match[str]) -> bool:
    query = _query(scope, frozenset({"project_id"}))
    if query is None:
        return False
    try:
        ttl = scope["app"].state.settings.assignment_ttl_seconds
        task = await _hot_call(scope, assignment.next_task, ttl, query.get("project_id"))
    except Exception as exc:
        await handle_error(scope, receive, send, exc)
        return True
    await send_json(send, 204 if task is None else 200, b"" if task is None else _dumps(task))
    return True


def hot_routes() -> list[tuple[str, re.Pattern[str], HotHandler]]:
    """The endpoints ``middleware.HotRoutes`` answers directly (task ids up to 18 digits)."""
    return [
        ("POST", re.compile(r"/v1/annotator/tasks/([0-9]{1,18})/judgements"), _hot_submit),
        ("GET", re.compile(r"/v1/annotator/next"), _hot_next),
    ]

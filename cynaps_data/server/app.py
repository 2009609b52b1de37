"""The application factory. Nothing here runs at import: call :func:`create_app`."""

from __future__ import annotations

import logging

import orjson
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from . import api_schema
from .db import Database
from .middleware import HotRoutes, Idempotency, RateLimiter, RequestContext
from .problems import Problem
from .routers import (
    accounts,
    annotator,
    api_keys,
    assets,
    billing,
    console,
    exports,
    imports,
    projects,
    tasks,
    ui,
    webhooks,
)
from .settings import Settings

log = logging.getLogger("cynaps_data.server")


class ORJSONResponse(JSONResponse):
    """JSON rendered with orjson (numpy scalars and non-str keys allowed)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": "string"},
            },
        }
    },
}
#: Every route may answer with one of these, always in the ``{"error": {...}}`` shape.
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"description": text, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for status, text in {
        400: "Malformed request (invalid JSON or UTF-8)",
        401: "Missing or invalid API key",
        402: "Insufficient credits, or a declined payment",
        403: "The key's role may not call this endpoint",
        404: "No such resource for this API key",
        409: "Not allowed in the resource's current state, or an Idempotency-Key conflict",
        413: "Body or batch too large",
        422: "Invalid input; the message names the field",
        429: "Rate limited; see Retry-After",
        500: "The platform failed; the request may be retried",
    }.items()
}


def _problem_response(request: Request, problem: Problem) -> ORJSONResponse:
    headers = dict(problem.headers)
    return ORJSONResponse(problem.body(), status_code=problem.status, headers=headers)


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """Build the platform app with its own database (created if missing)."""
    db = db or Database(settings.database_url)
    db.create_all()
    app = FastAPI(
        title="Cynaps platform (local reference server)",
        version="1",
        default_response_class=ORJSONResponse,
        responses=ERROR_RESPONSES,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.db = db
    app.state.settings = settings
    api_schema.install(app, _problem_response)
    for module in (accounts, projects, tasks, assets, billing, exports, imports, annotator, ui):
        app.include_router(module.router)
    for module in (api_keys, webhooks, console):
        app.include_router(module.router)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> ORJSONResponse:
        return _problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> ORJSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = (
            f"{where}: {first.get('msg', 'invalid request')}"
            if where
            else first.get("msg", "invalid request")
        )
        return _problem_response(
            request, Problem(422, "invalid_request", message, param=where or None)
        )

    @app.exception_handler(sa.exc.DataError)
    @app.exception_handler(sa.exc.StatementError)
    @app.exception_handler(OverflowError)
    async def _unstorable(request: Request, exc: Exception) -> ORJSONResponse:
        # A value the database cannot take (an integer out of range, NUL in text): the
        # transaction rolled back, so nothing changed; this is the caller's input, not a 5xx.
        if (
            isinstance(exc, sa.exc.StatementError)
            and not isinstance(exc, sa.exc.DataError)
            and not isinstance(getattr(exc, "orig", None), OverflowError)
        ):
            return await _unexpected(request, exc)
        return _problem_response(
            request,
            Problem(
                422,
                "invalid_value",
                "A value in the request is out of range or cannot be stored (e.g. an id too large, or text with NUL characters); nothing was changed.",
            ),
        )

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> ORJSONResponse:
        # the caller hung up mid-body: nothing was read into a change, nobody to answer, and
        # no traceback to log (a caller could otherwise fill the log with them)
        return _problem_response(
            request, Problem(400, "body_incomplete", "The request body ended early.")
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> ORJSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _problem_response(
            request,
            Problem(
                500,
                "internal_error",
                "The platform failed; the request may be retried.",
                type="api_error",
            ),
        )

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"ok": True}

    app.add_middleware(HotRoutes, routes=annotator.hot_routes)  # innermost: after the checks above
    app.add_middleware(Idempotency, db=lambda: app.state.db)
    app.add_middleware(
        RateLimiter, limit=lambda: app.state.settings.rate_limit, db=lambda: app.state.db
    )
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout_seconds,
    )
    return app

"""Dependency aliases shared by the routers (FastAPI full-stack-template style)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from .db import Database
from .problems import Problem, forbidden
from .services import limits
from .services.accounts import Principal, authenticate
from .settings import Settings


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_principal(request: Request) -> Principal:
    return authenticate(request.app.state.db, request.headers.get("authorization"))


def get_customer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.role not in ("customer", "admin"):
        # Annotators and experts must not learn whether a customer resource exists.
        raise Problem(404, "resource_missing", "Not found for this API key.", param="id")
    return principal


def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.role != "admin":
        raise forbidden("This endpoint needs an admin key.")
    return principal


async def json_body(request: Request) -> Any:
    """The request body parsed with orjson; a clear 400 for invalid JSON or UTF-8."""
    return parse_json_body(await request.body())


def parse_json_body(raw: bytes) -> Any:
    """``None`` for no body, 400 ``invalid_json`` for invalid JSON, 422 for NUL in text."""
    if not raw:
        return None
    limits.check_body(raw)  # issue 12: one nesting limit, enforced before parsing
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "invalid_json", f"The body is not valid JSON: {exc}") from None
    if b"\\u0000" in raw:  # cheap pre-check; PostgreSQL cannot store NUL in text
        where = limits.nul_path(value, "body")
        if where is not None:
            raise Problem(
                422,
                "invalid_value",
                f"{where}: text must not contain NUL (\\u0000) characters",
                param=where,
            )
    return value


DB = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Caller = Annotated[Principal, Depends(get_principal)]
Customer = Annotated[Principal, Depends(get_customer)]
Admin = Annotated[Principal, Depends(get_admin)]
Body = Annotated[Any, Depends(json_body)]

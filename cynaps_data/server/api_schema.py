"""What the OpenAPI schema says about request bodies, and errors for unknown routes/methods.

The routes parse their JSON bodies themselves (orjson, ``deps.json_body``) and validate them in
the services with messages naming the field, so FastAPI publishes no request-body schema. This
module documents the bodies of the small JSON endpoints in the schema (``/openapi.json``), so
clients and fuzzers (schemathesis, ``tests/test_fuzz_schemathesis.py``) know them. A schema
here describes a subset of what the endpoint accepts (every body it admits is accepted unless
the resource's state or ownership says otherwise); the service's validation stays the authority.

It also answers 404 (no such route) and 405 (method not allowed, with an ``Allow`` header that
lists every method of the path) in the platform's ``{"error": {...}}`` shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..types import REGISTRY
from ..wire import MAX_ANNOTATORS, MIN_ANNOTATORS, SIMULATED_PAYMENT_METHODS
from .problems import Problem

_TEXT = {"type": "string", "pattern": r"^[^\u0000]*[^\s\u0000][^\u0000]*$"}  # non-blank, no NUL
_PAYMENT_METHODS = sorted(SIMULATED_PAYMENT_METHODS)


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


_QUALITY = _obj(
    {
        "min_annotators": {"type": "integer", "minimum": MIN_ANNOTATORS, "maximum": MAX_ANNOTATORS},
        "consensus_threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "enable_expert_review": {"type": "boolean"},
        "max_annotators": {
            "anyOf": [
                {"type": "integer", "minimum": MIN_ANNOTATORS, "maximum": MAX_ANNOTATORS},
                {"type": "null"},
            ]
        },
        "mode": {"type": "string", "enum": ["fixed", "adaptive"]},
        "target_confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    }
)
_LABEL_VALUE = {"type": "string", "maxLength": 200}
_DURATION = {"type": "number", "minimum": 0, "maximum": 7 * 24 * 3600}

#: (method, path) -> JSON schema of the request body
REQUEST_BODIES: dict[tuple[str, str], dict] = {
    ("post", "/v1/projects"): _obj(
        {
            "name": {**_TEXT, "maxLength": 500},
            "annotation_type": {"type": "string", "enum": sorted(REGISTRY)},
            # the annotation type's label config: a list of class names, a rating scale, a
            # text type's options... (docs/annotation-types.md); each type validates its own
            "labels": {},
            "instructions": {  # null: none
                "anyOf": [
                    {"type": "string", "maxLength": 100_000, "pattern": r"^[^\u0000]*$"},
                    {"type": "null"},
                ]
            },
            "quality_settings": {"anyOf": [_QUALITY, {"type": "null"}]},  # null: defaults
        },
        ["name"],
    ),
    ("post", "/v1/projects/{project_id}/tasks/batch"): _obj(
        {
            "tasks": {
                "type": "array",
                "items": _obj(
                    {
                        "data": {"type": "object"},
                        "external_id": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                    ["data"],
                ),
            }
        },
        ["tasks"],
    ),
    ("post", "/v1/projects/{project_id}/deposit/pay"): _obj(
        {
            "payment_method": {
                "type": "string",
                "enum": ["credits", "test_decline", *_PAYMENT_METHODS],
            }
        },
        ["payment_method"],
    ),
    ("post", "/v1/billing/topups"): _obj(
        {
            "amount": {"type": "number", "minimum": 0.01, "maximum": 1_000_000},
            "payment_method": {"type": "string", "enum": ["test_decline", *_PAYMENT_METHODS]},
        },
        ["amount"],  # payment_method defaults to "card"
    ),
    ("post", "/v1/annotators"): _obj(
        {
            "name": {**_TEXT, "maxLength": 200},
            "role": {"type": "string", "enum": ["annotator", "expert"]},
        },
        ["name"],
    ),
    ("post", "/v1/sandbox/customers"): _obj({"name": {**_TEXT, "maxLength": 200}}),
    ("post", "/v1/annotator/tasks/{task_id}/judgements"): _obj(
        {"label": _LABEL_VALUE, "duration": _DURATION}, ["label"]
    ),
    ("post", "/v1/review/tasks/{task_id}/decision"): _obj(
        {"label": _LABEL_VALUE, "duration": _DURATION}, ["label"]
    ),
    ("post", "/v1/projects/{project_id}/tasks/reopen"): _obj(
        {
            "task_ids": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 2**53},
                "minItems": 1,
                "maxItems": 1000,
            },
            "n": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        ["task_ids"],
    ),
    ("post", "/v1/invites/redeem"): _obj(
        {"token": {"type": "string", "pattern": r"^inv_[A-Za-z0-9_-]{1,190}$"}}, ["token"]
    ),
}


#: (method, path) -> {query parameter: bounds} the endpoint enforces
PARAMETER_BOUNDS: dict[tuple[str, str], dict[str, dict]] = {
    ("get", "/v1/projects"): {
        "limit": {"minimum": 1, "maximum": 1000},
        "offset": {"minimum": 0, "maximum": 1_000_000_000},
    },
}


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        for (method, path), body in REQUEST_BODIES.items():
            operation = schema.get("paths", {}).get(path, {}).get(method)
            if operation is not None and "requestBody" not in operation:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                }
        for (method, path), bounds in PARAMETER_BOUNDS.items():
            operation = schema.get("paths", {}).get(path, {}).get(method, {})
            for parameter in operation.get("parameters", []):
                if parameter["name"] in bounds:
                    parameter["schema"] = {**parameter["schema"], **bounds[parameter["name"]]}
        app.openapi_schema = schema
    return app.openapi_schema


def _allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """Every method some route serves at this path (routers included at any depth)."""
    methods: set[str] = set()

    def walk(routes) -> None:
        for route in routes:
            if hasattr(route, "original_router"):
                walk(route.original_router.routes)
            elif getattr(route, "methods", None):
                match, _ = route.matches({**scope, "method": next(iter(route.methods))})
                if match == Match.FULL:
                    methods.update(route.methods)

    walk(app.router.routes)
    return sorted(methods)


def install(app: FastAPI, respond) -> None:
    """Document request bodies and answer unknown routes/methods in the error shape.

    ``respond(request, problem)`` builds the JSON response (``app._problem_response``).
    """
    app.openapi = lambda: _openapi(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:
            allowed = _allowed_methods(app, request.scope)
            problem = Problem(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        elif exc.status_code == 404:
            problem = Problem(404, "route_missing", f"No route {request.method} {request.url.path}")
        else:
            problem = Problem(
                exc.status_code, "http_error", str(exc.detail), headers=dict(exc.headers or {})
            )
        return respond(request, problem)

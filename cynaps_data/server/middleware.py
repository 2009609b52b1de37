"""Pure-ASGI middleware: request ids, body limits, per-key rate limits, idempotency keys.

Kept as raw ASGI (no ``BaseHTTPMiddleware``) so bulk uploads pay no extra copies.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
import sqlalchemy as sa

from ..wire import MAX_IDEMPOTENCY_KEY
from .db import Database, IdempotencyClaim, current_claim
from .problems import Problem
from .services import secret_responses
from .settings import RateLimit
from .tables import idempotency_keys

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]

IDEMPOTENCY_TTL = 24 * 3600.0
IN_FLIGHT_TAKEOVER = 60.0  # default: an in-flight key older than this may be taken over


def header(scope: dict, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower-case bytes), if any."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_problem(send: Callable, problem: Problem, request_id: str) -> None:
    body = orjson.dumps(problem.body())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ] + [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Problem):
    """Raised from ``receive`` once a body (chunked or mis-declared) passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "body_too_large", f"Request body over {limit} bytes; send smaller batches."
        )


class BodyTimeout(Problem):
    """Raised from ``receive`` when the next part of a body does not come in time."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            "body_timeout",
            f"The request body stopped arriving for {seconds:g} seconds; send it whole.",
        )


class RequestContext:
    """Assigns ``X-Request-Id``, adds security headers, and refuses oversized or stalled bodies.

    Each part of a body must arrive within ``body_timeout`` seconds of the previous one (408
    ``body_timeout`` otherwise), so a client that sends half a body cannot hold a worker.

    A declared ``Content-Length`` over the limit is refused before reading; a chunked body (or
    one longer than declared) is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout: float = 15.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(8)}"
        scope.setdefault("state", {})["request_id"] = request_id
        length = header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            await send_problem(
                send,
                Problem(
                    413,
                    "body_too_large",
                    f"Request body over {self.max_body_bytes} bytes; send smaller batches.",
                ),
                request_id,
            )
            return

        received = 0
        started = False
        body_done = False

        async def counted_receive() -> dict:
            nonlocal received, body_done
            if body_done:  # after the body: waiting for a disconnect, no deadline
                return await receive()
            try:
                with anyio.fail_after(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def send_with_id(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-request-id" not in names:  # (a problem answer may carry it already)
                    headers.append((b"x-request-id", request_id.encode()))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_id)
        except (BodyTooLarge, BodyTimeout) as exc:
            if started:
                raise
            await send_problem(send, exc, request_id)


#: ``/v1/`` requests answered without an API key (everything else is authenticated first)
PUBLIC_PATHS = frozenset({("POST", "/v1/invites/redeem")})


def client_address(scope: dict) -> str:
    return f"ip:{(scope.get('client') or ('?', 0))[0]}"


class RateLimiter:
    """Authenticates ``/v1/`` requests, then a token bucket per API key, answering 429.

    Authentication comes first, before any byte of the body is read and before anything is
    stored (issue 12): a missing or unknown key is a 401 straight away (except
    :data:`PUBLIC_PATHS`), counted against a bucket per *client address*, so rotating made-up
    keys does not escape the limit. Valid keys get a bucket of their own. The principal is left
    in ``scope["state"]["principal"]`` for the idempotency middleware.

    Responses carry ``RateLimit-Policy`` and ``RateLimit`` headers (IETF draft) and a 429 has
    ``Retry-After`` in whole seconds. State is per process.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: Callable[[], RateLimit],
        db: Callable[[], Database] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.db = db
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, who: str) -> tuple[bool, float, float]:
        """``(allowed, tokens_left, seconds_until_next_token)``."""
        limit = self.limit()
        now = time.monotonic()
        with self.lock:
            if len(self.buckets) > 100_000:  # bounded: forget idle buckets (they refill anyway)
                self.buckets.clear()
            tokens, last = self.buckets.get(who, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - last) * limit.per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self.buckets[who] = (tokens, now)
        wait = 0.0 if allowed else (1.0 - tokens) / limit.per_second
        return allowed, tokens, wait

    async def _principal(self, scope: dict) -> Any:
        """The caller's principal, or the 401 :class:`Problem` to answer with."""
        from .services.accounts import authenticate, cached_principal

        authorization = header(scope, b"authorization")
        db = self.db()
        principal = cached_principal(db, authorization)
        if principal is not None:
            return principal
        try:
            return await anyio.to_thread.run_sync(authenticate, db, authorization)
        except Problem as exc:
            return exc

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        refusal: Problem | None = None
        who = client_address(scope)
        if self.db is not None and (scope["method"], scope["path"]) not in PUBLIC_PATHS:
            found = await self._principal(scope)
            if isinstance(found, Problem):
                refusal = found
            else:
                scope["state"]["principal"] = found
                who = found.key_hash
        allowed, tokens, wait = self.take(who)
        limit = self.limit()
        window = max(1, math.ceil(limit.burst / limit.per_second))
        policy = f"{limit.burst};w={window}".encode()
        state = f"limit={limit.burst}, remaining={int(tokens)}, reset={math.ceil(wait)}".encode()
        if not allowed:
            retry = max(1, math.ceil(wait))
            await send_problem(
                send,
                Problem(
                    429,
                    "rate_limited",
                    f"Rate limit exceeded. Retry after {retry} seconds.",
                    type="rate_limit_error",
                    headers={
                        "Retry-After": str(retry),
                        "RateLimit-Policy": policy.decode(),
                        "RateLimit": state.decode(),
                    },
                ),
                scope["state"]["request_id"],
            )
            return
        if refusal is not None:  # answered without reading the body
            await send_problem(send, refusal, scope["state"]["request_id"])
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"ratelimit-policy", policy),
                        (b"ratelimit", state),
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Idempotency:
    """Stripe-style ``Idempotency-Key`` on POST: same key and body → the stored response.

    Same key with another body is a 422 ``idempotency_key_reused``; a key whose first request is
    still running is a 409 ``idempotency_key_in_use``. Keys are scoped to the API key and kept
    24 hours. 5xx responses are not stored, so a retry runs again. Judgement submissions are
    exempt (:attr:`NATURALLY_IDEMPOTENT`).

    Exactly once under crashes: each attempt claims the key with a fresh fencing token, and every
    write transaction the request makes marks the key ``committed`` *inside that transaction*
    (``db.Database.write``), failing if the token was superseded. An attempt that died before
    its effects committed can be taken over after ``Settings.idempotency_takeover_seconds``; one
    that committed but died before storing its response is answered with a 409
    ``idempotency_response_lost`` and is never run again.
    """

    #: POST endpoints idempotent by themselves, left alone by this middleware: a judgement is
    #: recorded once per (task, annotator) and a repeat answers as the first time did
    #: (``work.submit``), so a key would only add two write transactions to the hot path.
    NATURALLY_IDEMPOTENT = re.compile(r"/v1/annotator/tasks/[0-9]+/judgements")
    #: answers carrying a secret shown once (issue 17): never stored, so never replayed
    SECRET_ANSWERS = re.compile(r"/v1/(api_keys|webhooks/endpoints(/[^/]+/rotate_secret)?)")

    def __init__(self, app: ASGIApp, db: Callable[[], Database]) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        key = header(scope, b"idempotency-key") if scope["type"] == "http" else None
        if key and self.NATURALLY_IDEMPOTENT.fullmatch(scope["path"]):
            key = None
        if key and self.SECRET_ANSWERS.fullmatch(scope["path"]):
            key = None
        principal = scope.get("state", {}).get("principal") if key else None
        owner = principal.key_hash if principal is not None else None
        if scope["type"] != "http" or scope["method"] != "POST" or not key or not owner:
            await self.app(scope, receive, send)
            return
        request_id = scope["state"]["request_id"]
        if len(key) > MAX_IDEMPOTENCY_KEY:
            await send_problem(
                send,
                Problem(
                    400,
                    "idempotency_key_invalid",
                    f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters.",
                ),
                request_id,
            )
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        digest = hashlib.sha256(
            scope["path"].encode() + b"?" + scope.get("query_string", b"") + b"\n" + body
        ).hexdigest()
        app = scope.get("app")
        settings = getattr(getattr(app, "state", None), "settings", None)
        takeover = getattr(settings, "idempotency_takeover_seconds", IN_FLIGHT_TAKEOVER)
        token = secrets.token_hex(16)
        try:
            found = await anyio.to_thread.run_sync(self._claim, owner, key, digest, token, takeover)
        except sa.exc.IntegrityError:  # a concurrent first attempt inserted the key first
            found = await anyio.to_thread.run_sync(self._claim, owner, key, digest, token, takeover)
        if found is not None:
            status, stored = found
            if status == "reused":
                await send_problem(
                    send,
                    Problem(
                        422,
                        "idempotency_key_reused",
                        f"Idempotency-Key {key!r} was already used with a different request; use a new key for a new request.",
                        type="idempotency_error",
                    ),
                    request_id,
                )
                return
            if status == "in_flight":
                await send_problem(
                    send,
                    Problem(
                        409,
                        "idempotency_key_in_use",
                        f"A request with Idempotency-Key {key!r} is still being processed; retry shortly.",
                        type="idempotency_error",
                    ),
                    request_id,
                )
                return
            if status == "lost":
                await send_problem(
                    send,
                    Problem(
                        409,
                        "idempotency_response_lost",
                        f"The request with Idempotency-Key {key!r} was applied, but the platform stopped before storing its response. Do not repeat it: read the resource's current state instead.",
                        type="idempotency_error",
                    ),
                    request_id,
                )
                return
            if secret_responses.is_redacted(stored):
                # a secret is never stored: the replay carries a freshly issued one
                stored = await anyio.to_thread.run_sync(
                    secret_responses.reissue, self.db(), stored, principal.account_id
                )
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"idempotent-replayed", b"true"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": stored or b""})
            return

        sent = False

        async def replay_receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        captured: dict[str, Any] = {"status": 500, "body": [], "stored": False}

        async def store() -> None:
            if not captured["stored"]:
                captured["stored"] = True
                stored_body, _ = secret_responses.redact(b"".join(captured["body"]))
                await anyio.to_thread.run_sync(
                    self._finish, owner, key, token, captured["status"], stored_body
                )

        async def capture_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    # settle the key before the caller can see the answer, so that a retry
                    # made right after it gets the stored response
                    current_claim.set(None)
                    await store()
            await send(message)

        reset = current_claim.set(IdempotencyClaim(owner, key, token))
        try:
            await self.app(scope, replay_receive, capture_send)
        finally:
            current_claim.reset(reset)
            await store()

    def _claim(
        self, owner: str, key: str, digest: str, token: str, takeover: float
    ) -> tuple[Any, bytes | None] | None:
        """Claim the key for this attempt (``None``: run it), or say what to answer instead."""
        now = time.time()
        t = idempotency_keys
        where = (t.c.key_hash == owner, t.c.idempotency_key == key)
        with self.db().write() as conn:
            conn.execute(t.delete().where(t.c.created_at < now - IDEMPOTENCY_TTL))
            row = conn.execute(sa.select(t).where(*where)).first()
            if row is None:
                conn.execute(
                    t.insert(),
                    {
                        "key_hash": owner,
                        "idempotency_key": key,
                        "request_hash": digest,
                        "created_at": now,
                        "claim": token,
                        "committed": False,
                    },
                )
                return None
            if row.request_hash != digest:
                return ("reused", None)
            if row.status_code is not None:
                return (row.status_code, row.response_body)
            if row.created_at >= now - takeover:
                return ("in_flight", None)
            if row.committed:
                return ("lost", None)
            # The earlier attempt is presumed dead and none of its writes committed. Take the key
            # over with a new token; should that attempt still be alive, its next write fails.
            taken = conn.execute(
                t.update()
                .where(*where, t.c.status_code.is_(None), ~t.c.committed, t.c.claim == row.claim)
                .values(claim=token, created_at=now)
            ).rowcount
            return None if taken == 1 else ("in_flight", None)

    def _finish(self, owner: str, key: str, token: str, status: int, body: bytes) -> None:
        t = idempotency_keys
        where = (t.c.key_hash == owner, t.c.idempotency_key == key, t.c.claim == token)
        with self.db().write() as conn:
            if status >= 500:
                # nothing of a failed attempt is kept unless its writes committed
                conn.execute(t.delete().where(*where, ~t.c.committed))
                conn.execute(
                    t.update().where(*where).values(status_code=status, response_body=body)
                )
            else:
                conn.execute(
                    t.update().where(*where).values(status_code=status, response_body=body)
                )


#: A hot endpoint: ``handler(scope, receive, send, match)`` answers the request and returns
#: ``True``, or returns ``False`` *without touching* ``receive``/``send`` to let the regular
#: FastAPI route answer it (anything unusual: odd query strings, other content).
HotHandler = Callable[[dict, Callable, Callable, "re.Match[str]"], Awaitable[bool]]


class HotRoutes:
    """Answers a few hot endpoints (the annotator's submit-and-next) without the router.

    Innermost of the middleware, so request ids, body limits, rate limits and idempotency keys
    apply as for every route; only Starlette's route matching, FastAPI's dependency resolution
    and the response classes are skipped, which cost several times the endpoint's own work
    (``benchmarks/annotate.py``). The same endpoints stay declared as FastAPI routes (schema,
    docs, and any request a hot handler declines). Errors go through the app's exception
    handlers, so they look exactly like the routed endpoint's.
    """

    def __init__(
        self, app: ASGIApp, routes: Callable[[], list[tuple[str, Any, HotHandler]]]
    ) -> None:
        self.app = app
        self.routes = routes()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            for route_method, pattern, handler in self.routes:
                if route_method == method:
                    match = pattern.fullmatch(path)
                    if match is not None and await handler(scope, receive, send, match):
                        return
        await self.app(scope, receive, send)


async def send_json(send: Callable, status: int, body: bytes, headers: list | None = None) -> None:
    """A complete JSON response (an empty body for 204)."""
    head = [(b"content-type", b"application/json")] if status != 204 else []
    head.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def handle_error(scope: dict, receive: Callable, send: Callable, exc: Exception) -> None:
    """Answer ``exc`` with the app's own exception handler for it (as a routed endpoint would)."""
    if isinstance(exc, Problem):
        headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        await send_json(send, exc.status, orjson.dumps(exc.body()), headers)
        return
    handlers = getattr(scope.get("app"), "exception_handlers", {})
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            from starlette.requests import Request

            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
    raise exc

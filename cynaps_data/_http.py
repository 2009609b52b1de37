"""The one HTTP transport: session, auth header, timeouts, retries, and status-to-error mapping.

Retries: connection errors, 429 and 5xx are retried up to ``max_retries`` times with capped
exponential backoff and full jitter, honouring ``Retry-After`` (seconds or an HTTP-date, capped
at :data:`MAX_RETRY_AFTER`). A POST is retried only because it carries an ``Idempotency-Key``
made once per call and reused on every attempt, which the platform honours.
"""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import requests

from . import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    IdempotencyError,
    InsufficientCreditsError,
    InvalidStateError,
    NotFoundError,
    PaymentDeclinedError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .wire import IDEMPOTENCY_HEADER, REQUEST_ID_HEADER


def _array_like(value: Any) -> Any:
    """JSON for what orjson does not take itself: numpy string/object arrays, pandas
    Index/Series/Categorical (e.g. ``labels=df["label"].unique()``) as lists, ``pd.NA`` as
    null; anything else is the usual ``TypeError``."""
    if type(value).__name__ == "NAType":  # pd.NA inside such a list
        return None
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__.split(".")[0] in ("numpy", "pandas"):
        return tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Delay before retry number ``attempt`` (0-based): full jitter, capped; Retry-After wins."""
    if retry_after is not None:
        return retry_after + random.uniform(0, 0.1)
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def error_from_response(response: requests.Response) -> APIError | ValidationError:
    """Map an error response (``{"error": {"type", "message", "code"}}``) to our exceptions.

    This is the only place that knows how HTTP statuses become exception classes.
    """
    status = response.status_code
    request_id = response.headers.get(REQUEST_ID_HEADER)
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
    except ValueError:
        error = {}
    message = error.get("message") or response.reason or f"HTTP {status}"
    code = error.get("code")
    param = error.get("param")
    kwargs = {"status": status, "code": code, "request_id": request_id, "param": param}
    if status == 401:
        return AuthenticationError(message, **kwargs)
    if status == 403:
        return PermissionDeniedError(message, **kwargs)
    if status == 404:
        return NotFoundError(message, **kwargs)
    if status == 402:
        if code == "payment_declined":
            return PaymentDeclinedError(message, **kwargs)
        return InsufficientCreditsError(message, **kwargs)
    if status == 409:
        if code == "invalid_state":
            return InvalidStateError(message, **kwargs)
        if code and code.startswith("idempotency"):
            return IdempotencyError(message, **kwargs)
        return ConflictError(message, **kwargs)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    if status in (400, 413, 415, 422):
        if code and code.startswith("idempotency"):
            return IdempotencyError(message, **kwargs)
        return ValidationError(message, **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    return APIError(message, **kwargs)


class Transport:
    """Sends requests to the platform; one per client, thread-safe for concurrent calls."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float,
        max_retries: int,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.session = session or requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "User-Agent": f"cynaps-data/{__version__}",
                "Accept": "application/json",
            }
        )

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        raw: bool = False,
        stream: bool = False,
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON body.

        ``raw=True`` returns the :class:`requests.Response` (for binary bodies) instead;
        with ``stream=True`` too, its body is not read yet (read ``response.raw``, then close).
        """
        method = method.upper()
        send_headers = dict(headers or {})
        body = content
        if json is not None:
            body = orjson.dumps(
                json,
                default=_array_like,
                option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            )
            content_type = "application/json"
        if content_type:
            send_headers["Content-Type"] = content_type
        if method == "POST":
            send_headers[IDEMPOTENCY_HEADER] = idempotency_key or f"idk_{uuid.uuid4().hex}"
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method,
                    url,
                    data=body,
                    params=params,
                    headers=send_headers,
                    timeout=timeout or self.timeout,
                    stream=stream and raw,
                )
            except requests.Timeout as exc:
                error: Exception = APITimeoutError(
                    f"{method} {path} timed out after {timeout or self.timeout:g} s"
                )
                cause: Exception = exc
                retry_after = None
            except requests.ConnectionError as exc:
                error = APIConnectionError(
                    f"Could not connect to the Cynaps platform at {self.base_url}: {exc}"
                )
                cause = exc
                retry_after = None
            else:
                if response.status_code < 400:
                    if raw:
                        return response
                    if response.status_code == 204 or not response.content:
                        return None
                    return orjson.loads(response.content)
                error = error_from_response(response)
                cause = None
                if response.status_code not in RETRY_STATUSES:
                    raise error
                retry_after = getattr(error, "retry_after", None) or parse_retry_after(
                    response.headers.get("Retry-After")
                )
            if attempt >= self.max_retries:
                raise error from cause
            time.sleep(backoff_delay(attempt, retry_after))
            attempt += 1

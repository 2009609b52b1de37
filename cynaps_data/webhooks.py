"""Sign and verify webhooks as the Standard Webhooks specification (v1) says (stdlib only).

A message carries three headers: ``webhook-id`` (the same on every retry of one message: dedupe
on it), ``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``: one or
more space-separated ``v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"`` keyed with the
base64-decoded part of the endpoint's ``whsec_…`` secret. During a secret rotation the platform
sends two signatures (new and old secret); any one that matches is enough.

>>> event = verify(body, request.headers, secret)   # dict: {"type", "timestamp", "data"}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from .errors import WebhookVerificationError

__all__ = ["SECRET_PREFIX", "WebhookVerificationError", "new_secret", "sign", "verify"]

SECRET_PREFIX = "whsec_"


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    elif isinstance(secret, str):
        text = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except ValueError:
            key = None
    else:
        key = None
    if not key:
        # an empty key (an unset secret: "" or "whsec_") would let anyone sign
        raise WebhookVerificationError(
            "The secret is not a whsec_… value (non-empty base64 after the prefix).",
            code="invalid_secret",
        )
    return key


def new_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes, base64)."""
    import secrets

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(msg_id: str, timestamp: int, body: bytes | str, secret: str | bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    payload = body.encode() if isinstance(body, str) else body
    to_sign = f"{msg_id}.{int(timestamp)}.".encode() + payload
    digest = hmac.new(_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> Any:
    """The parsed event (``{"type", "timestamp", "data"}``) if the signature matches, else
    :class:`~cynaps_data.errors.WebhookVerificationError`.

    ``body`` must be the raw request body (bytes as received, not re-serialised JSON);
    ``headers`` any mapping (names are matched case-insensitively); ``tolerance`` the seconds a
    timestamp may differ from now (replay protection).
    """
    lowered = {str(k).lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", signatures),
        )
        if not value
    ]
    if missing:
        raise WebhookVerificationError(
            f"Missing header(s): {', '.join(missing)}", code="missing_headers"
        )
    text = str(stamp).strip()
    # ASCII digits only, and few enough to be a time: int() would also take "١٧…", "1_7…" and
    # a 400-digit number that overflows the comparison below
    if not (text.isascii() and text.isdigit() and len(text) <= 15):
        raise WebhookVerificationError(
            f"webhook-timestamp is not Unix seconds: {str(stamp)[:40]!r}", code="invalid_timestamp"
        )
    timestamp = int(text)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"Stale or future timestamp: {timestamp} is {current - timestamp:+.0f} s from now "
            f"(tolerance {tolerance:g} s); a replayed or delayed message.",
            code="stale_timestamp",
        )
    expected = sign(msg_id, timestamp, body, secret).partition(",")[2].encode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            try:
                return json.loads(body)
            except ValueError:
                raise WebhookVerificationError(
                    "The signed body is not JSON", code="invalid_body"
                ) from None
    raise WebhookVerificationError(
        "No signature matches: wrong secret, or the body was changed (verify the raw bytes).",
        code="bad_signature",
    )

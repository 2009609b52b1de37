"""Identifiers and API keys.

Keys look like ``sk_test_<32 base62>`` (customers, sandbox), ``sk_live_…`` (live mode),
``ak_test_…`` (annotators and experts) and ``admin_test_…``; the fixed prefixes let secret
scanners recognise them. Only the SHA-256 of a key is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_id(prefix: str, length: int = 14) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def new_api_key(role: str, *, sandbox: bool) -> str:
    mode = "test" if sandbox else "live"
    kind = {"customer": "sk", "annotator": "ak", "expert": "ak", "admin": "admin"}[role]
    return f"{kind}_{mode}_{''.join(secrets.choice(_ALPHABET) for _ in range(32))}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_prefix(key: str) -> str:
    head, _, rest = key.rpartition("_")
    return f"{head}_{rest[:4]}"

"""Secrets the platform must be able to read back (webhook signing secrets), encrypted at rest.

API keys are stored as hashes, but a webhook secret is needed in clear to sign every message, so
it is stored encrypted with AES-256-GCM (``cryptography``) under a 32-byte platform key kept in
a file readable by the platform's user only (mode 0600): ``Settings.platform_key_file``, by
default ``<sqlite file>-platform.key`` beside the database, or ``~/.cynaps/platform.key`` for a
PostgreSQL URL. The file is created on first use; a file that group or others may read is
refused. A database copied without that file holds no usable webhook secret. Every platform
process sharing a database must use the same key file (docs/configuration.md).

Stored form: ``v1:<base64 nonce(12) || ciphertext || tag>``, with the row's id as associated
data, so a ciphertext moved to another row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

import sqlalchemy as sa

from .settings import Settings

_VERSION = "v1:"


def key_path(settings: Settings) -> Path:
    """Where the platform key lives for these settings."""
    if settings.platform_key_file:
        return Path(settings.platform_key_file).expanduser()
    url = sa.engine.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(f"{url.database}-platform.key")
    return Path("~/.cynaps/platform.key").expanduser()


def load_key(path: Path) -> bytes:
    """The 32-byte key in ``path``, created (0600, atomically) if the file does not exist.

    The key is written to a private temporary file first and then linked into place (which
    fails if the file exists), so another process never sees the file empty or half written,
    and all of them end up with the first key linked.
    """
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:  # another process linked its key first: use that one
                pass
            except (PermissionError, NotImplementedError):  # a file system without hard links
                _create_in_place(path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(
            f"The platform key file {path} may be read by other users (mode {oct(mode & 0o777)}); "
            f"run: chmod 600 {path}"
        )
    key = path.read_bytes()
    if len(key) != 32:
        raise ValueError(f"The platform key file {path} must hold exactly 32 bytes")
    return key


def _create_in_place(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))


class SecretBox:
    """Encrypt/decrypt short secrets bound to a row id."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    @classmethod
    def for_settings(cls, settings: Settings) -> SecretBox:
        path = key_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(load_key(path))

    def seal(self, secret: str, row_id: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), row_id.encode())
        return _VERSION + base64.b64encode(nonce + sealed).decode()

    def open(self, stored: str, row_id: str) -> str:
        if not stored.startswith(_VERSION):
            raise ValueError("unknown secret format")
        raw = base64.b64decode(stored[len(_VERSION) :])
        return self._aead.decrypt(raw[:12], raw[12:], row_id.encode()).decode()

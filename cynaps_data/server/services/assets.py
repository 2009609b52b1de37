"""Image assets: content-addressed (SHA-256) files that task data refers to.

Contract. ``store`` takes the raw bytes of one image for a project, checks by magic bytes that
it is a PNG, JPEG, GIF or WebP (nothing else is accepted: no SVG, no HTML), and keeps it once
under ``<asset_dir>/<sha[:2]>/<sha>`` (names are the hash only, so no path traversal). The
``assets`` table links ``(project_id, sha256)`` to its content type, byte size and pixel
``width``/``height`` (read from the image header, :func:`cynaps_data.imagesize.image_size`;
null when the header cannot be read), all returned by the upload; re-uploading the
same bytes is a no-op (idempotent). ``open_for`` answers a read: the owning customer, and
annotators/experts who may work on that project (an active or in-review project of their team
owner, or of anyone for the platform pool — the same rule as task assignment). Anyone else gets
404, as for a missing asset. The platform never fetches URLs: assets arrive only as bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ...imagesize import image_size
from ..db import Database
from ..problems import Problem, invalid, invalid_state
from ..settings import Settings
from ..tables import assets, projects
from . import projects as project_service
from .accounts import Principal

MAX_ASSET_BYTES = 32 * 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
UPLOAD_STATES = frozenset({"draft", "pending_deposit"})
IMAGE_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
)


def sniff(data: bytes) -> str | None:
    """The image content type by magic bytes (PNG, JPEG, GIF, WebP), else ``None``."""
    for magic, offset, content_type in IMAGE_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/cynaps``, else ``~/.local/share/cynaps``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cynaps"


def asset_dir(settings: Settings) -> Path:
    """Where asset files live: ``settings.asset_dir``, else ``assets/`` beside a SQLite file,
    else ``assets/`` in the per-user data directory (:func:`default_data_dir`).

    The directory is created private (0700); an existing one must be a real directory (not a
    symlink) owned by the platform's user and not writable by group or others, else the
    platform refuses it (a 500 naming the directory, and a log line), since files planted
    there would be served as a customer's images. A private one of ours with looser read bits
    is tightened to 0700.
    """
    if settings.asset_dir:
        path = Path(settings.asset_dir)
    elif settings.database_url.startswith("sqlite:///") and ":memory:" not in settings.database_url:
        path = Path(settings.database_url[len("sqlite:///") :]).parent / "assets"
    else:
        path = default_data_dir() / "assets"
    return private_dir(path)


class UnsafeAssetDir(RuntimeError):
    """The asset directory is not private to the platform's user."""


def private_dir(path: Path) -> Path:
    """``path`` created 0700 (parents as needed), or checked private if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeAssetDir(f"asset directory {path} is not a directory (a symlink?); refusing it")
    if info.st_uid != os.getuid():
        raise UnsafeAssetDir(
            f"asset directory {path} is owned by uid {info.st_uid}, not by the platform's user "
            f"(uid {os.getuid()}); refusing it. Remove it or set Settings.asset_dir."
        )
    if info.st_mode & 0o022:
        raise UnsafeAssetDir(
            f"asset directory {path} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); refusing it. Remove it or chmod 700."
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _file(settings: Settings, sha: str) -> Path:
    if not SHA256_RE.match(sha):  # defence in depth: callers check too
        raise invalid("asset id must be 64 lowercase hex characters (a SHA-256)", param="sha256")
    return asset_dir(settings) / sha[:2] / sha


def store(
    db: Database,
    settings: Settings,
    owner_id: str,
    project_id: str,
    data: bytes,
    *,
    expected_sha: str | None = None,
) -> dict:
    """Keep one image for a project; returns ``{"object": "asset", "sha256", ...}``."""
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
    if project.state not in UPLOAD_STATES or project.deposit_cents is not None:
        raise invalid_state(
            f"Assets can be added only while tasks can be (project is {project.state!r}); "
            "create a new project for more data."
        )
    if not data:
        raise invalid("The body is empty; send the image bytes", param="body")
    if len(data) > MAX_ASSET_BYTES:
        raise Problem(
            413, "asset_too_large", f"An asset is at most {MAX_ASSET_BYTES} bytes, got {len(data)}."
        )
    content_type = sniff(data)
    if content_type is None:
        raise Problem(
            415,
            "unsupported_media_type",
            "Only PNG, JPEG, GIF and WebP images are accepted as assets (checked by their bytes).",
            param="body",
        )
    sha = hashlib.sha256(data).hexdigest()
    width, height = image_size(data) or (None, None)
    if expected_sha is not None and expected_sha.lower() != sha:
        raise invalid(
            f"X-Content-SHA256 {expected_sha!r} does not match the body's SHA-256 {sha}",
            param="X-Content-SHA256",
        )
    path = _file(settings, sha)
    if not path.exists():
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    row = {
        "project_id": project_id,
        "sha256": sha,
        "content_type": content_type,
        "size": len(data),
        "created_at": time.time(),
        "width": width,
        "height": height,
    }
    with db.write() as conn:
        exists = conn.execute(
            sa.select(assets.c.sha256).where(
                assets.c.project_id == project_id, assets.c.sha256 == sha
            )
        ).first()
        if exists is None:
            conn.execute(assets.insert(), row)
    return {
        "object": "asset",
        "sha256": sha,
        "content_type": content_type,
        "size": len(data),
        "width": width,
        "height": height,
        "url": f"/v1/projects/{project_id}/assets/{sha}",
        "created": exists is None,
    }


def _may_read(conn: sa.Connection, principal: Principal, project_id: str) -> bool:
    if principal.role in ("customer", "admin"):
        return (
            conn.execute(
                sa.select(projects.c.id).where(
                    projects.c.id == project_id, projects.c.owner_id == principal.account_id
                )
            ).first()
            is not None
        )
    if principal.role in ("annotator", "expert"):
        query = sa.select(projects.c.id).where(
            projects.c.id == project_id, projects.c.state.in_(("active", "review"))
        )
        if principal.owner_id is not None:
            query = query.where(projects.c.owner_id == principal.owner_id)
        return conn.execute(query).first() is not None
    return False


def _plain_file(path: Path) -> bool:
    """A regular file reached without any symlink (the file and its shard directory)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode) and stat.S_ISDIR(os.lstat(path.parent).st_mode)
    except OSError:
        return False


def open_for(
    db: Database, settings: Settings, principal: Principal, project_id: str, sha: str
) -> tuple[Path, Any]:
    """``(file path, asset row)`` if ``principal`` may read the asset; 404 otherwise."""
    missing = Problem(404, "resource_missing", f"No such asset: {sha!r}", param="sha256")
    if not SHA256_RE.match(sha):
        raise missing
    with db.read() as conn:
        if not _may_read(conn, principal, project_id):
            raise missing
        row = conn.execute(
            sa.select(assets).where(assets.c.project_id == project_id, assets.c.sha256 == sha)
        ).first()
    if row is None:
        raise missing
    path = _file(settings, sha)
    if not _plain_file(path):
        raise Problem(
            404,
            "resource_missing",
            f"Asset {sha} is recorded but its file is gone from the asset directory.",
            param="sha256",
        )
    return path, row

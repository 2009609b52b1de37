"""/v1/projects/{id}/assets: upload image assets (customer) and read them (owner, annotators).

Reads are served only with the image content type found by magic bytes at upload, with
``X-Content-Type-Options: nosniff``, ``Content-Security-Policy: default-src 'none'; sandbox``
and ``Content-Disposition: inline`` — never as HTML or script.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ..deps import DB, AppSettings, Caller, Customer
from ..services import assets as service

router = APIRouter(prefix="/v1/projects/{project_id}/assets", tags=["assets"])


@router.post("", status_code=201)
async def upload_asset(
    request: Request, db: DB, settings: AppSettings, caller: Customer, project_id: str
) -> dict:
    """The body is the raw image (PNG, JPEG, GIF or WebP); ``X-Content-SHA256`` is optional."""
    data = await request.body()
    from anyio import to_thread

    return await to_thread.run_sync(
        lambda: service.store(
            db,
            settings,
            caller.account_id,
            project_id,
            data,
            expected_sha=request.headers.get("x-content-sha256"),
        )
    )


@router.get("/{sha256}", response_model=None)
def read_asset(
    db: DB, settings: AppSettings, caller: Caller, project_id: str, sha256: str
) -> FileResponse:
    path, row = service.open_for(db, settings, caller, project_id, sha256)
    return FileResponse(
        path,
        media_type=row.content_type,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": f'inline; filename="{sha256[:16]}"',
            "Cache-Control": "private, max-age=86400, immutable",
        },
    )

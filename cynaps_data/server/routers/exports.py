"""/v1/projects/{id}/export: results download (seed JSON, or Arrow IPC for the typed exports)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from ...wire import ARROW_STREAM
from ..deps import DB, Customer
from ..problems import invalid
from ..services import billing, export_stream
from ..services import exports as service

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["exports"])

FORMS = ("wide", "long")


@router.get("/export")
def export(
    db: DB,
    caller: Customer,
    project_id: str,
    format: str = "json",
    form: str = "wide",
    since: float | None = None,
) -> Response:
    """Download results (releases escrowed credits to annotators, once per judgement).

    ``format=json``: the seed's list of records. ``format=arrow``: an Arrow IPC stream, one row
    per task (``form=wide``) or per judgement (``form=long``), sent while it is being built; its
    last (empty) record batch carries the next cursor in its custom metadata
    (``cynaps.cursor``); ``since`` (seconds since the epoch, a previous export's cursor) limits
    it to what changed after. A stream that ends with a ``cynaps.restart`` batch is to be
    discarded: the whole export follows as a second stream (services.export_stream.wide_stream).
    """
    if format == "json":
        if since is not None:
            raise invalid("since is supported with format=arrow", param="since")
        records = service.json_records(db, caller.account_id, project_id)
        body = orjson.dumps(records)  # money moves only once the export is serialised (issue 12)
        billing.release_on_download(db, caller.account_id, project_id)
        return Response(body, media_type="application/json")
    if format != "arrow":
        raise invalid(
            f"Unknown export format {format!r}; the platform serves 'json' and 'arrow' "
            "(the client builds csv, parquet, datasets, ... from arrow)",
            param="format",
        )
    if form not in FORMS:
        raise invalid(f"Unknown form {form!r}; use 'wide' or 'long'", param="form")
    stream = export_stream.wide_stream if form == "wide" else export_stream.long_stream
    body = stream(db, caller.account_id, project_id, since=since)  # 404/400 raised here

    def then_release():
        # money moves once the whole stream was produced (issue 12): the last chunk (the closing
        # batch with the cursor) is held back until the release committed, so a client that
        # has read the whole export always sees the escrow released
        last = None
        for chunk in body:
            if last is not None:
                yield last
            last = chunk
        billing.release_on_download(db, caller.account_id, project_id)
        if last is not None:
            yield last

    return StreamingResponse(then_release(), media_type=ARROW_STREAM)

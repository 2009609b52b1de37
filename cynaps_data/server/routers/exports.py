"""/v1/projects/{id}/export: results download (seed JSON, or Arrow IPC for the typed exports)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import DB, Customer
from ..problems import invalid
from ..services import exports as service

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["exports"])

ARROW_STREAM = "application/vnd.apache.arrow.stream"
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
    per task (``form=wide``) or per judgement (``form=long``); ``since`` (seconds since the
    epoch, from a previous export's ``X-Cynaps-Cursor``) limits it to what changed after.
    """
    if format == "json":
        if since is not None:
            raise invalid("since is supported with format=arrow", param="since")
        records = service.json_records(db, caller.account_id, project_id)
        return Response(orjson.dumps(records), media_type="application/json")
    if format != "arrow":
        raise invalid(
            f"Unknown export format {format!r}; the platform serves 'json' and 'arrow' "
            "(the client builds csv, parquet, datasets, ... from arrow)",
            param="format",
        )
    if form not in FORMS:
        raise invalid(f"Unknown form {form!r}; use 'wide' or 'long'", param="form")
    build = service.arrow_tasks if form == "wide" else service.arrow_judgements
    table = build(db, caller.account_id, project_id, since=since)
    service.release_results(db, caller.account_id, project_id)
    meta = orjson.loads(table.schema.metadata[service.PROJECT_KEY])
    return Response(
        service.ipc_bytes(table),
        media_type=ARROW_STREAM,
        headers={"X-Cynaps-Cursor": repr(meta["cursor"]), "X-Cynaps-Rows": str(table.num_rows)},
    )

"""Exports: the seed's JSON and the bulk Arrow tables the typed client exports are built from.

JSON keeps the seed's shape: ``record["annotations"][0]["result"]["value"]`` is the task's final
label; the individual judgements and the consensus metadata are in the record too.

Arrow (``arrow_tasks``, ``arrow_judgements``) never builds a Python object per row beyond the
DB-API tuples: columns are assembled with pyarrow, the task ``data`` JSON text is parsed in bulk
with ``pyarrow.json`` and the per-task vote columns are computed by the annotation type over the
vote arrays.

The reader is ``export_reader``, the vote columns come from ``votes`` (through the project's
annotation type), the IPC streaming is ``export_stream``. No money moves here: downloading
results releases the escrow through ``billing.release_on_download``, called by the route.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import sqlalchemy as sa

from ...types import get_type
from ...wire import PROJECT_KEY
from ..db import Database
from ..problems import invalid
from ..tables import judgements, tasks
from . import projects as project_service
from . import votes as vote_service
from .export_reader import (
    LONG_COLUMNS,
    TASK_COLUMNS,
    VOTE_COLUMNS,
    Fetched,
    as_string_array,
    parse_data,
    parse_fetched,
    reader,
    readers,
)
from .votes import category, strings_to_codes, timestamps

#: Tasks changed within this many seconds before the export started are sent again next time
#: (a write that was in flight while we read may commit with an earlier timestamp).
CURSOR_GRACE_SECONDS = 2.0
ROLES = ["annotator", "expert"]
ORIGINS = ["platform", "imported"]
#: Tasks per chunk of the wide export on SQLite: at most, at least, and the number of chunks
#: aimed for (so that reading and building overlap for mid-sized projects too).
CHUNK_TASKS = 131_072
MIN_CHUNK_TASKS = 16_384
PIPELINE_CHUNKS = 8
#: Threads of the wide export's pipeline (one reads SQLite, one builds); 1: no pipeline.
EXPORT_THREADS = max(1, min(2, os.cpu_count() or 1))
#: Chunks read ahead of the one being sent (bounds the memory of a slow download).
READ_AHEAD = 3
#: PostgreSQL connections reading the wide export's chunks in parallel (one snapshot).
PG_READERS = 2
#: Stands in a pipeline slot whose chunk was built (a done future holding nothing).
_TAKEN: Future = Future()
_TAKEN.set_result(None)


def json_records(db: Database, owner_id: str, project_id: str) -> list[dict]:
    """The seed-shaped JSON export of every task, in upload order (moves no money: the route
    releases the escrow with ``billing.release_on_download``)."""
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
        atype = get_type(project.annotation_type)
        by_task: dict[int, list[dict]] = defaultdict(list)
        for j in conn.execute(
            sa.select(judgements)
            .where(judgements.c.project_id == project_id)
            .order_by(judgements.c.id)
        ):
            by_task[j.task_id].append(
                {
                    "annotator_id": j.annotator_id,
                    "role": j.role,
                    "label": orjson.loads(j.value),
                    "duration": j.duration,
                    "created_at": j.created_at,
                }
            )
        records = []
        for task in conn.execute(
            sa.select(tasks).where(tasks.c.project_id == project_id).order_by(tasks.c.id)
        ):
            votes = by_task.get(task.id, [])
            consensus = vote_service.task_consensus(atype, project.labels, task, votes)
            annotations = []
            if consensus["label"] is not None:
                annotations.append(
                    {
                        "type": project.annotation_type,
                        "result": {
                            "value": consensus["label"],
                            **{k: consensus[k] for k in ("label_source", "agreement")},
                        },
                        "ground_truth": consensus["label_source"] == "expert",
                    }
                )
            records.append(
                {
                    "id": task.id,
                    "external_id": task.external_id,
                    "data": orjson.loads(task.data),
                    "gold": orjson.loads(task.gold) if task.gold else None,
                    "annotations": annotations,
                    "judgements": votes,
                    "consensus": consensus,
                }
            )
    return records


def _project_meta(
    project: Any, since: float | None, cursor: float, form: str
) -> dict[bytes, bytes]:
    description = {
        "project_id": project.id,
        "name": project.name,
        "annotation_type": project.annotation_type,
        "labels": project.labels,
        "quality_settings": project.quality_settings,
        "state": project.state,
        "source_schema": project.source_schema,
        "form": form,
        "since": since,
        "cursor": cursor,
        "exported_at": time.time(),
    }
    return {PROJECT_KEY: orjson.dumps(description)}


def _check_since(since: float | None) -> None:
    if since is not None and not np.isfinite(since):
        raise invalid("since must be a finite timestamp (seconds since the epoch)", param="since")


def _task_id_range(conn: sa.Connection, project_id: str) -> tuple[int, int] | None:
    """The project's smallest and largest task id, or ``None`` without tasks.

    Index probes only: for each status present (found by hopping through the
    ``(project_id, status)`` index), SQLite reads ``min(id)``/``max(id)`` from the end of that
    index range, instead of visiting every task of the project."""
    lo = hi = None
    status = conn.execute(
        sa.select(sa.func.min(tasks.c.status)).where(tasks.c.project_id == project_id)
    ).scalar()
    while status is not None:
        of_status = (tasks.c.project_id == project_id) & (tasks.c.status == status)
        first = conn.execute(sa.select(sa.func.min(tasks.c.id)).where(of_status)).scalar()
        last = conn.execute(sa.select(sa.func.max(tasks.c.id)).where(of_status)).scalar()
        lo = first if lo is None else min(lo, first)
        hi = last if hi is None else max(hi, last)
        status = conn.execute(
            sa.select(sa.func.min(tasks.c.status)).where(
                tasks.c.project_id == project_id, tasks.c.status > status
            )
        ).scalar()
    return None if lo is None else (int(lo), int(hi))


def _id_chunks(id_range: tuple[int, int] | None, n_tasks: int) -> list[tuple[int, int]]:
    """``id_range`` split into spans of equal width, for about :data:`PIPELINE_CHUNKS` chunks
    of :data:`MIN_CHUNK_TASKS` to :data:`CHUNK_TASKS` tasks each (at least one chunk)."""
    if id_range is None:
        return [(0, -1)]
    lo, hi = id_range
    size = min(CHUNK_TASKS, max(MIN_CHUNK_TASKS, -(-n_tasks // PIPELINE_CHUNKS)))
    n = max(1, -(-max(n_tasks, 1) // size))
    step = -(-(hi - lo + 1) // n)
    return [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]


class Part(NamedTuple):
    """The wide export of one chunk of tasks."""

    columns: dict[str, Any]  # the wide columns but ``data``
    data: pa.Array  # ``data`` as parsed by :func:`parse_data`
    texts: Any  # the ``data`` JSON texts (to parse again with the other chunks' rows)
    updated: np.ndarray  # ``updated_at`` seconds


class WidePlan(NamedTuple):
    project: Any
    since: float | None
    started: float
    chunks: list[Any]  # id ranges, or ``[None]``: the whole project at once
    sqlite: bool = True


def plan_wide(db: Database, owner_id: str, project_id: str, since: float | None) -> WidePlan:
    """Check the request (404 for another account's project, 400 for a bad ``since``) and
    split the project's tasks into chunks."""
    _check_since(since)
    started = time.time()
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
        id_range = _task_id_range(conn, project_id)
        sqlite = conn.dialect.name == "sqlite"
    chunks = _id_chunks(id_range, project.task_count or 0)
    return WidePlan(project, since, started, chunks, sqlite)


def _chunk_where(plan: WidePlan, id_range: tuple[int, int] | None) -> tuple[str, tuple]:
    if id_range is None:
        where, params = "project_id = ?", (plan.project.id,)
    else:  # (SQLite: ``+`` keeps it on the rowid range, off the project_id index)
        where = ("+" if plan.sqlite else "") + "project_id = ? AND id BETWEEN ? AND ?"
        params = (plan.project.id, *id_range)
    if plan.since is not None:
        where, params = where + " AND updated_at > ?", (*params, plan.since)
    return where, params


def _task_part(
    db: Database, plan: WidePlan, id_range: tuple[int, int] | None, fetched: Any = None
) -> Part:
    """The wide export of the project's tasks in ``id_range`` (``None``: all), from their rows
    as :func:`_fetch_text` read them (``fetched``; read now in one snapshot when not given)."""
    atype = get_type(plan.project.annotation_type)
    where, params = _chunk_where(plan, id_range)
    t = parse_fetched(fetched) if isinstance(fetched, Fetched) else fetched
    if t is None:
        with reader(db) as query:
            # (a value holding a separator takes the DB-API path, in a snapshot of its own)
            mode = "rows" if isinstance(fetched, Fetched) else "auto"
            t = query("tasks", where, params, TASK_COLUMNS, mode=mode)
    votes = vote_service.from_summary(t)
    if votes is None:  # a worker id holding the separator: read the judgements instead
        j_where = "project_id = ? AND task_id IN (SELECT id FROM tasks WHERE " + where + ")"
        with reader(db) as query:
            j = query("judgements", j_where, (plan.project.id, *params), VOTE_COLUMNS)
        votes = vote_service.from_judgements(t["id"].to_numpy(), j)
    texts = t["data"]
    return Part(
        vote_service.wide_columns(atype, plan.project.labels, t, votes),
        parse_data(texts),
        texts,
        t["updated_us"].to_numpy() / 1e6,
    )


def wide_parts(db: Database, plan: WidePlan) -> Iterator[Part]:
    """The chunks' parts in order, from a two-stage pipeline: reader threads fetch the chunks in
    one snapshot while another thread builds the chunks already read (``pyarrow`` and numpy
    kernels, outside the GIL). SQLite: one reader (two threads reading SQLite at once cost
    about 3x the CPU here, SQLite's allocator being behind one process-wide mutex); PostgreSQL:
    :data:`PG_READERS` connections sharing one snapshot, taking the chunks in turn (the server
    builds each chunk's text in a process of its own). At most :data:`READ_AHEAD` chunks are in
    flight (read, not yet taken by the caller)."""
    if len(plan.chunks) == 1 or EXPORT_THREADS <= 1:
        for id_range in plan.chunks:
            yield _task_part(db, plan, id_range)
        return
    reads: list[Future] = [Future() for _ in plan.chunks]
    room = threading.Semaphore(READ_AHEAD)
    stop = threading.Event()
    n_readers = 1 if plan.sqlite else min(PG_READERS, len(plan.chunks))

    def read_some(query: Any, first: int, step: int) -> None:
        try:
            for i in range(first, len(plan.chunks), step):
                room.acquire()
                if stop.is_set():
                    break
                reads[i].set_result(
                    query("tasks", *_chunk_where(plan, plan.chunks[i]), TASK_COLUMNS, mode="fetch")
                )
        except BaseException as exc:  # noqa: BLE001 - handed to the builder
            stop.set()  # (the other readers stop too)
            _fail_pending(reads, exc)

    def read_all() -> None:
        try:
            with (
                readers(db, n_readers) as queries,
                ThreadPoolExecutor(len(queries), thread_name_prefix="cynaps-export-read") as pool,
            ):
                for f in [
                    pool.submit(read_some, q, i, len(queries)) for i, q in enumerate(queries)
                ]:
                    f.result()
        except BaseException as exc:  # noqa: BLE001 - handed to the builder
            _fail_pending(reads, exc)
        finally:
            for read in reads:
                read.cancel()  # (no-op for the ones read or failed)

    def build(i: int) -> Part:
        fetched = reads[i].result()
        reads[i] = _TAKEN  # the chunk's text is not kept once it is built
        return _task_part(db, plan, plan.chunks[i], fetched)

    read_pool = ThreadPoolExecutor(1, thread_name_prefix="cynaps-export-read")
    builder = ThreadPoolExecutor(1, thread_name_prefix="cynaps-export-build")
    builds: list[Future | None] = []
    try:
        read_pool.submit(read_all)
        builds = [builder.submit(build, i) for i in range(len(plan.chunks))]
        for i in range(len(builds)):
            part = builds[i].result()  # type: ignore[union-attr]
            builds[i] = None  # nor the part once it is handed on: memory stays bounded
            room.release()
            yield part
            del part
    finally:
        stop.set()
        for _ in plan.chunks:
            room.release()
        for pending in builds:
            if pending is not None:
                pending.cancel()
        read_pool.shutdown(wait=False)
        builder.shutdown(wait=False)


def _fail_pending(reads: list[Future], exc: BaseException) -> None:
    """Hand ``exc`` to every read still pending (another reader may settle one meanwhile)."""
    for read in reads:
        try:
            if not read.done():
                read.set_exception(exc)
        except InvalidStateError:
            pass


def _data_column(parts: list[Part]) -> Any:
    """The ``data`` struct of all parts: the parts' own parses when they agree on the types,
    else the whole column parsed at once (types then come from every row, as for one part)."""
    kept = [p for p in parts if len(p.texts)] or parts[:1]
    if len({p.data.type for p in kept}) == 1:
        pieces = [p.data for p in kept]
        return pa.chunked_array(pieces, pieces[0].type) if len(pieces) > 1 else pieces[0]
    return parse_data(pa.chunked_array([as_string_array(p.texts) for p in kept], pa.string()))


def assemble(parts: list[Part], data: Any) -> pa.Table:
    """The wide table of ``parts`` (in order) with ``data`` after ``external_id``."""
    columns = {}
    for name in parts[0].columns:
        pieces = [p.columns[name] for p in parts]
        columns[name] = pa.chunked_array(pieces, pieces[0].type) if len(pieces) > 1 else pieces[0]
        if name == "external_id":
            columns["data"] = data
    return pa.table(columns)


def wide_meta(plan: WidePlan, cursor: float | None) -> dict[bytes, bytes]:
    return _project_meta(plan.project, plan.since, cursor, "wide")


def build_wide(db: Database, plan: WidePlan) -> pa.Table:
    parts = list(wide_parts(db, plan))
    table = assemble(parts, _data_column(parts))
    updated = np.concatenate([p.updated for p in parts])
    cursor = next_cursor(updated, plan.since, plan.started)
    return table.replace_schema_metadata(wide_meta(plan, cursor))


def arrow_tasks(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> pa.Table:
    """One row per task (wide form), ordered by task id.

    Columns: ``task`` int64, ``external_id`` string, ``data`` struct (the task's fields),
    ``gold`` and ``label`` dictionary over the project's labels, ``label_source``, ``status``
    (dictionaries), ``agreement`` (the top answer's share of the annotators' current votes)
    and ``confidence`` float64, ``n_annotations`` int64,
    ``vote_distribution`` struct of float64 shares per label (null without votes),
    ``annotator_ids`` list<string>, ``expert_label`` dictionary, ``expert_id`` string,
    ``updated_at`` timestamp[us, UTC]. With ``since``: only tasks changed after it. The schema
    metadata ``cynaps.project`` holds the project description and the next ``cursor``.

    The project's id range is read in chunks of about :data:`CHUNK_TASKS` tasks, in one
    snapshot, each chunk built while the next one is read (:func:`wide_parts`).
    """
    return build_wide(db, plan_wide(db, owner_id, project_id, since))


def next_cursor(updated: Any, since: float | None, started: float) -> float:
    """The ``since`` of the next incremental export: the newest change seen, held back by the
    grace period (so a change committed late is sent next time; a task may repeat)."""
    floor = since if since is not None else 0.0
    newest = float(np.max(updated)) if len(updated) else floor
    return float(max(floor, min(newest, started - CURSOR_GRACE_SECONDS)))


def arrow_judgements(
    db: Database, owner_id: str, project_id: str, *, since: float | None = None
) -> pa.Table:
    """One row per judgement (long form), in the order they were made.

    Columns: ``task`` int64, ``worker`` string, ``label`` dictionary over the project's labels,
    ``role`` dictionary (annotator | expert), ``origin`` dictionary (platform | imported),
    ``created_at`` timestamp[us, UTC], ``duration`` float64 seconds (null when unknown),
    ``judgement`` int64 id. With ``since``: judgements made after it.
    """
    _check_since(since)
    started = time.time()
    with db.read() as conn:
        project = project_service.load(conn, owner_id, project_id)
    atype = get_type(project.annotation_type)
    where = "project_id = ?" + (" AND created_at > ?" if since is not None else "")
    params = (project_id,) if since is None else (project_id, since)
    with reader(db) as query:
        j = query("judgements", where, params, LONG_COLUMNS)
    j_created = j["created_us"].to_numpy() / 1e6
    table = pa.table(
        {
            "task": j["task_id"],
            "worker": j["annotator_id"],
            "label": atype.long_label(as_string_array(j["value"]), project.labels),
            "role": category(strings_to_codes(j["role"], ROLES), ROLES),
            "origin": category(strings_to_codes(j["origin"], ORIGINS), ORIGINS),
            "created_at": timestamps(j["created_us"]),
            "duration": j["duration"],
            "judgement": j["id"],
        }
    )
    cursor = next_cursor(j_created, since, started)
    return table.replace_schema_metadata(_project_meta(project, since, cursor, "long"))

"""PostgreSQL bulk task insert through ``COPY`` (psycopg 3), beside :mod:`.db`.

Data contract
-------------
:func:`copy_tasks` takes the same validated columns as
:func:`cynaps_data.server.services.tasks.insert_rows` (``external_ids``: str or None per row,
``data``: JSON object texts, ``gold``/``predictions``: JSON texts or None, a column given as
None is NULL for every row) on a SQLAlchemy connection inside the upload's write transaction,
and returns the number of tasks created.

How: the rows are streamed with ``COPY ... FROM STDIN`` into a temporary staging table (dropped
at commit), then moved with one ``INSERT ... SELECT ... ORDER BY ord ON CONFLICT (project_id,
external_id) DO NOTHING``, so

* validation stays where it is (the batch is validated before this is called);
* re-uploading the same ``external_id`` creates nothing (duplicates within one batch too: the
  first one wins, as with the multi-row ``INSERT``);
* task ids follow upload order (``ord``);
* the batch is all-or-nothing: everything runs in the caller's transaction.

``COPY`` sends the rows as one data stream (no per-row statement, no parameter binding), which
is what makes PostgreSQL ingest fast.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["copy_tasks", "STAGE_TABLE"]

STAGE_TABLE = "cynaps_task_stage"


def copy_tasks(
    conn: sa.Connection,
    project: Any,
    external_ids: Sequence[str | None] | None,
    data: Sequence[str],
    gold: Sequence[str | None] | None = None,
    predictions: Sequence[str | None] | None = None,
) -> int:
    """COPY the rows into a staging table and insert the new ones into ``tasks``; returns the
    tasks created (see the module contract)."""
    n = len(data)
    if not n:
        return 0
    columns: list[tuple[str, Sequence[Any]]] = [("data", data)]
    for name, column in (
        ("external_id", external_ids),
        ("gold", gold),
        ("predictions", predictions),
    ):
        if column is not None:
            if len(column) != n:
                raise ValueError("task columns differ in length")
            columns.append((name, column))
    names = [c for c, _ in columns]
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE {STAGE_TABLE} (ord bigint, external_id text, data text, "
            "gold text, predictions text) ON COMMIT DROP"
        )
        with cur.copy(f"COPY {STAGE_TABLE} (ord, {', '.join(names)}) FROM STDIN") as copy:
            values = [c for _, c in columns]
            for row in zip(range(n), *values, strict=True):
                copy.write_row(row)
        cur.execute(
            "INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed,"
            " updated_at, status, n_judgements, charged, released)"
            f" SELECT %s, external_id, data, gold, predictions, %s, %s, 'pending', 0, false, false"
            f" FROM {STAGE_TABLE} ORDER BY ord"
            " ON CONFLICT (project_id, external_id) DO NOTHING",
            (project.id, int(project.quality_settings["min_annotators"]), float(time.time())),
        )
        created = cur.rowcount
        cur.execute(f"DROP TABLE {STAGE_TABLE}")  # the next batch of this transaction, if any
    return int(created)

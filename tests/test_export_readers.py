"""The export's database readers and chunk pipeline, on both backends (SQLite and, with
``CYNAPS_TEST_POSTGRES_URL``, PostgreSQL): database-built texts and their row-by-row fallback,
one snapshot per export (also across PostgreSQL's parallel readers), chunked exports equal to one
chunk, failures that reach the caller."""

from __future__ import annotations

import pandas as pd
import pytest

from .conftest import make_project
from .test_export import LABELS, backend_client


def test_vote_summary_on_each_backend(backend_platform, monkeypatch):
    """Imported votes come back the same from the summary and from the judgements (SQLite and
    PostgreSQL)."""
    from cynaps_data.server.services import votes

    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.import_tasks(
            [
                {
                    "data": {"text": f"t{i}"},
                    "judgements": [
                        {"worker": f"w{(i + k) % 4}", "label": LABELS[(i * k) % 3]}
                        for k in range(i % 4)
                    ]
                    + ([{"worker": "e", "label": "cat", "role": "expert"}] if i % 5 == 0 else []),
                }
                for i in range(30)
            ]
        )
        summary = project.to_pandas()
        monkeypatch.setattr(votes, "from_summary", lambda t: None)
        pd.testing.assert_frame_equal(summary, project.to_pandas())
        assert summary["n_annotations"].tolist() == [i % 4 for i in range(30)]
        long = project.to_pandas("long")
        assert len(long) == sum(i % 4 for i in range(30)) + 6


def test_text_that_breaks_csv_comes_back_exactly_on_each_backend(backend_platform, monkeypatch):
    """Ids, worker ids and data holding commas, quotes, newlines, the field separator and
    non-ASCII text, and null durations, come back exactly on both backends: the database-built
    texts (SQLite ``group_concat``, PostgreSQL ``string_agg``) were tried first, and a value
    holding a separator sent that query to DB-API rows."""
    from cynaps_data.server.services import export_reader

    built = []
    real_pg = export_reader.fetch_text_pg
    monkeypatch.setattr(
        export_reader, "fetch_text_pg", lambda *a, **k: built.append(a[1]) or real_pg(*a, **k)
    )
    hostile = ["a,b", 'say "hi"', "two\nlines", "naïve — ✓", "", ' ,"\n', "\r\n", "x\x1fy"]
    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.import_tasks(
            [
                {
                    "external_id": f"id{i}{text}" if text else None,
                    "data": {"text": text, "n": i},
                    "judgements": [{"worker": f"w{text}{k}", "label": LABELS[k]} for k in range(2)],
                }
                for i, text in enumerate(hostile)
            ]
        )
        wide = project.to_pandas()
        long = project.to_pandas("long")
    assert wide["text"].tolist() == hostile
    ids = wide["external_id"].astype(object).where(wide["external_id"].notna(), None)
    assert ids.tolist() == [f"id{i}{t}" if t else None for i, t in enumerate(hostile)]
    assert [list(a) for a in wide["annotator_ids"]] == [[f"w{t}0", f"w{t}1"] for t in hostile]
    assert sorted(long["worker"]) == sorted(f"w{t}{k}" for t in hostile for k in range(2))
    assert long["duration"].isna().all()
    on_postgresql = backend_platform.db.engine.dialect.name == "postgresql"
    assert {"tasks", "judgements"} <= set(built) if on_postgresql else not built


def test_plain_exports_never_take_the_row_by_row_path(backend_platform, monkeypatch):
    """Without separators in the values, the wide and long exports are parsed whole from the
    database-built texts on both backends (the DB-API row path, the only user of
    ``select_list``, never runs), with exact floats (durations), timestamps and ids."""
    from cynaps_data.server.services import export_reader

    monkeypatch.setattr(
        export_reader, "select_list", lambda *a: pytest.fail("row-by-row path taken")
    )
    durations = [0.1 + 0.2, 1e-300, 12345.678901234567, None]
    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.import_tasks(
            [
                {
                    "external_id": f"e{i}",
                    "data": {"text": f"t{i}", "x": i / 3},
                    "judgements": [
                        {"worker": f"w{k}", "label": LABELS[k], "duration": durations[i % 4]}
                        for k in range(2)
                    ],
                }
                for i in range(40)
            ]
        )
        wide = project.to_pandas()
        long = project.to_pandas("long")
    assert wide["x"].tolist() == [i / 3 for i in range(40)]
    assert wide["external_id"].tolist() == [f"e{i}" for i in range(40)]
    assert wide["n_annotations"].tolist() == [2] * 40
    got = long.sort_values(["task", "worker"])["duration"].tolist()
    want = [durations[i % 4] for i in range(40) for _ in range(2)]
    assert [None if pd.isna(g) else g for g in got] == want
    assert str(long["created_at"].dtype) == "datetime64[us, UTC]"


def test_chunked_wide_export_equals_one_chunk(backend_platform, monkeypatch):
    """The wide export reads big projects in id chunks on parallel threads, on each backend:
    the frame is the same as from one chunk, also when the chunks' data columns infer different
    types (parsed again as one column), with worker ids holding the summary separator in one
    chunk only (SQLite: judgement path for that chunk), and with ``since``."""
    from cynaps_data.server.services import exports

    client = backend_client(backend_platform)
    project = make_project(client, labels=LABELS)
    items = []
    for i in range(11):
        data = {"n": i if i < 6 else i + 0.5, "text": f"t{i}"}
        if i == 10:
            data["late"] = [1, 2]
        workers = [f"w{(i + k) % 4}" for k in range(i % 4)] + (["odd\x1eid"] if i == 4 else [])
        items.append(
            {
                "data": data,
                "external_id": f"e{i}",
                "judgements": [
                    {"worker": w, "label": LABELS[(i + k) % 3]} for k, w in enumerate(workers)
                ]
                + ([{"worker": "boss", "label": "dog", "role": "expert"}] if i == 7 else []),
            }
        )
    project.import_tasks(items)
    whole = project.to_pandas()
    assert whole["n"].dtype == "float64" and whole["late"].notna().sum() == 1
    monkeypatch.setattr(exports, "CHUNK_TASKS", 3)
    parts, real_part = [], exports._task_part
    monkeypatch.setattr(exports, "_task_part", lambda *a: parts.append(a[2]) or real_part(*a))
    chunked = project.to_pandas()
    # 11 tasks in chunks of 3, sent as they are built until a chunk's types differ ("n" is
    # float from the third chunk on): then the stream restarts with all of them parsed as one
    assert len(parts) == 8
    pd.testing.assert_frame_equal(whole, chunked)
    assert list(chunked.loc[chunked.index[4], "annotator_ids"])[-1] == "odd\x1eid"
    same_types = make_project(client, labels=LABELS)
    same_types.import_tasks([{"data": {"n": i}, "judgements": []} for i in range(7)])
    parts.clear()
    assert same_types.to_pandas()["n"].tolist() == list(range(7))
    assert len(parts) == 3  # no restart
    since = whole.attrs["cynaps"]["cursor"] - 3600
    monkeypatch.setattr(exports, "CHUNK_TASKS", 10_000)
    pd.testing.assert_frame_equal(project.to_pandas(since=since), chunked)
    client.close()


def test_a_failed_text_query_falls_back_to_rows_in_the_same_transaction(
    backend_platform, monkeypatch
):
    """PostgreSQL: when the server cannot build an export's texts (one value is capped at 1 GB;
    here the query is made to fail with a division by zero), the savepoint keeps the snapshot's
    transaction usable and the rows are read one by one: the same frames, wide and long."""
    from cynaps_data.server.services import export_reader

    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.import_tasks(
            [
                {
                    "data": {"text": f"t{i}"},
                    "judgements": [{"worker": f"w{k}", "label": LABELS[k]} for k in range(2)],
                }
                for i in range(20)
            ]
        )
        wide, long = project.to_pandas(), project.to_pandas("long")
        failed = []
        monkeypatch.setattr(
            export_reader,
            "pg_text_query",
            lambda table, where, *a: (
                failed.append(table)
                or f"SELECT 1 / (count(*) - count(*)) FROM {table} WHERE {where}"
            ),
        )
        pd.testing.assert_frame_equal(project.to_pandas(), wide)
        pd.testing.assert_frame_equal(project.to_pandas("long"), long)
    on_postgresql = backend_platform.db.engine.dialect.name == "postgresql"
    assert {"tasks", "judgements"} <= set(failed) if on_postgresql else not failed


@pytest.mark.parametrize("spare", [0, 1, 5])
def test_chunked_export_reads_every_chunk_whatever_readers_the_pool_allows(
    backend_platform, monkeypatch, spare
):
    """PostgreSQL takes a second reader only from idle pooled connections; with none spare the
    chunks are read by one reader, every one of them (they were once read in steps of two
    whatever the readers: half the chunks never came). Same frame in each case, both backends."""
    from cynaps_data.server.services import export_reader, exports

    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.upload_tasks([{"text": f"t{i}", "n": i} for i in range(23)])
        whole = project.to_pandas()
        monkeypatch.setattr(exports, "CHUNK_TASKS", 4)
        monkeypatch.setattr(exports, "MIN_CHUNK_TASKS", 1)
        monkeypatch.setattr(export_reader, "_spare_connections", lambda db: spare)
        chunked = project.to_pandas()
    pd.testing.assert_frame_equal(whole, chunked)
    assert chunked["n"].tolist() == list(range(23))


def test_a_reader_failing_mid_export_fails_the_export_and_never_hangs(
    backend_platform, monkeypatch
):
    """A database error while reading one chunk reaches the caller of the chunk pipeline as
    that error, whichever reader hit it; the other readers stop and nothing waits forever."""
    import threading

    import sqlalchemy as sa

    from cynaps_data.server.services import export_reader, exports

    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.upload_tasks([{"text": f"t{i}"} for i in range(30)])
    db = backend_platform.db
    with db.read() as conn:
        owner = conn.execute(
            sa.text("SELECT owner_id FROM projects WHERE id = :p"), {"p": project.id}
        ).scalar()
    monkeypatch.setattr(exports, "CHUNK_TASKS", 4)
    monkeypatch.setattr(exports, "MIN_CHUNK_TASKS", 1)
    calls = []
    for name in ("fetch_text", "fetch_text_pg"):
        real = getattr(export_reader, name)

        def failing(*a, _real=real, **k):
            calls.append(a[1])
            if len(calls) == 3:
                raise RuntimeError("disk on fire")
            return _real(*a, **k)

        monkeypatch.setattr(export_reader, name, failing)
    outcome = []

    def run() -> None:
        try:
            list(exports.wide_parts(db, exports.plan_wide(db, owner, project.id, None)))
            outcome.append("finished")
        except RuntimeError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the export hung"
    assert outcome == ["disk on fire"]


def test_one_reader_reads_one_snapshot_on_each_backend(backend_platform):
    """Every query of one export reader sees the same snapshot (the chunks of one export agree
    with each other): a task written by another connection after the first read is not seen by
    the second read of the same reader, and is seen by a new reader."""
    from cynaps_data.server.services.export_reader import TASK_COLUMNS, reader

    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.upload_tasks([{"text": f"t{i}"} for i in range(3)])
        db = backend_platform.db
        where, params = "project_id = ?", (project.id,)
        with reader(db) as query:
            before = query("tasks", where, params, TASK_COLUMNS)
            project.upload_tasks([{"text": "late"}])  # committed by the platform meanwhile
            again = query("tasks", where, params, TASK_COLUMNS)
        with reader(db) as query:
            after = query("tasks", where, params, TASK_COLUMNS)
    assert before.num_rows == again.num_rows == 3
    assert before.equals(again)
    assert after.num_rows == 4


def test_parallel_readers_share_one_snapshot_on_each_backend(backend_platform):
    """``readers(db, 2)``: on PostgreSQL two connections, the second importing the first's
    exported snapshot, each queried from its own thread; a task committed after the first read
    is seen by neither (SQLite: one reader, the same rule)."""
    from concurrent.futures import ThreadPoolExecutor

    from cynaps_data.server.services.export_reader import TASK_COLUMNS, readers

    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.upload_tasks([{"text": f"t{i}"} for i in range(3)])
        db = backend_platform.db
        where, params = "project_id = ?", (project.id,)
        with readers(db, 2) as queries:
            first = queries[0]("tasks", where, params, TASK_COLUMNS).num_rows  # (SQLite: pins it)
            project.upload_tasks([{"text": "late"}])
            with ThreadPoolExecutor(len(queries)) as pool:
                seen = list(
                    pool.map(lambda q: q("tasks", where, params, TASK_COLUMNS).num_rows, queries)
                )
    on_postgresql = db.engine.dialect.name == "postgresql"
    assert len(queries) == (2 if on_postgresql else 1)
    assert first == 3 and seen == [3] * len(queries)

"""Typed exports against a real platform: wide/long frames, dtypes round trip, Parquet,
datasets, CSV safety, seed JSON shape, incremental export, re-aggregation, escrow release."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from cynaps_data import errors
from cynaps_data.io import export as io_export

from .conftest import Person, annotate, fresh_postgres_database, make_project, started_project

LABELS = ["cat", "dog", "bird"]


@pytest.fixture
def finished(platform, client):
    """4 tasks, 3 annotators: unanimous, 2/3, 2/3, and a 3-way split (disputed)."""
    tasks = [{"text": f"item {i}", "n": i, "score": i / 4} for i in range(4)]
    project = started_project(
        client,
        tasks,
        labels=LABELS,
        quality_settings={"min_annotators": 3, "enable_expert_review": True},
    )
    ids = list(project.to_pandas().index)
    plan = {
        ids[0]: ["cat", "cat", "cat"],
        ids[1]: ["dog", "dog", "cat"],
        ids[2]: ["bird", "cat", "bird"],
        ids[3]: ["cat", "dog", "bird"],
    }
    annotate(platform, client, project, plan)
    yield project, plan
    # the disputed task would otherwise sit in the shared platform's pool review queue
    if project.get_status().state == "review":
        project.cancel()


def backend_client(platform: Any) -> Any:
    """A client of a fresh account on ``platform`` (the ``backend_platform`` fixture), no retries."""
    import cynaps_data as cynaps

    return cynaps.Client(
        api_key=platform.create_customer(), base_url=platform.base_url, max_retries=0
    )


def test_wide_frame_types_and_consensus_metadata(finished):
    project, plan = finished
    df = project.to_pandas()
    assert df.index.name == "task" and list(df.index) == sorted(plan)
    assert list(df.columns[:3]) == ["text", "n", "score"]
    assert df["n"].dtype == np.int64 and df["score"].dtype == np.float64
    assert isinstance(df["label"].dtype, pd.CategoricalDtype)
    assert list(df["label"].cat.categories) == LABELS
    ids = list(df.index)
    assert list(df["label"].astype(object).iloc[:3]) == ["cat", "dog", "bird"]
    assert pd.isna(df["label"].iloc[3])
    assert list(df["status"].astype(str)) == ["completed", "completed", "completed", "disputed"]
    assert list(df["n_annotations"]) == [3, 3, 3, 3]
    assert df["agreement"].round(3).tolist() == [1.0, 0.667, 0.667, 0.333]
    assert df["confidence"].round(3).iloc[:3].tolist() == [1.0, 0.667, 0.667]
    shares = df.loc[ids[1], [f"vote_distribution.{x}" for x in LABELS]]
    assert shares.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert (df[[f"vote_distribution.{x}" for x in LABELS]].dtypes == np.float64).all()
    assert len(df.loc[ids[0], "annotator_ids"]) == 3
    assert isinstance(df.loc[ids[0], "annotator_ids"], list)
    assert df.attrs["cynaps"]["labels"] == LABELS
    assert df.attrs["cynaps"]["state"] == "review"  # partial results: one task awaits an expert


def test_long_frame_feeds_consensus_engine(finished):
    project, plan = finished
    long = project.to_pandas("long")
    assert list(long.columns[:4]) == ["task", "worker", "label", "role"]
    assert len(long) == 12 and set(long["role"].astype(str)) == {"annotator"}
    assert str(long["created_at"].dtype) == "datetime64[us, UTC]"
    assert long["duration"].between(1.5, 3.5).all()
    for task, answers in plan.items():
        got = long[long["task"] == task].sort_values("duration")["label"].astype(str).tolist()
        assert got == answers
    wide = project.to_pandas(method="majority_vote")
    proba = [f"majority_vote_proba.{x}" for x in LABELS]
    assert {"majority_vote_label", "majority_vote_confidence", *proba} <= set(wide.columns)
    assert wide["majority_vote_label"].iloc[1] == "dog"
    soft = wide.loc[wide.index[1], proba]
    assert soft.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    ds = project.to_pandas(method="dawid_skene")
    assert list(ds["dawid_skene_label"].cat.categories) == LABELS
    assert ds["dawid_skene_confidence"].between(0, 1).all()


def test_parquet_round_trip_and_schema_metadata(finished, tmp_path):
    project, _ = finished
    path = project.to_parquet(tmp_path / "out.parquet", method="majority_vote")
    df = project.to_pandas(method="majority_vote")
    meta = pq.read_schema(path).metadata
    assert meta[b"cynaps.labels"] == b'["cat","dog","bird"]'
    assert meta[b"cynaps.annotation_type"] == b"classification"
    assert b"min_annotators" in meta[b"cynaps.quality_settings"]
    back = io_export.read_parquet(path)
    cols = [c for c in df.columns if c != "updated_at"]
    pd.testing.assert_frame_equal(back[cols], df[cols])
    plain = pd.read_parquet(path)
    assert list(plain["label"].cat.categories) == LABELS
    assert plain["n"].dtype == np.int64
    blob = project.export("parquet")
    assert pq.read_table(io.BytesIO(blob)).num_rows == 4


def test_dataset_has_classlabel_and_consensus_features(finished):
    import datasets

    project, _ = finished
    ds = project.to_dataset()
    assert isinstance(ds.features["label"], datasets.ClassLabel)
    assert ds.features["label"].names == LABELS
    assert ds["label"][:3] == [0, 1, 2] and ds["label"][3] == -1
    assert ds.features["n"] == datasets.Value("int64")
    assert "vote_distribution" in ds.features and "agreement" in ds.features
    split = ds.filter(lambda r: r["label"] >= 0).train_test_split(test_size=1, seed=0)
    assert len(split["train"]) == 2


def test_seed_json_shape_unchanged(finished):
    project, plan = finished
    records = project.export(format="json")
    assert [r["id"] for r in records] == sorted(plan)
    first = records[0]
    assert first["data"] == {"text": "item 0", "n": 0, "score": 0.0}
    assert first["annotations"][0]["result"]["value"] == "cat"
    assert first["consensus"]["n_annotations"] == 3
    assert records[3]["annotations"] == []
    lines = project.export("jsonl").splitlines()
    assert len(lines) == 4 and '"annotations"' in lines[0]


def test_csv_escapes_formula_injection(platform, client, tmp_path):
    evil = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain"]
    project = make_project(client, labels=LABELS)
    project.upload_tasks([{"text": t, "n": -i} for i, t in enumerate(evil)])
    text = project.export("csv")
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert frame["text"].tolist()[:4] == ['\'=HYPERLINK("http://x")', "'+1+1", "'-2+3", "'@SUM(A1)"]
    assert frame["text"].tolist()[-1] == "plain"
    assert frame["n"].tolist() == [-i for i in range(len(evil))]  # numbers stay numbers
    assert "vote_distribution.cat" in frame.columns
    path = project.export("csv", path=tmp_path / "x.csv")
    assert path.read_bytes().decode() == text


def test_dataframe_round_trip_keeps_dtypes(platform, client):
    source = pd.DataFrame(
        {
            "text": pd.Series(["a", "b", None], dtype="str"),
            "count": np.array([1, 2, 3], dtype="int32"),
            "maybe": pd.array([1, None, 3], dtype="Int64"),
            "when": pd.to_datetime(
                ["2024-01-01 00:00", "2024-06-01 12:30", "2025-01-01 08:00"]
            ).tz_localize("Europe/Paris"),
            "kind": pd.Categorical(["x", "y", "x"], categories=["y", "x"]),
            "flag": [True, False, True],
            "price": [1.5, np.nan, 3.25],
        }
    )
    project = make_project(client, labels=LABELS)
    project.upload_dataframe(source)
    out = project.to_pandas()
    data = out[list(source.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(data, source)


def test_nested_object_columns_come_back_as_the_values_uploaded(client):
    """Object columns of dicts and lists (a null row among them, a null inside one) come back as
    the same Python values: ints stay ints (pandas' own struct conversion turns an int field
    with a null into floats), lists stay lists, None stays None."""
    source = pd.DataFrame(
        {
            "meta": [{"k": 1, "tag": "a"}, {"k": 2, "tag": None}, None, {"k": 3, "tag": "c"}],
            "tags": [["a"], [], None, ["b", "c"]],
            "counts": [[1, None], [2], [3, 4], None],
        }
    )
    project = make_project(client, labels=LABELS)
    project.upload_dataframe(source)
    out = project.to_pandas()[list(source.columns)].reset_index(drop=True)
    for name in source.columns:
        assert out[name].dtype == object, name
        assert out[name].tolist() == source[name].tolist(), name
        got = [type(v) for v in out[name]]
        assert got == [type(v) for v in source[name]], (name, got)
    assert type(out["meta"][0]["k"]) is int and out["meta"][1]["tag"] is None


def test_incremental_export_and_partial_results(platform, client):
    project = started_project(
        client,
        [{"text": f"t{i}"} for i in range(3)],
        labels=LABELS,
        quality_settings={"min_annotators": 1},
    )
    first = project.to_pandas()
    assert set(first["status"].astype(str)) == {"pending"} and first["label"].isna().all()
    cursor = first.attrs["cynaps"]["cursor"]
    ids = list(first.index)
    annotate(platform, client, project, {ids[0]: ["dog"], ids[1]: ["cat"], ids[2]: ["bird"]})
    changes = project.to_pandas(since=cursor)
    assert set(changes.index) == set(ids)
    merged = io_export.incremental(first, changes)
    assert merged["label"].astype(str).tolist() == ["dog", "cat", "bird"]
    later = project.to_pandas(since=changes.attrs["cynaps"]["cursor"])
    assert later.index.isin(ids).all()  # at most the grace-window repeats, nothing new
    assert project.to_pandas("long", since=cursor)["task"].tolist() == ids
    with pytest.raises(errors.ValidationError, match="since"):
        project.to_pandas(since="not a time")


def test_download_releases_escrow_once(platform, client, finished):
    project, _ = finished
    import sqlite3

    path = platform.db.url.removeprefix("sqlite:///")

    def earnings() -> int:
        with sqlite3.connect(path) as conn:
            return conn.execute(
                "SELECT coalesce(sum(amount_cents), 0) FROM ledger_entries WHERE kind = 'release' AND amount_cents > 0 AND project_id = ?",
                (project.id,),
            ).fetchone()[0]

    project.to_pandas()
    paid = earnings()
    assert paid > 0  # the platform's own export released the 3 completed tasks
    assert paid == 9 * 1500  # 9 judgements at 15.00; the disputed task is not charged yet
    project.export("json")
    project.to_pandas("long")
    assert earnings() == paid


def test_bad_format_and_other_accounts(platform, client):
    project = make_project(client, labels=LABELS)
    with pytest.raises(errors.ValidationError, match="Unknown export format"):
        project.export("xlsx")
    with pytest.raises(errors.ValidationError, match="form"):
        project.to_pandas("tall")
    # an unknown method or parameter is an error even while the project has no judgements
    with pytest.raises(errors.ValidationError, match="unknown method 'magic'") as caught:
        project.to_pandas(method="magic")
    assert caught.value.param == "method"
    with pytest.raises(errors.ValidationError, match="bad parameters for DawidSkene"):
        project.to_pandas(method="dawid_skene", n_iterations=5)
    other = client.__class__(
        api_key=platform.create_customer(), base_url=platform.base_url, max_retries=0
    )
    with pytest.raises(errors.NotFoundError):
        other.projects.get(project.id)
    r = requests.get(
        f"{platform.base_url}/v1/projects/{project.id}/export",
        params={"format": "arrow"},
        headers={"Authorization": f"Bearer {other.settings.api_key}"},
    )
    assert r.status_code == 404
    empty = project.to_pandas()
    assert len(empty) == 0 and "label" in empty.columns
    # categorical over the project's labels before any label exists (wide and long)
    assert list(empty["label"].cat.categories) == LABELS
    assert list(empty["gold"].cat.categories) == LABELS
    assert list(project.to_pandas(form="long")["label"].cat.categories) == LABELS
    assert pa.ipc  # the empty stream still carries the schema


def test_separator_characters_in_values_survive(client):
    """Values holding the bulk path's separators take the row-by-row path, unchanged."""
    project = make_project(client, labels=LABELS)
    weird = ["a\x1fb", "line\nbreak", "cr\rhere", "tab\tand,comma"]
    project.upload_tasks(
        [{"data": {"text": w, "n": i}, "external_id": w} for i, w in enumerate(weird)]
    )
    df = project.to_pandas()
    assert df["external_id"].tolist() == weird
    assert df["text"].tolist() == weird


def test_dataset_export_restores_images_and_features(client):
    import datasets
    from PIL import Image

    images = [
        Image.fromarray((np.arange(48).reshape(4, 4, 3) * (i + 1) % 255).astype("uint8"))
        for i in range(3)
    ]
    source = datasets.Dataset.from_dict({"image": images, "caption": ["a", "b", "c"]})
    source = source.cast_column("image", datasets.Image())
    project = make_project(client, labels=LABELS)
    project.upload_dataset(source)
    out = project.to_dataset()
    assert isinstance(out.features["image"], datasets.Image)
    assert isinstance(out.features["label"], datasets.ClassLabel)
    for i in range(3):
        assert np.array_equal(np.array(out[i]["image"]), np.array(images[i]))
    assert out["caption"] == ["a", "b", "c"]


def test_vote_summary_matches_judgements(platform, client, finished, monkeypatch):
    """The wide export reads each task's vote summary (kept by submit, expert decision and
    import); it equals the export recomputed from the judgement rows, also for worker ids
    holding the summary's separator (which take the judgement path)."""
    from cynaps_data.server.services import votes

    project, plan = finished
    expert = Person(platform, "expert", "Expert", team_of=client)
    disputed = expert.review(project.id)["task_id"]
    decided = expert.decide(disputed, "bird")
    assert decided.status_code == 201, decided.text
    imported = make_project(client, labels=LABELS)
    imported.import_tasks(
        [
            {
                "data": {"text": "a"},
                "judgements": [
                    {"worker": "u1", "label": "cat"},
                    {"worker": "u2", "label": "dog"},
                    {"worker": "boss", "label": "dog", "role": "expert"},
                ],
            },
            {"data": {"text": "b"}, "judgements": []},
            {"data": {"text": "c"}, "judgements": [{"worker": "u2", "label": "bird"}]},
        ]
    )
    odd = make_project(client, labels=LABELS)
    odd.import_tasks(
        [
            {
                "data": {"text": "x"},
                "judgements": [
                    {"worker": "odd\x1eid", "label": "cat"},
                    {"worker": "u3", "label": "cat"},
                ],
            }
        ]
    )
    summary = {p.id: p.to_pandas() for p in (project, imported, odd)}
    used = []
    monkeypatch.setattr(votes, "from_summary", lambda t: used.append(1) or None)
    for p in (project, imported, odd):
        recomputed = p.to_pandas()
        pd.testing.assert_frame_equal(summary[p.id], recomputed)
    assert len(used) == 3  # the judgement path really ran
    df = summary[project.id]
    assert df.loc[disputed, "expert_label"] == "bird" and df.loc[disputed, "label"] == "bird"
    assert pd.notna(df.loc[disputed, "expert_id"])
    first = summary[imported.id].iloc[0]
    assert list(first["annotator_ids"]) == ["u1", "u2"] and first["expert_id"] == "boss"
    assert summary[imported.id]["n_annotations"].tolist() == [2, 0, 1]
    assert list(summary[odd.id].iloc[0]["annotator_ids"]) == ["odd\x1eid", "u3"]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    from cynaps_data.server.db import database_url

    if request.param == "sqlite":
        yield database_url(tmp_path / "old.db")
    else:
        with fresh_postgres_database("cynaps_votes") as url:
            yield database_url(url)


def test_migration_backfills_vote_summary(empty_url):
    """Migration 0005 fills each task's vote summary from its judgements, in id order."""
    import sqlalchemy as sa

    from cynaps_data.server.db import Database, upgrade

    db = Database(empty_url)
    try:
        upgrade(db.engine, "0004")
        task = (
            "INSERT INTO tasks (id, project_id, data, status, n_judgements, needed, charged,"
            " released, updated_at) VALUES (:id, 'p', '{}', 'pending', 0, 3, false, false, 1.0)"
        )
        vote = (
            "INSERT INTO judgements (id, task_id, project_id, annotator_id, role, value,"
            " created_at) VALUES (:id, :task, 'p', :who, :role, :value, 1.0)"
        )
        with db.engine.begin() as conn:
            conn.execute(sa.text(task), [{"id": 1}, {"id": 2}])
            conn.execute(
                sa.text(vote),
                [
                    {"id": 5, "task": 1, "who": "b", "role": "annotator", "value": '"dog"'},
                    {"id": 3, "task": 1, "who": "a", "role": "annotator", "value": '"cat"'},
                    {"id": 4, "task": 1, "who": "x", "role": "expert", "value": '"cat"'},
                    {"id": 6, "task": 1, "who": "y", "role": "expert", "value": '"bird"'},
                ],
            )
        db.create_all()
        with db.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT vote_values, vote_workers, expert_value, expert_worker FROM tasks"
                    " ORDER BY id"
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ('"cat"\x1e"dog"\x1e', "a\x1eb\x1e", '"bird"', "y"),
            ("", "", None, None),
        ]
    finally:
        db.dispose()


def test_arrow_stream_carries_cursor_and_cut_stream_is_an_error(platform, client):
    """The platform streams Arrow IPC; its last empty batch holds the cursor. A download cut
    short (no cursor batch) is an error, never a silently shorter frame."""
    project = make_project(client, labels=LABELS)
    project.upload_tasks([{"text": f"t{i}"} for i in range(5)])
    r = requests.get(
        f"{platform.base_url}/v1/projects/{project.id}/export",
        params={"format": "arrow"},
        headers={"Authorization": f"Bearer {client.settings.api_key}"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/vnd.apache.arrow.stream"
    )
    table = io_export.read_ipc(r.content)
    assert table.num_rows == 5
    assert io_export.project_info(table)["cursor"] > 0
    with pa.ipc.open_stream(r.content) as reader:
        batches = list(reader.iter_batches_with_custom_metadata())
    assert batches[-1].batch.num_rows == 0 and b"cynaps.cursor" in batches[-1].custom_metadata
    sink = pa.BufferOutputStream()  # the same stream without its cursor batch
    with pa.ipc.new_stream(sink, reader.schema) as writer:
        for b in batches[:-1]:
            writer.write_batch(b.batch)
    with pytest.raises(errors.APIConnectionError, match="ended early"):
        io_export.read_ipc(sink.getvalue().to_pybytes())


def test_export_that_fails_mid_stream_raises(client, monkeypatch):
    """A platform error after the stream started (here: building the second chunk) reaches the
    caller as an error, not as a shorter frame."""
    from cynaps_data.server.services import exports

    project = make_project(client, labels=LABELS)
    project.upload_tasks([{"text": f"t{i}"} for i in range(9)])
    monkeypatch.setattr(exports, "CHUNK_TASKS", 3)
    real_part, seen = exports._task_part, []

    def failing(*args):
        seen.append(args[2])
        if len(seen) == 2:
            raise RuntimeError("disk on fire")
        return real_part(*args)

    monkeypatch.setattr(exports, "_task_part", failing)
    with pytest.raises(errors.APIConnectionError):
        project.to_pandas()


def test_streamed_export_releases_each_chunk_once_sent(backend_platform, monkeypatch):
    """The wide export's pipeline holds only the chunks in flight: a chunk that was handed on
    (sent) is freed, so the platform's memory stays bounded however large the project (it once
    kept every chunk read and built until the end: 22 GB at 50M tasks)."""
    import gc
    import weakref

    import sqlalchemy as sa

    from cynaps_data.server.services import exports
    from cynaps_data.server.tables import projects

    with backend_client(backend_platform) as c:
        project = make_project(c, labels=LABELS)
        project.upload_tasks([{"text": f"t{i}"} for i in range(40)])
    monkeypatch.setattr(exports, "CHUNK_TASKS", 4)
    monkeypatch.setattr(exports, "MIN_CHUNK_TASKS", 4)
    db = backend_platform.db
    with db.read() as conn:
        owner = conn.execute(
            sa.select(projects.c.owner_id).where(projects.c.id == project.id)
        ).scalar()
    plan = exports.plan_wide(db, owner, project.id, None)
    assert len(plan.chunks) == 10
    alive, rows = [], 0
    for part in exports.wide_parts(db, plan):
        rows += len(part.updated)
        alive.append(weakref.ref(part.updated))
        del part
        gc.collect()
        # besides the one just taken: at most READ_AHEAD chunks read or built ahead
        assert sum(r() is not None for r in alive[:-1]) == 0
    assert rows == 40


def test_python_values_equals_to_pylist_for_every_list_shape():
    """The fast list path of the export frames (slices of one flat list) gives what
    ``to_pylist`` gives: nulls, empty lists, null items, sliced and chunked arrays, large
    lists, nested lists and structs (these through ``to_pylist`` itself); and a frame built by
    ``to_pandas_nested_as_python`` holds plain lists, not numpy arrays."""
    from cynaps_data.io.schema import python_values, to_pandas_nested_as_python

    cases = [
        pa.array([["a"], None, [], ["b", None, "c"]], pa.list_(pa.string())),
        pa.array([[1.5], None, [], [2.0, None]], pa.large_list(pa.float64())),
        pa.array([[["x"]], None, [[]]], pa.list_(pa.list_(pa.string()))),
        pa.array([[1, 2], [3], None, [4, 5, 6]], pa.list_(pa.int64())).slice(1, 3),
        pa.chunked_array([pa.array([["a"]]), pa.array([None, ["b"]])]),
        pa.array([{"a": 1}, None]),
        pa.array([], pa.list_(pa.string())),
    ]
    for column in cases:
        assert python_values(column) == column.to_pylist()
    table = pa.table({"ids": cases[0], "n": [1, 2, 3, 4]})
    frame = to_pandas_nested_as_python(table)
    assert frame["ids"].tolist() == [["a"], None, [], ["b", None, "c"]]
    assert all(isinstance(v, list) or v is None for v in frame["ids"])
    assert frame["n"].dtype == np.int64


def test_read_ipc_makes_list_columns_during_the_download_and_forgets_a_restarted_stream():
    """``read_ipc(python_columns=...)``: the top-level list columns (not ``data``) come back as
    Python lists equal to ``to_pylist``, batch by batch in order; a stream that ends in a
    restart batch is dropped with its lists, and only the stream that follows counts."""
    from cynaps_data.wire import CURSOR_KEY, RESTART_KEY

    schema = pa.schema(
        [
            ("task", pa.int64()),
            ("data", pa.struct([("tags", pa.list_(pa.string()))])),
            ("annotator_ids", pa.list_(pa.string())),
        ]
    )

    def stream(rows: list, end: dict) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            for start in range(0, len(rows), 3):  # several batches
                writer.write_batch(pa.RecordBatch.from_pylist(rows[start : start + 3], schema))
            writer.write_batch(pa.RecordBatch.from_pylist([], schema), custom_metadata=end)
        return sink.getvalue().to_pybytes()

    stale = [{"task": 0, "data": {"tags": ["x"]}, "annotator_ids": ["old"]}] * 4
    rows = [
        {"task": i, "data": {"tags": [str(i)]}, "annotator_ids": [f"w{k}" for k in range(i % 3)]}
        for i in range(10)
    ]
    rows[4]["annotator_ids"] = None
    body = stream(stale, {RESTART_KEY: b"types"}) + stream(rows, {CURSOR_KEY: b"12.5"})
    ready: dict = {}
    table = io_export.read_ipc(body, python_columns=ready)
    assert list(ready) == ["annotator_ids"]
    assert ready["annotator_ids"] == table.column("annotator_ids").to_pylist()
    assert ready["annotator_ids"] == [r["annotator_ids"] for r in rows]
    assert io_export.project_info(table)["cursor"] == 12.5
    cut, kept = stream(rows, {b"other": b"1"}), {}  # no cursor batch: cut short
    with pytest.raises(errors.APIConnectionError, match="ended early"):
        io_export.read_ipc(cut, python_columns=kept)
    assert kept == {}  # nothing half-made is handed on

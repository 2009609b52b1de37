"""Ingest: DataFrames, Parquet and datasets through the real platform and back through the JSON
export, with the source dtypes restored from the schema stored on the project."""

from __future__ import annotations

import datetime
import decimal
import io
import warnings

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from cynaps_data.errors import ValidationError
from cynaps_data.io import features_from, restore_frame, table_from_wire
from cynaps_data.io.uploader import IngestError

from .conftest import make_project, png_bytes

LABELS = ["cat", "dog"]


def exported_table(project, **options) -> pa.Table:
    """The JSON export's task data as an Arrow table in the source types, in upload order."""
    records = sorted(project.export(), key=lambda r: r["id"])
    return table_from_wire([r["data"] for r in records], project.refresh().source_schema, **options)


def every_dtype_frame() -> pd.DataFrame:
    n = 4
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "i8": np.array([1, -2, 3, 127], dtype="int8"),
            "u64": np.array([0, 1, 2**63 + 5, 7], dtype="uint64"),
            "nullable_int": pd.array([1, None, 3, pd.NA], dtype="Int64"),
            "f64": [1.5, np.nan, -0.0, 1e300],
            "f32": np.array([0.1, 0.2, np.nan, 3.0], dtype="float32"),
            "flag": pd.array([True, False, None, True], dtype="boolean"),
            "text": ["a", None, "ünï ☃", ""],
            "string": pd.array(["x", pd.NA, "y", "z"], dtype="string"),
            "ts": pd.to_datetime(
                [
                    "2024-01-01 00:00:00.123456789",
                    None,
                    "1969-07-20 20:17:40",
                    "2038-01-19 03:14:08",
                ],
                format="ISO8601",
            ).as_unit("ns"),
            "ts_tz": pd.to_datetime(
                ["2024-03-31 01:59:59", "2024-03-31 03:00:00", None, "2024-10-27 02:30:00"],
                format="ISO8601",
            ).tz_localize("Europe/Paris", ambiguous=True),
            "delta": pd.to_timedelta(["1s", None, "-3 days 00:00:00.000000001", "400 days"]),
            "category": pd.Categorical(
                ["b", None, "a", "b"], categories=["c", "b", "a"], ordered=True
            ),
            "items": [[1, 2], None, [], [3]],
            "nested": [
                {"a": 1, "b": {"c": [1.5, None]}},
                None,
                {"a": None, "b": {"c": []}},
                {"a": 4, "b": None},
            ],
            "blob": [b"\x00\xff", None, b"", b"plain bytes"],
            "dec": [
                decimal.Decimal("1.10"),
                None,
                decimal.Decimal("-99999.99"),
                decimal.Decimal("0.00"),
            ],
            "day": [
                datetime.date(2024, 2, 29),
                None,
                datetime.date(1900, 1, 1),
                datetime.date(9999, 12, 31),
            ],
            "clock": [
                datetime.time(0, 0),
                datetime.time(23, 59, 59, 999999),
                None,
                datetime.time(12, 0, 1),
            ],
            "numpy_objects": pd.Series(
                [np.int64(5), np.float64(2.5), None, pa.scalar(7)], dtype=object
            ),
        }
    )


@pytest.mark.parametrize("wire_format", ["arrow", "json"])
def test_every_dtype_round_trips_through_upload_and_json_export(client, wire_format):
    project = make_project(client, labels=LABELS)
    df = every_dtype_frame()
    result = project.upload_dataframe(df, id_column="id", progress=False, wire_format=wire_format)
    assert (result.task_count, result.created, result.duplicates, result.failed) == (4, 4, 0, 0)

    schema = project.refresh().source_schema
    assert [c["name"] for c in schema["columns"]] == [c for c in df.columns if c != "id"]
    expected = pa.Table.from_pandas(df.drop(columns=["id", "numpy_objects"]), preserve_index=False)
    # numpy/Arrow scalars in an object column become one typed column (float64 here)
    expected = expected.append_column("numpy_objects", pa.array([5.0, 2.5, None, 7.0]))
    restored = exported_table(project)
    for name in expected.column_names:
        got, want = restored[name].combine_chunks(), expected[name].combine_chunks()
        assert got.type == want.type, name
        assert got.to_pylist() == want.to_pylist(), name

    frame = restore_frame(exported_table(project), schema)
    for name in ["nullable_int", "flag", "string", "ts", "ts_tz", "delta", "category", "f32"]:
        assert frame[name].dtype == df[name].dtype, name
    pd.testing.assert_series_equal(frame["category"], df["category"])
    pd.testing.assert_series_equal(frame["ts_tz"], df["ts_tz"])


def test_wire_values_are_readable_json(client):
    project = make_project(client, labels=LABELS)
    df = every_dtype_frame().head(1)
    project.upload_dataframe(df, id_column="id", progress=False)
    data = project.export()[0]["data"]
    assert data["ts"] == "2024-01-01T00:00:00.123456789"
    assert (
        data["ts_tz"] == "2024-03-31T00:59:59.000000Z"
    )  # the instant in UTC; zone kept in the schema
    assert data["delta"] == 1_000_000_000  # nanoseconds
    assert data["category"] == "b"
    assert data["blob"] == "AP8="
    assert data["dec"] == "1.10"
    assert data["nested"] == {"a": 1, "b": {"c": [1.5, None]}}
    assert data["f32"] == pytest.approx(0.1)


def test_rerun_is_idempotent_with_and_without_id_column(client):
    df = pd.DataFrame({"text": ["a", "b", "c"], "n": [1, 2, 3]})
    by_hash = make_project(client, labels=LABELS)
    assert by_hash.upload_dataframe(df, progress=False).created == 3
    again = by_hash.upload_dataframe(df.iloc[::-1], progress=False)  # order does not matter
    assert (again.created, again.duplicates, again.project_task_count) == (0, 3, 3)
    ids = {r["external_id"] for r in by_hash.export()}
    assert all(i.startswith("sha256:") and len(i) == 47 for i in ids)

    by_id = make_project(client, labels=LABELS)
    by_id.upload_dataframe(df.assign(key=["k1", "k2", "k3"]), id_column="key", progress=False)
    changed = df.assign(key=["k1", "k2", "k4"], text=["A", "B", "D"])
    result = by_id.upload_dataframe(changed, id_column="key", progress=False)
    assert (result.created, result.duplicates, result.project_task_count) == (1, 2, 4)


def test_unsupported_value_names_column_and_row_before_sending(client):
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame(
        {"text": ["a", "b", "c", "d"], "score": [0.5, 1.0, np.inf, 2.0], "mixed": [1, 2, 3, "four"]}
    )
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(df, progress=False)
    message = str(caught.value)
    assert "2 of 4 rows" in message and "row 2" in message and "'score'" in message
    failures = caught.value.failures
    assert failures[["row", "column"]].values.tolist() == [[2, "score"], [3, "mixed"]]
    assert "does not fit" in failures.loc[1, "error"] and "'four'" in failures.loc[1, "value"]
    assert project.refresh().task_count == 0  # nothing was sent

    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        result = project.upload_dataframe(df, on_error="warn", progress=False)
    assert any("rows are skipped" in str(w.message) for w in caught_warnings)
    assert (result.created, result.failed) == (2, 2)
    assert sorted(r["data"]["text"] for r in project.export()) == ["a", "b"]


def test_values_arrow_cannot_hold_name_their_column(client):
    """Complex numbers, ints beyond 64 bits and UUID objects: a clear error naming the column
    (and the row, where a row is at fault), never an Arrow or OverflowError trace."""
    import uuid

    project = make_project(client, labels=LABELS)
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(pd.DataFrame({"z": [1 + 2j, 3j]}), progress=False)
    assert caught.value.failures["column"].tolist() == ["z", "z"]
    assert "complex" in caught.value.failures["error"].iloc[0]

    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(pd.DataFrame({"n": [1, 2**70, 3]}), progress=False)
    assert caught.value.failures[["row", "column"]].values.tolist() == [[1, "n"]]

    ids = pd.DataFrame({"u": [uuid.uuid4(), uuid.uuid4()], "text": ["a", "b"]})
    with pytest.raises(ValidationError, match=r"column 'u'.*astype\(str\)") as caught:
        project.upload_dataframe(ids, progress=False)
    assert caught.value.param == "u"
    assert project.refresh().task_count == 0
    ids["u"] = ids["u"].astype(str)
    assert project.upload_dataframe(ids, progress=False).created == 2

    # a naive datetime among aware ones would be read as UTC and could merge with another row
    aware = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    for first, second in ((aware, aware.replace(tzinfo=None)), (aware.replace(tzinfo=None), aware)):
        times = pd.DataFrame({"when": [first, second]})
        with pytest.raises(IngestError) as caught:
            make_project(client, labels=LABELS).upload_dataframe(times, progress=False)
        assert caught.value.failures[["row", "column"]].values.tolist() == [[1, "when"]]
        assert "mixes naive and time-zone aware" in caught.value.failures["error"].iloc[0]


def test_duplicate_ids_in_one_upload_are_bad_rows_not_silent_drops(client, tmp_path):
    """Two rows with the same id in one input: the later one would be dropped by the platform's
    idempotency, losing its data unseen; it is reported (column, row, first row) instead."""
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame({"key": ["k1", "k2", "k2", "k3", "k1"], "text": ["a", "b", "B", "c", "A"]})
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(df, id_column="key", progress=False)
    assert "row 2, column 'key'" in str(caught.value) and "row 1" in str(caught.value)
    failures = caught.value.failures
    assert failures[["row", "column"]].values.tolist() == [[2, "key"], [4, "key"]]
    assert "duplicate id 'k1'" in failures.loc[1, "error"] and "row 0" in failures.loc[1, "error"]
    assert project.refresh().task_count == 0  # nothing was sent

    result = project.upload_dataframe(df, id_column="key", on_error="skip", progress=False)
    assert (result.created, result.failed) == (3, 2)
    assert sorted(r["data"]["text"] for r in project.export()) == ["a", "b", "c"]

    # across the record batches of a streamed Parquet file too (integer ids)
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3, 4, 2], "text": list("vwxyz")}), path, row_group_size=2)
    streamed = make_project(client, labels=LABELS)
    with pytest.raises(IngestError) as caught:
        streamed.upload_parquet(path, id_column="id", batch_size=2, progress=False)
    assert caught.value.failures[["row", "column"]].values.tolist() == [[4, "id"]]


def test_generator_stream_of_unknown_length_typed_checked_and_deduplicated(client):
    """A generator-backed IterableDataset announces no row count and, without features, no
    types: rows with None are typed by the batch (datasets' own Arrow conversion fails on
    them), missing and repeated ids are bad rows, and rows whose types change later in the
    stream are a clear error naming the fix. Nothing is sent in either case."""
    import datasets

    rows = [{"key": k, "text": t} for k, t in [("a", "1"), (None, "2"), ("b", "3"), (None, "4")]]
    rows.append({"key": "a", "text": "5"})
    project = make_project(client, labels=LABELS)
    features = datasets.Features(
        {"key": datasets.Value("string"), "text": datasets.Value("string")}
    )
    for declared in (None, features):
        stream = datasets.IterableDataset.from_generator(lambda: iter(rows), features=declared)
        with pytest.raises(IngestError) as caught:
            project.upload_dataset(stream, id_column="key", batch_size=2, progress=False)
        failures = caught.value.failures
        assert failures["row"].tolist() == [1, 3, 4]
        assert "the id is missing" in failures["error"].iloc[0]
        assert "duplicate id 'a': row 0 already has it" in failures["error"].iloc[2]
    result = datasets.IterableDataset.from_generator(lambda: iter(rows), features=features)
    result = project.upload_dataset(result, id_column="key", on_error="skip", progress=False)
    assert (result.created, result.failed) == (2, 3)

    drifting = [{"n": i, "text": "x"} for i in range(1000)] + [{"n": "many", "text": "y"}]
    stream = datasets.IterableDataset.from_generator(lambda: iter(drifting))
    fresh = make_project(client, labels=LABELS)
    with pytest.raises(ValidationError, match="explicit features") as caught:
        fresh.upload_dataset(stream, batch_size=300, progress=False)
    assert caught.value.param == "features"
    assert fresh.refresh().task_count == 0


def test_gold_and_predictions_are_checked_against_the_labels(client):
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "text": ["w", "x", "y", "z"],
            "gold": ["cat", None, "bird", "dog"],
            "pred": [["cat", "dog"], ["dog"], None, ["cow"]],
        }
    )
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(
            df, id_column="id", gold_column="gold", prediction_column="pred", progress=False
        )
    failures = caught.value.failures
    assert failures[["row", "column"]].values.tolist() == [[2, "gold"], [3, "pred"]]
    assert "'bird' is not one of the project's labels" in failures.loc[0, "error"]

    result = project.upload_dataframe(
        df,
        id_column="id",
        gold_column="gold",
        prediction_column="pred",
        on_error="skip",
        progress=False,
    )
    assert (result.created, result.failed) == (2, 2)
    records = {r["external_id"]: r for r in project.export()}
    assert records["1"]["gold"] == "cat" and records["2"]["gold"] is None
    assert set(records["1"]["data"]) == {"text"}  # gold and predictions are not task data


def test_dataset_with_image_and_classlabel_uploads_assets_served_as_images(
    client, platform, tmp_path
):
    jpeg_path = tmp_path / "photo.jpg"
    from PIL import Image

    Image.new("RGB", (5, 5), "blue").save(jpeg_path, "JPEG")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=LABELS),
            "when": datasets.Value("timestamp[us, tz=UTC]"),
            "tags": datasets.Sequence(datasets.Value("string")),
        }
    )
    red = png_bytes(rgb=(255, 0, 0))
    ds = datasets.Dataset.from_dict(
        {
            "image": [
                {"bytes": red, "path": None},
                {"bytes": None, "path": str(jpeg_path)},
                {"bytes": red, "path": None},
            ],
            "caption": ["red square", "blue photo", "red again"],
            "label": [0, 1, -1],  # -1: ClassLabel for "no label"
            "when": [pd.Timestamp("2024-05-01", tz="UTC")] * 3,
            "tags": [["a"], [], ["b", "c"]],
        },
        features=features,
    )
    project = make_project(client, labels=LABELS)
    result = project.upload_dataset(ds, gold_column="label", progress=False)
    assert (result.created, result.assets_uploaded) == (3, 2)  # the repeated image is sent once

    schema = project.refresh().source_schema
    assert features_from(schema) == datasets.Features(
        {k: v for k, v in features.items() if k != "label"}
    )
    records = sorted(project.export(), key=lambda r: r["id"])
    assert [r["gold"] for r in records] == ["cat", "dog", None]  # ClassLabel ints → names
    ref = records[1]["data"]["image"]
    assert ref["content_type"] == "image/jpeg" and ref["path"] == str(jpeg_path)

    key = f"Bearer {client.settings.api_key}"
    response = requests.get(
        platform.base_url + records[0]["data"]["image"]["url"],
        headers={"Authorization": key},
        timeout=10,
    )
    assert response.status_code == 200 and response.content == red
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert project.get_asset(ref["asset"]) == jpeg_path.read_bytes()

    restored = exported_table(project, fetch_asset=project.get_asset)
    assert restored["image"].to_pylist()[0] == {"bytes": red, "path": None}
    back = datasets.Dataset(restored, info=datasets.DatasetInfo(features=features_from(schema)))
    assert back[1]["image"].size == (5, 5) and back[2]["tags"] == ["b", "c"]


def test_assets_are_scoped_validated_and_hash_named(client, platform, annotator_key):
    from PIL import Image

    project = make_project(client, labels=LABELS)
    frame = pd.DataFrame(
        {"picture": [png_bytes(rgb=(0, 128, 0))], "pil": [Image.new("L", (2, 2), 128)]}
    )
    ok = project.upload_dataframe(frame, progress=False)
    assert ok.assets_uploaded == 2  # image bytes and a PIL image (sent as PNG) are both found
    pil_ref = project.export()[0]["data"]["pil"]
    assert Image.open(io.BytesIO(project.get_asset(pil_ref["asset"]))).size == (2, 2)
    url = platform.base_url + project.export()[0]["data"]["picture"]["url"]

    other = {"Authorization": f"Bearer {platform.create_customer()}"}
    assert requests.get(url, headers=other, timeout=10).status_code == 404  # another customer
    annotator = {"Authorization": f"Bearer {annotator_key()}"}
    assert (
        requests.get(url, headers=annotator, timeout=10).status_code == 404
    )  # project not started
    owner = {"Authorization": f"Bearer {client.settings.api_key}"}
    base = f"{platform.base_url}/v1/projects/{project.id}/assets"
    for bad in ["..%2F..%2Fcynaps.db", "A" * 64, "0" * 63]:
        assert requests.get(f"{base}/{bad}", headers=owner, timeout=10).status_code == 404
    html = b"<html><script>alert(1)</script></html>"
    response = requests.post(
        base, data=html, headers={**owner, "Content-Type": "image/png"}, timeout=10
    )
    assert (
        response.status_code == 415
        and "PNG, JPEG, GIF and WebP" in response.json()["error"]["message"]
    )


def test_non_image_bytes_in_an_image_column_are_reported(client, tmp_path):
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame({"img": [str(tmp_path / "missing.png"), str(tmp_path / "notes.txt")]})
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(df, image_columns=["img"], progress=False)
    errors = caught.value.failures["error"].tolist()
    assert "cannot read image file" in errors[0] and "not a PNG, JPEG, GIF or WebP" in errors[1]


def test_parquet_and_iterable_dataset_stream_in_batches(client, tmp_path):
    n = 2_500
    table = pa.table(
        {
            "uid": pa.array([f"u{i}" for i in range(n)]),
            "text": pa.array([f"row {i}" for i in range(n)]),
            "at": pa.array(np.arange(n) * 1_000_000, type=pa.timestamp("us", "Asia/Tokyo")),
            "kind": pa.array(["a", "b"] * (n // 2)).dictionary_encode(),
        }
    )
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(table.slice(0, 1000), folder / "a.parquet", row_group_size=300)
    pq.write_table(table.slice(1000), folder / "b.parquet", row_group_size=300)
    project = make_project(client, labels=LABELS)
    result = project.upload_parquet(folder, id_column="uid", batch_size=700, progress=False)
    assert (result.created, result.project_task_count) == (n, n) and result.batches >= 4
    restored = exported_table(project)
    expected = table.drop_columns(["uid"])
    assert restored.schema.field("at").type == pa.timestamp("us", "Asia/Tokyo")
    assert restored.select(expected.column_names).to_pylist() == expected.to_pylist()

    iterable = datasets.Dataset.from_dict(
        {"uid": [f"u{i}" for i in range(50)], "text": ["t"] * 50}
    ).to_iterable_dataset()
    streamed = make_project(client, labels=LABELS)
    result = streamed.upload_dataset(iterable, id_column="uid", batch_size=20, progress=False)
    assert (result.created, result.batches) == (50, 3)


def test_mixing_schemas_in_one_project_is_refused(client):
    project = make_project(client, labels=LABELS)
    project.upload_dataframe(pd.DataFrame({"text": ["a"]}), progress=False)
    with pytest.raises(ValidationError, match="already holds 1 tasks"):
        project.upload_dataframe(pd.DataFrame({"text": [1]}), progress=False)


def _arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_arrow_batch_endpoint_validates_every_row(client, platform):
    project = make_project(client, labels=LABELS)
    url = f"{platform.base_url}/v1/projects/{project.id}/tasks/batch"
    headers = {
        "Authorization": f"Bearer {client.settings.api_key}",
        "Content-Type": "application/vnd.apache.arrow.stream",
    }

    def post(table: pa.Table | bytes) -> requests.Response:
        body = table if isinstance(table, bytes) else _arrow_body(table)
        return requests.post(url, data=body, headers=headers, timeout=10)

    good = {"data": ['{"t": 1}', '{"t": 2}'], "external_id": ["a", "b"]}
    cases = [
        ({**good, "data": ['{"t": 1}', "[1, 2]"]}, 422, "tasks[1].data"),
        ({**good, "data": ['{"t": 1}', '{"t": ']}, 422, "tasks[1].data"),
        ({**good, "external_id": ["a", ""]}, 422, "tasks[1].external_id"),
        ({**good, "gold": [None, '"bird"']}, 422, "tasks[1].gold"),
        ({**good, "predictions": ['["cat", "cow"]', None]}, 422, "tasks[0].predictions"),
        ({**good, "extra": ["x", "y"]}, 422, "Unknown column 'extra'"),
    ]
    for columns, status, needle in cases:
        response = post(pa.table(columns))
        assert response.status_code == status and needle in response.json()["error"]["message"], (
            columns,
            response.text,
        )
    bad_body = post(b"not arrow at all")
    assert bad_body.status_code == 400 and bad_body.json()["error"]["code"] == "invalid_arrow"
    assert project.refresh().task_count == 0  # nothing half-written

    ok = post(pa.table({**good, "gold": ['"cat"', None]}))
    assert ok.status_code == 201 and ok.json()["created"] == 2
    again = post(pa.table(good))
    assert again.json()["duplicates"] == 2
    assert {r["external_id"]: r["gold"] for r in project.export()} == {"a": "cat", "b": None}


@pytest.mark.parametrize("wire_format", ["arrow", "json"])
def test_typed_upload_on_each_storage_backend(backend_platform, wire_format):
    import cynaps_data as cynaps

    key = backend_platform.create_customer()
    with cynaps.Client(api_key=key, base_url=backend_platform.base_url, max_retries=0) as c:
        project = make_project(c, labels=LABELS)
        df = pd.DataFrame({"id": [1, 2, 3], "text": ["a", "b", None], "gold": ["cat", None, "dog"]})
        first = project.upload_dataframe(
            df, id_column="id", gold_column="gold", progress=False, wire_format=wire_format
        )
        again = project.upload_dataframe(
            df, id_column="id", gold_column="gold", progress=False, wire_format=wire_format
        )
        assert (first.created, again.created, again.duplicates) == (3, 0, 3)
        records = {r["external_id"]: r for r in project.export()}
        assert {k: (r["data"]["text"], r["gold"]) for k, r in records.items()} == {
            "1": ("a", "cat"),
            "2": ("b", None),
            "3": (None, "dog"),
        }
        plain = make_project(c, labels=LABELS)
        assert (
            plain.upload_dataframe(df[["text"]], progress=False, wire_format=wire_format).created
            == 3
        )


def test_arrow_batch_keeps_order_and_skips_duplicates_on_each_backend(backend_platform):
    """A batch larger than one multi-row INSERT statement: rows land in order, a repeated id
    inside the batch and ids already stored are skipped (counted as duplicates), and a row the
    regular-expression screen cannot settle (nested, spaced JSON) is still parsed and kept."""
    import cynaps_data as cynaps
    from cynaps_data.server.services.tasks import ROWS_PER_STATEMENT

    key = backend_platform.create_customer()
    with cynaps.Client(api_key=key, base_url=backend_platform.base_url, max_retries=0) as c:
        project = make_project(c, labels=LABELS)
        url = f"{backend_platform.base_url}/v1/projects/{project.id}/tasks/batch"
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/vnd.apache.arrow.stream",
        }
        n = 2 * ROWS_PER_STATEMENT + 7
        ids = [f"t{i}" for i in range(n)]
        data = [
            f'{{"i": {i}}}' if i != 5 else '{"i": 5, "deep": {"a": [1, {"b": 2}]}}'
            for i in range(n)
        ]
        gold = ['"cat"' if i % 3 == 0 else None for i in range(n)]
        first = requests.post(
            url,
            data=_arrow_body(
                pa.table({"data": data[:300], "external_id": ids[:300], "gold": gold[:300]})
            ),
            headers=headers,
            timeout=30,
        )
        assert first.status_code == 201 and first.json()["created"] == 300, first.text
        ids_again = ids[:]
        ids_again[400] = ids[399]  # the same id twice in one batch: the second is a duplicate
        whole = requests.post(
            url,
            data=_arrow_body(pa.table({"data": data, "external_id": ids_again, "gold": gold})),
            headers=headers,
            timeout=30,
        )
        assert whole.status_code == 201, whole.text
        body = whole.json()
        assert (body["created"], body["duplicates"], body["project_task_count"]) == (
            n - 301,
            301,
            n - 1,
        )
        records = project.export()
        assert [r["external_id"] for r in records] == [i for i in ids if i != ids[400]]
        assert [r["data"]["i"] for r in records] == [i for i in range(n) if i != 400]
        assert records[5]["data"]["deep"] == {"a": [1, {"b": 2}]}
        assert [r["gold"] for r in records[:4]] == ["cat", None, None, "cat"]


def test_compressed_arrow_bodies_are_read_and_bounded(client, platform, monkeypatch):
    """LZ4/ZSTD bodies are accepted; a body whose buffers would decompress past the limit is
    refused (413) from its declared sizes, before anything is decompressed or stored."""
    from cynaps_data.server.services import arrow_batch

    project = make_project(client, labels=LABELS)
    url = f"{platform.base_url}/v1/projects/{project.id}/tasks/batch"
    headers = {
        "Authorization": f"Bearer {client.settings.api_key}",
        "Content-Type": "application/vnd.apache.arrow.stream",
    }

    def body(table: pa.Table, compression: str) -> bytes:
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression=compression)
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    text = '{"t":"' + "x" * 1000 + '"}'
    table = pa.table({"data": [text] * 2000, "external_id": [str(i) for i in range(2000)]})
    monkeypatch.setattr(arrow_batch, "MAX_DECODED_BYTES", 1_000_000)
    bomb = body(table, "zstd")
    assert len(bomb) < 100_000  # ~2 MB of buffers once decompressed
    refused = requests.post(url, data=bomb, headers=headers, timeout=30)
    assert refused.status_code == 413, refused.text
    assert project.refresh().task_count == 0
    for compression in ("lz4", "zstd"):
        ok = requests.post(
            url, data=body(table.slice(0, 500), compression), headers=headers, timeout=30
        )
        assert ok.status_code == 201, ok.text
    assert project.refresh().task_count == 500


def test_upload_checkpoints_run_after_the_commit_and_keep_the_log_short(tmp_path):
    """An upload batch's commit skips SQLite's automatic checkpoint (restored when the
    connection goes back to the pool); the background checkpoint copies the batch, so the next
    batch starts the write-ahead log over instead of growing it."""
    import types

    from cynaps_data.server.db import Database, database_url
    from cynaps_data.server.services import checkpoints
    from cynaps_data.server.services.tasks import insert_rows

    db = Database(database_url(tmp_path / "c.db"))
    db.create_all()
    project = types.SimpleNamespace(id="proj_ckpt", quality_settings={"min_annotators": 1})
    wal = tmp_path / "c.db-wal"
    sizes = []
    for batch in range(3):
        checkpoints.wait(db)
        with db.write() as conn:
            driver = conn.connection.driver_connection
            checkpoints.defer(db, conn)
            assert driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
            ids = [f"{batch}-{i}" for i in range(5000)]
            insert_rows(conn, project, ids, ['{"t":"' + "x" * 200 + '"}'] * 5000)
        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # restored
        checkpoints.start(db)
        sizes.append(wal.stat().st_size)
    checkpoints.wait(db)
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tasks").scalar() == 15_000
    assert sizes[2] <= sizes[0] * 1.1, sizes  # the log restarted: one batch long, not three
    db.dispose()

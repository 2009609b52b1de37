"""The classification upload and export layer under the inputs data scientists really send:
each test names an input that once gave a bare pandas/pyarrow/orjson trace, a half-written
upload or a silently changed value, and checks the clear error (column and row, nothing sent)
or the exact round trip instead."""

from __future__ import annotations

import decimal
import io

import datasets
import numpy as np
import pandas as pd
import pytest

from cynaps_data.errors import ValidationError
from cynaps_data.io.uploader import IngestError

from .conftest import Person, make_project

LABELS = ["cat", "dog"]


def objects(values: list) -> pd.Series:
    return pd.Series(values, dtype=object)


def test_role_column_values_that_do_not_fit_are_reported_not_dropped(client):
    """A gold column mixing a label with a number used to go up with that row's gold silently
    null (the conversion failure of a non-data column was discarded); an id column mixing
    types reported "the id is missing" for an id that is there."""
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame({"text": ["a", "b", "c"], "g": objects(["cat", 5, "dog"])})
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(df, gold_column="g", progress=False)
    failures = caught.value.failures
    assert failures[["row", "column"]].values.tolist() == [[1, "g"]]
    assert "does not fit" in failures.loc[0, "error"]
    assert project.refresh().task_count == 0

    ids = pd.DataFrame({"text": ["a", "b", "c"], "key": objects([1, "x", 2])})
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(ids, id_column="key", progress=False)
    failures = caught.value.failures
    assert failures[["row", "column"]].values.tolist() == [[1, "key"]]
    assert "missing" not in failures.loc[0, "error"] and "'x'" in failures.loc[0, "value"]
    assert project.refresh().task_count == 0


def test_nul_characters_are_refused_before_anything_is_sent(client):
    """Text with NUL (the platform cannot store it) in the third row of a batched upload: the
    first two batches used to land before the platform refused the third (a half-written
    upload, the error naming ``tasks[0]`` of the batch). Every place is checked up front:
    plain text, text inside dicts and lists, dict keys, ids."""
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame({"t": ["a", "b", "c\x00"]})
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(df, batch_size=1, progress=False)
    failures = caught.value.failures
    assert failures[["row", "column"]].values.tolist() == [[2, "t"]]
    assert "NUL" in failures.loc[0, "error"]
    assert project.refresh().task_count == 0

    nested = pd.DataFrame(
        {
            "d": [{"k": "ok"}, {"k": "x\x00"}, {"k": "ok2"}],
            "l": [["a"], ["b"], ["\x00"]],
            "key": ["k1", "k2", "k\x003"],
        }
    )
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(nested, id_column="key", progress=False)
    assert caught.value.failures[["row", "column"]].values.tolist() == [
        [1, "d"],
        [2, "key"],
        [2, "l"],
    ]
    # a dict key is a field of every row on the wire: the column is refused
    keys = pd.DataFrame({"d": [{"a": 1}, {"b\x00": 2}]})
    with pytest.raises(ValidationError, match="dict key 'b") as caught:
        project.upload_dataframe(keys, progress=False)
    assert caught.value.param == "d"
    with pytest.raises(ValidationError, match="NUL") as caught:
        project.upload_dataframe(pd.DataFrame({"a\x00b": ["x"]}), progress=False)
    paths = pd.DataFrame({"img": ["/tmp/x\x00.png"]})  # open() raised a bare ValueError
    with pytest.raises(IngestError) as caught:
        project.upload_dataframe(paths, image_columns=["img"], progress=False)
    assert caught.value.failures[["row", "column"]].values.tolist() == [[0, "img"]]
    assert project.refresh().task_count == 0
    ok = project.upload_dataframe(pd.DataFrame({"t": ["a", "b", "c\x00"]}), on_error="skip")
    assert (ok.created, ok.failed) == (2, 1)


def test_uint64_ids_above_int64_upload_exactly(client):
    """uint64 ids past 2**63 (hashes) used to fail with a bare ArrowInvalid from the id check."""
    project = make_project(client, labels=LABELS)
    ids = np.array([2**64 - 1, 2**63, 5], dtype="uint64")
    df = pd.DataFrame({"text": ["a", "b", "c"], "key": ids})
    result = project.upload_dataframe(df, id_column="key", progress=False)
    assert result.created == 3
    got = sorted(r["external_id"] for r in project.export())
    assert got == sorted(str(int(i)) for i in ids)
    dup = pd.DataFrame({"text": ["a", "b"], "key": np.array([2**64 - 1] * 2, dtype="uint64")})
    with pytest.raises(IngestError) as caught:
        make_project(client, labels=LABELS).upload_dataframe(dup, id_column="key", progress=False)
    assert caught.value.failures[["row", "column"]].values.tolist() == [[1, "key"]]


def test_id_column_that_is_also_a_data_column(client):
    """``data_columns`` naming the id column too used to be a bare ``KeyError: 0``."""
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame({"text": ["a", "b"], "sku": ["S1", "S2"]})
    result = project.upload_dataframe(
        df, data_columns=["text", "sku"], id_column="sku", progress=False
    )
    assert result.created == 2
    records = sorted(project.export(), key=lambda r: r["external_id"])
    assert [r["data"] for r in records] == [
        {"text": "a", "sku": "S1"},
        {"text": "b", "sku": "S2"},
    ]


def test_csv_export_of_bytes_decimals_and_formula_headers(client):
    """``export("csv")`` of a frame with bytes or Decimal values (top level or inside dicts)
    was a bare ``TypeError: Type is not JSON serializable``; a data column whose *name* starts
    with ``=`` went into the header unescaped."""
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame(
        {
            "blob": [b"\x00a", None],
            "price": [decimal.Decimal("1.10"), decimal.Decimal("-2.50")],
            "meta": [{"p": decimal.Decimal("3.5"), "raw": b"zz"}, None],
            "=cmd|' /C calc'!A0": ["x", "y"],
        }
    )
    project.upload_dataframe(df, progress=False)
    text = project.export("csv")
    back = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    assert "'=cmd|' /C calc'!A0" in back.columns
    assert "=cmd|' /C calc'!A0" not in back.columns
    assert sorted(back["price"]) == ["-2.50", "1.10"]  # numbers stay numbers, exact
    assert sorted(back["blob"]) == ["", "AGE="]  # base64, as on the wire
    meta = sorted(back["meta"])
    assert meta == ["", '{"p":"3.5","raw":"eno="}']


def test_empty_upload_still_exports_its_typed_columns(client):
    """An upload of zero rows records the schema; the export of the (empty) project used to
    drop every data column, so ``frame[["text", "n"]]`` was a KeyError."""
    project = make_project(client, labels=LABELS)
    df = pd.DataFrame(
        {
            "text": pd.Series([], dtype="str"),
            "n": pd.array([], dtype="Int64"),
            "kind": pd.Categorical([], categories=["x", "y"]),
        }
    )
    assert project.upload_dataframe(df, progress=False).created == 0
    frame = project.to_pandas()
    assert len(frame) == 0
    assert list(frame.columns[:3]) == ["text", "n", "kind"]
    assert frame["n"].dtype == "Int64"
    assert list(frame["kind"].cat.categories) == ["x", "y"]
    assert "text" in project.to_dataset().column_names


def test_uint64_data_past_int64_is_never_silently_rounded(client):
    """A uint64 column with a value past 2**63 comes back from the platform's Arrow export as
    float64 (``pyarrow.json`` infers double): ``to_pandas`` used to return 2**63 + 5 as
    9223372036854775808, a different number. It must be exact or a clear error."""
    project = make_project(client, labels=LABELS)
    values = np.array([2**63 + 5, 1], dtype="uint64")
    project.upload_dataframe(pd.DataFrame({"h": values}), progress=False)
    try:
        frame = project.to_pandas()
    except ValidationError as exc:
        assert exc.param == "h" and "'h'" in str(exc)
    else:
        assert sorted(frame["h"].tolist()) == sorted(int(v) for v in values)


def test_classlabel_sequence_predictions_are_sent_as_names(platform, client):
    """A ``Sequence(ClassLabel)`` prediction column (top-k model labels) was sent as ints and
    refused ("label 0 is not one of the project's labels"), though the names are the labels."""
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "pred": datasets.Sequence(datasets.ClassLabel(names=LABELS)),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"text": ["a", "b", "c"], "pred": [[0, 1], [], None]}, features=features
    )
    project = make_project(client, labels=LABELS)
    result = project.upload_dataset(ds, prediction_column="pred", progress=False)
    assert result.created == 3
    project.calculate_deposit()
    project.pay_deposit()
    project.start()
    annotator = Person(platform, team_of=client)
    seen = {}
    while (task := annotator.next(project.id)) is not None:
        seen[task["data"]["text"]] = task["suggestions"]
        assert annotator.submit(task["task_id"], "cat").status_code == 201
    assert seen["a"] == ["cat", "dog"] and seen["c"] is None
    project.cancel()


def test_a_renamed_data_column_keeps_its_dataset_feature(client) -> None:
    """A ``datasets`` column named like an export column (``label``) comes back as
    ``data.label``; failed before: it lost its ClassLabel feature (plain int64)."""
    source = datasets.Dataset.from_dict(
        {"text": ["a", "b"], "label": [0, 1]},
        features=datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
        ),
    )
    project = make_project(client, labels=["x", "y"])
    project.upload_dataset(source, progress=False)
    out = project.to_dataset()
    assert out.features["data.label"] == datasets.ClassLabel(names=["neg", "pos"])
    assert out["data.label"] == [0, 1]

"""Exports as partitioned Parquet datasets (issue 19): written while the export streams in,
bounded part files, ``_common_metadata`` with the label set, and read back with the same types
by Dask, pyarrow.dataset, DuckDB and Hugging Face ``datasets``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import requests

from cynaps_data import errors
from cynaps_data.io import export as io_export
from cynaps_data.io import partitioned

from .conftest import make_project
from .test_export import LABELS

N_TASKS = 1_500


@pytest.fixture(scope="module")
def exported(platform, tmp_path_factory):
    """A project of 1,500 tasks (some judged, some disputed), its frame and its dataset in
    part files of at most 400 rows."""
    import cynaps_data as cynaps

    with cynaps.Client(
        api_key=platform.create_customer(), base_url=platform.base_url, max_retries=0
    ) as client:
        project = make_project(client, labels=LABELS, quality_settings={"min_annotators": 2})
        rows = [
            {
                "text": f"item {i}",
                "n": i,
                "score": i / 7,
                "flag": bool(i % 2),
                "note": None if i % 3 else f"n{i}",
            }
            for i in range(N_TASKS)
        ]
        project.upload_tasks(rows)
        project.calculate_deposit()
        project.pay_deposit(payment_method="razorpay")  # sandbox-simulated
        project.start()
        for k in range(2):  # two annotators judge the first 30 tasks they are given
            key = platform.create_member("annotator", f"A{k}", owner_key=client.settings.api_key)
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
            for _ in range(30):
                r = session.get(
                    f"{platform.base_url}/v1/annotator/next", params={"project_id": project.id}
                )
                assert r.status_code == 200, r.text
                t = r.json()["task_id"]
                label = LABELS[(t + k * (t % 5 == 0)) % 3]  # every fifth task disputed
                s = session.post(
                    f"{platform.base_url}/v1/annotator/tasks/{t}/judgements",
                    json={"label": label},
                )
                assert s.status_code == 201, s.text
        directory = tmp_path_factory.mktemp("export") / "results"
        out = project.to_parquet(str(directory), max_rows_per_file=400, row_group_size=128)
        yield project.to_pandas(), out


def test_layout_and_metadata(exported) -> None:
    frame, directory = exported
    names = sorted(p.name for p in directory.iterdir())
    assert names == [
        "_common_metadata",
        "_metadata",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
        "part-00003.parquet",
    ]
    rows = [pq.ParquetFile(directory / n).metadata.num_rows for n in names[2:]]
    assert rows == [400, 400, 400, 300]
    assert all(
        pq.ParquetFile(directory / n).metadata.row_group(0).num_rows <= 128 for n in names[2:]
    )
    common = pq.read_schema(directory / "_common_metadata")
    info = io_export.project_info(pa.table({}).replace_schema_metadata(common.metadata))
    assert info["labels"] == LABELS and info["cursor"] > 0
    assert pq.read_metadata(directory / "_metadata").num_rows == N_TASKS
    back = partitioned.read_dataset(directory)
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs["cynaps"]["labels"] == LABELS


def test_dask_reads_the_same_types(exported) -> None:
    dd = pytest.importorskip("dask.dataframe")
    frame, directory = exported
    got = dd.read_parquet(str(directory)).compute()
    assert got.index.name == "task" and len(got) == N_TASKS
    for col in ("n", "score", "flag", "agreement", "n_annotations", "updated_at"):
        assert got[col].dtype == frame[col].dtype, col
    assert isinstance(got["label"].dtype, pd.CategoricalDtype)
    assert list(got["label"].cat.categories) == LABELS
    assert (got["label"].astype(object) == frame["label"].astype(object).loc[got.index]).sum() == (
        frame["label"].notna().sum()
    )


def test_pyarrow_dataset_and_duckdb(exported) -> None:
    duckdb = pytest.importorskip("duckdb")
    frame, directory = exported
    common = pq.read_schema(directory / "_common_metadata")
    dataset = ds.dataset(str(directory), format="parquet")
    assert dataset.schema.equals(common, check_metadata=False)
    assert dataset.count_rows() == N_TASKS
    table = dataset.to_table(filter=ds.field("label") == "bird")
    assert table.num_rows == int((frame["label"] == "bird").sum())
    con = duckdb.connect()
    glob = str(directory / "*.parquet")
    counts = dict(
        con.execute(f"SELECT label, count(*) FROM read_parquet('{glob}') GROUP BY label").fetchall()
    )
    expected = frame["label"].astype(object).value_counts(dropna=False)
    assert counts == {(None if pd.isna(k) else k): v for k, v in expected.items()}
    types = {
        r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{glob}')").fetchall()
    }
    assert types["task"] == "BIGINT" and types["n"] == "BIGINT" and types["score"] == "DOUBLE"
    total = con.execute(f"SELECT sum(n), sum(n_annotations) FROM read_parquet('{glob}')").fetchone()
    assert total == (int(frame["n"].sum()), int(frame["n_annotations"].sum()))


def test_hugging_face_datasets(exported) -> None:
    datasets = pytest.importorskip("datasets")
    frame, directory = exported
    hf = datasets.load_dataset(
        "parquet", data_files=str(directory / "*.parquet"), split="train", cache_dir=None
    )
    assert hf.num_rows == N_TASKS
    assert hf.features["n"].dtype == "int64" and hf.features["score"].dtype == "float64"
    by_task = dict(zip(hf["task"], hf["label"], strict=True))
    assert by_task == frame["label"].astype(object).where(frame["label"].notna(), None).to_dict()
    assert sum(v == "bird" for v in by_task.values()) == int((frame["label"] == "bird").sum())


def test_cut_stream_and_existing_directory_write_nothing(platform, client, tmp_path) -> None:
    project = make_project(client, labels=LABELS)
    project.upload_tasks([{"text": f"t{i}"} for i in range(5)])
    r = requests.get(
        f"{platform.base_url}/v1/projects/{project.id}/export",
        params={"format": "arrow"},
        headers={"Authorization": f"Bearer {client.settings.api_key}"},
    )
    with pa.ipc.open_stream(r.content) as reader:
        batches = list(reader.iter_batches_with_custom_metadata())
    sink = pa.BufferOutputStream()  # the same stream without its cursor batch
    with pa.ipc.new_stream(sink, reader.schema) as writer:
        for b in batches[:-1]:
            writer.write_batch(b.batch)
    target = tmp_path / "cut"
    with pytest.raises(errors.APIConnectionError, match="ended early"):
        partitioned.write_export(sink.getvalue().to_pybytes(), target)
    assert list(tmp_path.iterdir()) == []  # no directory, no hidden leftovers
    done = partitioned.write_export(r.content, tmp_path / "ok")
    assert partitioned.read_dataset(done).shape[0] == 5
    with pytest.raises(errors.ValidationError, match="overwrite=True"):
        project.to_parquet(str(done))
    project.upload_tasks([{"text": "one more"}])
    project.to_parquet(str(done), overwrite=True)
    assert partitioned.read_dataset(done).shape[0] == 6
    single = project.to_parquet(str(tmp_path / "one.parquet"))  # a file path: one file
    assert single.is_file()
    empty = make_project(client, labels=LABELS)
    out = empty.to_parquet(str(tmp_path / "empty"))
    back = partitioned.read_dataset(out)
    assert len(back) == 0 and list(back["label"].cat.categories) == LABELS
    long = project.to_parquet(str(tmp_path / "long"), form="long")
    assert len(partitioned.read_dataset(long)) == 0
    assert np.array_equal(
        sorted(p.name for p in long.iterdir()),
        ["_common_metadata", "_metadata", "part-00000.parquet"],
    )


def test_uploads_from_a_dataset_directory_and_a_dask_frame(exported, client) -> None:
    """The exported dataset uploads back with upload_parquet(directory); a Dask DataFrame
    uploads partition by partition, and re-running it creates nothing new."""
    dd = pytest.importorskip("dask.dataframe")
    frame, directory = exported
    project = make_project(client, labels=LABELS)
    res = project.upload_parquet(
        str(directory), data_columns=["text", "n", "score"], id_column="task"
    )
    assert res.created == N_TASKS
    back = project.to_pandas()
    assert back["n"].tolist() == frame["n"].tolist() and back["n"].dtype == frame["n"].dtype
    df = pd.DataFrame(
        {
            "text": [f"row {i}" for i in range(1_000)],
            "k": np.arange(1_000),
            "x": np.linspace(0, 1, 1_000),
        }
    )
    ddf = dd.from_pandas(df, npartitions=4)
    other = make_project(client, labels=LABELS)
    first = other.upload_dataframe(ddf, id_column="k", batch_size=300, progress=False)
    assert (first.created, first.duplicates) == (1_000, 0)
    again = other.upload_dataframe(ddf, id_column="k", batch_size=300, progress=False)
    assert (again.created, again.duplicates) == (0, 1_000)
    got = other.to_pandas()
    assert got["text"].tolist() == df["text"].tolist()
    assert got["x"].tolist() == df["x"].tolist() and got["x"].dtype == np.float64

"""Repeated ids found in bounded memory (``cynaps_data.io.id_keys``): the same answer in memory
and spilled to bucket files, files private and removed, and an upload past the spill size."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cynaps_data.io import id_keys as ik
from cynaps_data.io.uploader import IngestError

from .conftest import make_project

LABELS = ["cat", "dog"]


def _batches(values: list, size: int) -> list[pa.Array]:
    return [pa.array(values[i : i + size]) for i in range(0, len(values), size)]


@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("num_rows", ["known", "unknown"])
def test_spilled_and_in_memory_find_the_same_repeats(kind, num_rows, monkeypatch):
    rng = np.random.default_rng(7)
    ids = rng.permutation(5_000).tolist()  # small integers: all of them in the top bits' bucket 0
    ids += [ids[3], ids[4000], ids[4000], ids[17]]
    ids = [None, *ids, None]  # nulls never repeat
    if kind == "str":
        ids = [None if v is None else f"id-{v}" for v in ids]
    expected = ik.id_keys(pa.array([ids[4], ids[4001], ids[18]]))
    made = []
    real_mkdtemp = ik.tempfile.mkdtemp
    monkeypatch.setattr(
        ik.tempfile, "mkdtemp", lambda **k: made.append(real_mkdtemp(**k)) or made[-1]
    )
    answers = []
    for spill_rows in (10**9, 700):
        keys = ik.IdKeys(len(ids) if num_rows == "known" else None, spill_rows=spill_rows)
        with keys:
            for batch in _batches(ids, 333):
                keys.add(ik.id_keys(batch))
            if spill_rows == 700:
                files = sorted(keys.directory.iterdir())
                assert len(files) == ik.BUCKETS  # spread over every bucket
                assert os.stat(keys.directory).st_mode & 0o077 == 0
                assert sum(f.stat().st_size for f in files) == 8 * len(ids)
            answers.append(keys.repeated())
    assert len(made) == 1 and not os.path.exists(made[0])  # removed after use
    np.testing.assert_array_equal(answers[0], answers[1])
    np.testing.assert_array_equal(answers[0], np.sort(expected))


def test_no_repeat_and_empty():
    with ik.IdKeys(None, spill_rows=2) as keys:
        for batch in _batches(list(range(10)), 3):
            keys.add(ik.id_keys(batch))
        assert keys.repeated().size == 0
    assert ik.IdKeys(0).repeated().size == 0


def test_upload_past_the_spill_size_reports_duplicates(client, tmp_path, monkeypatch):
    """An upload whose ids spill to disk reports the same duplicate rows as one that does not."""
    monkeypatch.setattr(ik, "SPILL_ROWS", 4)
    path = tmp_path / "dup.parquet"
    ids = [f"k{i}" for i in range(20)] + ["k3", "k19"]
    pq.write_table(
        pa.table({"id": ids, "text": [str(i) for i in range(22)]}), path, row_group_size=5
    )
    project = make_project(client, labels=LABELS)
    with pytest.raises(IngestError) as caught:
        project.upload_parquet(path, id_column="id", batch_size=5, progress=False)
    failures = caught.value.failures
    assert failures[["row", "column"]].values.tolist() == [[20, "id"], [21, "id"]]
    assert "row 3" in failures.loc[0, "error"] and "row 19" in failures.loc[1, "error"]
    assert project.refresh().task_count == 0
    ok = pd.DataFrame({"id": ids[:20], "text": ["x"] * 20})
    assert project.upload_dataframe(ok, id_column="id", progress=False).created == 20

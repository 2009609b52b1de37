"""Uploads into PostgreSQL go through COPY (server/pg_copy.py): values of every awkward shape
survive, external ids stay idempotent within and across batches, ids follow upload order, and
a batch is all-or-nothing."""

from __future__ import annotations

import pandas as pd
import pytest

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings

from .conftest import fresh_postgres_database, postgres_base_url

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="no PostgreSQL server")

AWKWARD = ["tab\there", "new\nline", "back\\slash \\N", 'quote "q"', "ünïcödé ✓", "\\.", ""]


@pytest.fixture(scope="module")
def pg_client():
    with (
        fresh_postgres_database("cynaps_copy") as url,
        LocalPlatform(settings=Settings(database_url=url), workforce=False) as platform,
        cynaps.Client(
            api_key=platform.create_customer(), base_url=platform.base_url, max_retries=0
        ) as client,
    ):
        yield client


def test_copy_keeps_values_order_and_idempotency(pg_client) -> None:
    project = pg_client.projects.create(name="copy", labels=["a", "b"])
    tasks = [
        {"data": {"text": AWKWARD[i % len(AWKWARD)], "i": i}, "external_id": f"e{i}"}
        for i in range(300)
    ]
    tasks[5]["gold"] = "b"
    first = project.upload_tasks(tasks)
    assert (first.created, first.duplicates) == (300, 0)
    again = project.upload_tasks(tasks[:100] + [{"data": {"text": "new"}, "external_id": "x"}])
    assert (again.created, again.duplicates) == (1, 100)
    records = project.export("json")
    assert [r["data"]["i"] for r in records[:300]] == list(range(300))  # upload order
    assert [r["data"]["text"] for r in records[:7]] == AWKWARD
    frame = project.to_pandas()
    assert frame["external_id"].tolist()[:3] == ["e0", "e1", "e2"]
    assert frame["gold"].iloc[5] == "b" and pd.isna(frame["gold"].iloc[4])
    df = pd.DataFrame({"text": AWKWARD * 3, "k": range(21)})  # the Arrow upload path
    res = project.upload_dataframe(df, id_column="k")
    assert res.created == 21
    assert project.upload_dataframe(df, id_column="k").duplicates == 21


def test_a_bad_batch_creates_nothing(pg_client) -> None:
    project = pg_client.projects.create(name="copy bad", labels=["a", "b"])
    ok = [{"data": {"text": f"t{i}"}, "external_id": f"e{i}"} for i in range(50)]
    bad = ok + [{"data": {"text": "x"}, "external_id": "z", "gold": "not a label"}]
    with pytest.raises(errors.ValidationError):
        project.upload_tasks(bad)
    assert project.refresh().task_count == 0
    assert project.upload_tasks(ok).created == 50

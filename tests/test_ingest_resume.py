"""Resuming uploads: a client killed mid-upload plus a restarted server lose nothing and
duplicate nothing; and the ``cynaps upload`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import cynaps_data as cynaps
from cynaps_data.cli import main
from cynaps_data.server.platform import LocalPlatform

from .conftest import make_project

CHILD = textwrap.dedent(
    """
    import sys, time
    import cynaps_data as cynaps

    client = cynaps.Client()
    project = client.projects.get(sys.argv[1])
    request = client._transport.request

    def slow_request(method, path, **kw):  # real HTTP, slowed so the parent can kill us mid-way
        answer = request(method, path, **kw)
        if path.endswith("/tasks/batch"):
            time.sleep(0.3)
        return answer

    client._transport.request = slow_request
    project.upload_parquet(sys.argv[2], id_column="uid", batch_size=400, progress=False)
    """
)


def test_killed_upload_and_restarted_server_resume_to_exactly_n(tmp_path):
    n = 4_000
    path = tmp_path / "rows.parquet"
    pq.write_table(
        pa.table({"uid": [f"r{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)]}),
        path,
    )
    db = tmp_path / "platform.db"
    platform = LocalPlatform(db, workforce=False).start()
    key = platform.create_customer()
    with cynaps.Client(api_key=key, base_url=platform.base_url) as client:
        project = make_project(client)
    env = {**os.environ, "CYNAPS_API_KEY": key, "CYNAPS_BASE_URL": platform.base_url}
    child = subprocess.Popen([sys.executable, "-c", CHILD, project.id, str(path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while project.refresh().task_count < 800:  # at least two batches landed
            assert child.poll() is None, "the upload finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    landed = project.refresh().task_count
    assert 0 < landed < n

    platform.stop()  # the server restarts on the same database
    platform = LocalPlatform(db, workforce=False).start()
    try:
        with cynaps.Client(api_key=key, base_url=platform.base_url) as client:
            project = client.projects.get(project.id)
            result = project.upload_parquet(path, id_column="uid", batch_size=400, progress=False)
            assert (result.created, result.duplicates, result.project_task_count) == (
                n - landed,
                landed,
                n,
            )
            ids = [r["external_id"] for r in project.export()]
            assert len(ids) == n and set(ids) == {f"r{i}" for i in range(n)}
    finally:
        platform.stop()


def test_cli_upload_csv_and_jsonl(client, platform, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CYNAPS_API_KEY", client.settings.api_key)
    monkeypatch.setenv("CYNAPS_BASE_URL", platform.base_url)
    project = make_project(client, labels=["pos", "neg"])
    frame = pd.DataFrame(
        {"id": [1, 2, 3], "review": ["good", "bad", "=HYPERLINK(1)"], "gold": ["pos", "neg", None]}
    )
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    assert (
        main(
            [
                "upload",
                str(tmp_path / "reviews.csv"),
                "--project",
                project.id,
                "--id-column",
                "id",
                "--gold-column",
                "gold",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "3 created" in capsys.readouterr().out

    frame.assign(id=[4, 5, 6], gold=["pos", "maybe", None]).to_json(
        tmp_path / "more.jsonl", orient="records", lines=True
    )
    args = [
        "upload",
        str(tmp_path / "more.jsonl"),
        "--project",
        project.id,
        "--id-column",
        "id",
        "--gold-column",
        "gold",
        "--no-progress",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "row 1" in err and "'gold'" in err and "maybe" in err
    assert main([*args, "--on-error", "skip"]) == 0
    assert "2 created" in capsys.readouterr().out
    records = {r["external_id"]: r for r in project.export()}
    assert sorted(records) == ["1", "2", "3", "4", "6"]
    assert records["3"]["data"] == {"review": "=HYPERLINK(1)"}  # stored as text, as given


def test_cli_export_writes_parquet_csv_and_json(client, platform, tmp_path, monkeypatch, capsys):
    """``cynaps export``: the typed export to Parquet (reads back with its label categories),
    formula-safe CSV, the seed's JSON; the format follows the file name; bad names are refused."""
    monkeypatch.setenv("CYNAPS_API_KEY", client.settings.api_key)
    monkeypatch.setenv("CYNAPS_BASE_URL", platform.base_url)
    project = make_project(client, labels=["pos", "neg"])
    project.upload_dataframe(
        pd.DataFrame({"id": [1, 2], "review": ["good", "=HYPERLINK(1)"]}),
        id_column="id",
        progress=False,
    )
    base = ["export", "--project", project.id, "-o"]

    assert main([*base, str(tmp_path / "out.parquet")]) == 0
    assert f"2 rows of {project.id} written to" in capsys.readouterr().out
    back = pd.read_parquet(tmp_path / "out.parquet")
    assert back["review"].tolist() == ["good", "=HYPERLINK(1)"]
    assert list(back["label"].cat.categories) == ["pos", "neg"]

    assert main([*base, str(tmp_path / "out.csv")]) == 0
    assert "'=HYPERLINK(1)" in (tmp_path / "out.csv").read_text()

    assert main([*base, str(tmp_path / "out.json")]) == 0
    records = json.loads((tmp_path / "out.json").read_text())
    assert sorted(r["data"]["review"] for r in records) == ["=HYPERLINK(1)", "good"]

    assert main([*base, str(tmp_path / "long.parquet"), "--form", "long"]) == 0
    assert main([*base, str(tmp_path / "out.xlsx")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "x.json"), "--method", "dawid_skene"]) == 2
    assert main(["export", "--project", "proj_nope", "-o", str(tmp_path / "y.csv")]) == 1
    assert "No such project" in capsys.readouterr().err

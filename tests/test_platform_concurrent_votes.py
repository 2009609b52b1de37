"""Simultaneous judgements on one task are all counted, on SQLite and PostgreSQL, with two
platform instances behind one database (as several processes would be)."""

from __future__ import annotations

import threading

import requests

import cynaps_data as cynaps
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings

from .conftest import started_project


def test_simultaneous_submits_on_one_task_are_all_counted(backend_platform):
    platform = backend_platform
    client = cynaps.Client(api_key=platform.create_customer(), base_url=platform.base_url)
    quality = {"min_annotators": 4, "consensus_threshold": 0.5, "enable_expert_review": False}
    project = started_project(client, [{"n": i} for i in range(10)], quality_settings=quality)
    sessions = []
    for i in range(4):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {platform.create_member('annotator', f'v{i}')}"
        sessions.append(session)
    second = LocalPlatform(
        settings=Settings(database_url=platform.settings.database_url), workforce=False
    )
    second.start()
    bases = [platform.base_url, second.base_url] * 2  # two annotators on each instance
    for _ in range(10):  # every task: four annotators hold it, then submit at the same moment
        held = [
            s.get(f"{b}/v1/annotator/next", params={"project_id": project.id}).json()
            for s, b in zip(sessions, bases, strict=True)
        ]
        assert len({h["task_id"] for h in held}) == 1
        barrier = threading.Barrier(4)
        codes: list[int] = []

        def vote(session, base, task_id, barrier=barrier, codes=codes):
            barrier.wait()
            codes.append(
                session.post(
                    f"{base}/v1/annotator/tasks/{task_id}/judgements", json={"label": "Sports"}
                ).status_code
            )

        threads = [
            threading.Thread(target=vote, args=(s, b, h["task_id"]))
            for s, b, h in zip(sessions, bases, held, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [201] * 4
    second.stop()
    status = project.get_status()
    assert (status.state, status.completed, status.judgements) == ("completed", 10, 40)
    records = project.export()
    assert all(r["consensus"]["n_annotations"] == 4 for r in records)
    assert all(r["annotations"][0]["result"]["value"] == "Sports" for r in records)

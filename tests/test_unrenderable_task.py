"""An assignment that cannot be rendered never blocks the annotator queue (issue 12, defect 2,
follow-up): a task nested deeper than the response serialiser takes, stored before the upload
limit existed (inserted here straight into the database), is skipped for the annotator and
the next task handed out. Both databases, over real HTTP."""

from __future__ import annotations

import json

import requests
import sqlalchemy as sa

from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.tables import skips, tasks


def _nested(depth: int):
    value: object = 1
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def test_a_task_too_deep_to_render_is_skipped_not_a_500_loop(
    backend_platform: LocalPlatform,
) -> None:
    """Failed before the fix: ``GET /v1/annotator/next`` was a 500 on every call."""
    base = backend_platform.base_url
    owner = {"Authorization": f"Bearer {backend_platform.create_customer()}"}

    def call(method: str, path: str, headers=owner, **kwargs):
        return requests.request(method, base + path, headers=headers, timeout=60, **kwargs)

    pid = call(
        "POST",
        "/v1/projects",
        json={
            "name": "deep",
            "labels": ["a", "b"],
            "quality_settings": {"min_annotators": 2, "enable_expert_review": False},
        },
    ).json()["id"]
    batch = {"tasks": [{"data": {"i": i}} for i in range(3)]}
    assert call("POST", f"/v1/projects/{pid}/tasks/batch", json=batch).status_code == 201
    paid = call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert paid.status_code == 200, paid.text
    with backend_platform.db.write() as conn:  # made before the limit: bypass the upload
        deep_id = conn.execute(
            sa.select(sa.func.min(tasks.c.id)).where(tasks.c.project_id == pid)
        ).scalar_one()
        conn.execute(
            tasks.update().where(tasks.c.id == deep_id).values(data=json.dumps({"x": _nested(300)}))
        )
    assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    members = [
        {
            "Authorization": "Bearer "
            + call("POST", "/v1/annotators", json={"name": f"m{i}"}).json()["api_key"]
        }
        for i in range(2)
    ]
    for member in members:
        answered = []
        for _ in range(5):
            got = call("GET", f"/v1/annotator/next?project_id={pid}", headers=member)
            assert got.status_code in (200, 204), got.text
            if got.status_code == 204:
                break
            task_id = got.json()["task_id"]
            assert task_id != deep_id
            done = call(
                "POST",
                f"/v1/annotator/tasks/{task_id}/judgements",
                headers=member,
                json={"label": "a"},
            )
            assert done.status_code == 201, done.text
            answered.append(task_id)
        assert len(answered) == 2  # every other task, then an empty queue
    with backend_platform.db.read() as conn:
        skipped = conn.execute(
            sa.select(sa.func.count()).select_from(skips).where(skips.c.task_id == deep_id)
        ).scalar_one()
        done = conn.execute(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(tasks.c.project_id == pid, tasks.c.status == "completed")
        ).scalar_one()
    assert skipped == 2 and done == 2  # recorded like a skip, once per annotator

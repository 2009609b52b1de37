"""Annotator requests in flight per platform process (``Settings.annotator_lanes``, issue 19).

On PostgreSQL one slow annotator transaction (here: blocked on a row lock that another
connection holds) must not hold up every other annotator of the process, as the single lane
SQLite needs did: real HTTP, real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest
import requests

from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import PG_ANNOTATOR_LANES, Settings

from .conftest import database_url, fresh_postgres_database


def test_lane_width_defaults_and_rejects_nonsense() -> None:
    assert Settings(database_url="sqlite:///x.db").annotator_lanes is None
    assert PG_ANNOTATOR_LANES > 1
    with pytest.raises(ValueError, match="annotator_lanes"):
        Settings(database_url="sqlite:///x.db", annotator_lanes=0)
    for bad in ("8", 2.5, True):
        with pytest.raises(ValueError, match="annotator_lanes"):
            Settings(database_url="sqlite:///x.db", annotator_lanes=bad)
    assert Settings(database_url="sqlite:///x.db", annotator_lanes=4).annotator_lanes == 4


def test_a_blocked_submission_does_not_hold_up_other_annotators_on_postgresql() -> None:
    with fresh_postgres_database() as raw_url:
        url = database_url(raw_url)
        with LocalPlatform(settings=Settings(database_url=url), workforce=False) as platform:
            base = platform.base_url
            owner = {"Authorization": f"Bearer {platform.create_customer()}"}

            def call(method: str, path: str, headers=owner, timeout=60, **kwargs):
                return requests.request(
                    method, base + path, headers=headers, timeout=timeout, **kwargs
                )

            pid = call(
                "POST",
                "/v1/projects",
                json={
                    "name": "lanes",
                    "labels": ["a", "b"],
                    "quality_settings": {"min_annotators": 2},
                },
            ).json()["id"]
            batch = {"tasks": [{"data": {"i": i}} for i in range(6)]}
            assert call("POST", f"/v1/projects/{pid}/tasks/batch", json=batch).status_code == 201
            paid = call(
                "POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"}
            )
            assert paid.status_code == 200, paid.text
            assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
            a, b = (
                {
                    "Authorization": "Bearer "
                    + call("POST", "/v1/annotators", json={"name": n}).json()["api_key"]
                }
                for n in ("a", "b")
            )
            task = call("GET", f"/v1/annotator/next?project_id={pid}", headers=a).json()["task_id"]

            locker = psycopg.connect(raw_url)  # holds task's row lock in an open transaction
            try:
                locker.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (task,))
                submitted: list[requests.Response] = []
                blocked = threading.Thread(
                    target=lambda: submitted.append(
                        call(
                            "POST",
                            f"/v1/annotator/tasks/{task}/judgements",
                            headers=a,
                            json={"label": "a"},
                        )
                    )
                )
                blocked.start()
                blocked.join(1.0)
                assert blocked.is_alive(), "the submission should wait for the row lock"
                # another annotator is served meanwhile (a single lane queued it behind A)
                got = call("GET", f"/v1/annotator/next?project_id={pid}", headers=b, timeout=10)
                assert got.status_code == 200, got.text
                assert blocked.is_alive()
            finally:
                locker.rollback()
                locker.close()
            blocked.join(30)
            assert not blocked.is_alive()
            assert submitted[0].status_code == 201, submitted[0].text

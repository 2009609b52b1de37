"""Per-key rate limits: 429 with Retry-After and RateLimit headers; the client's backoff keeps a
100k-task upload going under a tight limit without losing a task."""

from __future__ import annotations

import time

import requests

import cynaps_data as cynaps
from cynaps_data.errors import RateLimitError
from cynaps_data.server.db import database_url
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import RateLimit, Settings


def test_rate_limit_is_per_key_with_retry_after_and_ratelimit_headers(tmp_path) -> None:
    settings = Settings(
        database_url=database_url(tmp_path / "rl.db"), rate_limit=RateLimit(per_second=1, burst=3)
    )
    with LocalPlatform(settings=settings, workforce=False) as p:
        a = {"Authorization": f"Bearer {p.create_customer()}"}
        b = {"Authorization": f"Bearer {p.create_customer()}"}
        answers = [requests.get(p.base_url + "/v1/me", headers=a, timeout=30) for _ in range(6)]
        ok = [r for r in answers if r.status_code == 200]
        limited = [r for r in answers if r.status_code == 429]
        assert len(ok) >= 3 and limited, [r.status_code for r in answers]
        assert ok[0].headers["RateLimit-Policy"] == "3;w=3"
        assert ok[0].headers["RateLimit"].startswith("limit=3, remaining=")
        r = limited[0]
        assert (
            int(r.headers["Retry-After"]) >= 1
            and "RateLimit" in r.headers
            and "RateLimit-Policy" in r.headers
        )
        error = r.json()["error"]
        assert error["type"] == "rate_limit_error" and "Retry after" in error["message"]
        # another key has its own bucket
        assert requests.get(p.base_url + "/v1/me", headers=b, timeout=30).status_code == 200
        # the client maps it to RateLimitError with retry_after
        with cynaps.Client(api_key=a["Authorization"][7:], base_url=p.base_url, max_retries=0) as c:
            try:
                for _ in range(5):
                    c.me()
            except RateLimitError as exc:
                assert exc.retry_after is not None and exc.retry_after >= 1
            else:
                raise AssertionError("no RateLimitError after the burst")
        # a patient client retries the 429s, waiting as Retry-After asks
        statuses: list[int] = []
        with cynaps.Client(api_key=a["Authorization"][7:], base_url=p.base_url, max_retries=5) as c:
            c._transport.session.hooks["response"].append(  # no public hook sees the retries
                lambda r, *args, **kwargs: statuses.append(r.status_code)
            )
            started = time.monotonic()
            for _ in range(4):
                c.me()
        assert 429 in statuses and statuses.count(200) == 4
        assert time.monotonic() - started >= 1.0


def test_client_backoff_completes_100k_upload_under_tight_limit(tmp_path) -> None:
    n = 100_000
    # one token every 2 s and no burst: every batch after the first meets a 429 unless it took
    # over 2 s to send, so the limit pushes back on a loaded machine too
    settings = Settings(
        database_url=database_url(tmp_path / "rl100k.db"),
        rate_limit=RateLimit(per_second=0.5, burst=1),
    )
    with LocalPlatform(settings=settings, workforce=False) as p:
        key = p.create_customer()
        with cynaps.Client(api_key=key, base_url=p.base_url, max_retries=8) as client:
            statuses: list[int] = []
            client._transport.session.hooks["response"].append(
                lambda r, *a, **k: statuses.append(r.status_code)
            )
            project = client.projects.create(name="limits", labels=["a", "b"])
            items = [{"data": {"i": i}, "external_id": str(i)} for i in range(n)]
            result = project.upload_tasks(items, batch_size=10_000)
            assert result.created == n and result.project_task_count == n
            assert statuses.count(429) >= 5, "the limit never pushed back; the test proves nothing"
            status = project.get_status()
        assert status.total == n

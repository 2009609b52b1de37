"""Idempotency keys as Stripe defines them, on SQLite and PostgreSQL.

Same key and body: the stored response, applied once. Same key, other body: a clear error.
Keys are scoped to the API key and kept 24 h. Concurrent requests with one key: applied once.
A crashed attempt (simulated here by the key states a crash leaves behind; the SIGKILL tests in
``test_reliability_crash.py`` make them for real) is re-run only if none of its writes committed.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

import cynaps_data as cynaps
from cynaps_data.errors import IdempotencyError
from cynaps_data.server.db import IdempotencyClaim, current_claim
from cynaps_data.server.ids import hash_key
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.problems import Problem
from cynaps_data.server.tables import idempotency_keys, payments

TOPUP = "/v1/billing/topups"


@pytest.fixture
def customer(backend_platform: LocalPlatform):
    key = backend_platform.create_customer("Idempotency")
    return backend_platform, key, {"Authorization": f"Bearer {key}"}


def _post(
    p: LocalPlatform, headers: dict, key: str, body: dict, path: str = TOPUP
) -> requests.Response:
    return requests.post(
        p.base_url + path, headers={**headers, "Idempotency-Key": key}, json=body, timeout=60
    )


def _balance(p: LocalPlatform, headers: dict) -> int:
    return requests.get(p.base_url + "/v1/billing/balance", headers=headers, timeout=30).json()[
        "available_cents"
    ]


def _payments(p: LocalPlatform, api_key: str) -> int:
    from cynaps_data.server.services.accounts import authenticate

    account = authenticate(p.db, f"Bearer {api_key}").account_id
    with p.db.read() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(payments).where(payments.c.account_id == account)
        ).scalar_one()


def _key_row(p: LocalPlatform, api_key: str, key: str):
    with p.db.read() as conn:
        t = idempotency_keys
        return conn.execute(
            sa.select(t).where(t.c.key_hash == hash_key(api_key), t.c.idempotency_key == key)
        ).first()


def _age(p: LocalPlatform, api_key: str, key: str, seconds: float, **values) -> None:
    t = idempotency_keys
    with p.db.write() as conn:
        conn.execute(
            t.update()
            .where(t.c.key_hash == hash_key(api_key), t.c.idempotency_key == key)
            .values(created_at=time.time() - seconds, **values)
        )


def test_same_key_same_body_replays_the_stored_response_once(customer) -> None:
    p, api_key, h = customer
    start = _balance(p, h)
    first = _post(p, h, "topup-1", {"amount": 12.5, "payment_method": "card"})
    assert first.status_code == 201
    again = _post(p, h, "topup-1", {"amount": 12.5, "payment_method": "card"})
    assert again.status_code == 201 and again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert _balance(p, h) == start + 1250 and _payments(p, api_key) == 1
    # the client's retry of a POST (same Idempotency-Key) creates one project, not two
    with cynaps.Client(api_key=api_key, base_url=p.base_url, max_retries=0) as client:
        body = {"name": "once", "labels": ["a", "b"]}
        first = client._transport.request("POST", "/v1/projects", json=body, idempotency_key="c1")
        again = client._transport.request("POST", "/v1/projects", json=body, idempotency_key="c1")
        assert first["id"] == again["id"]
        assert [x.id for x in client.projects.list()].count(first["id"]) == 1
    # errors are stored too: the same refused request gives the same answer
    bad = _post(p, h, "topup-2", {"amount": -1, "payment_method": "card"})
    assert (
        bad.status_code == 422
        and _post(p, h, "topup-2", {"amount": -1, "payment_method": "card"}).content == bad.content
    )


def test_same_key_other_body_is_a_clear_error_and_applies_nothing(customer) -> None:
    p, api_key, h = customer
    assert _post(p, h, "k", {"amount": 1, "payment_method": "card"}).status_code == 201
    before = _balance(p, h)
    other = _post(p, h, "k", {"amount": 1000, "payment_method": "card"})
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused" and "different request" in error["message"]
    other_path = _post(p, h, "k", {"amount": 1, "payment_method": "card"}, path="/v1/projects")
    assert other_path.json()["error"]["code"] == "idempotency_key_reused"
    assert _balance(p, h) == before and _payments(p, api_key) == 1
    # the client surfaces it as IdempotencyError
    with (
        cynaps.Client(api_key=api_key, base_url=p.base_url, max_retries=0) as client,
        pytest.raises(IdempotencyError, match="different request"),
    ):
        client._transport.request(
            "POST", TOPUP, json={"amount": 2, "payment_method": "card"}, idempotency_key="k"
        )


def test_keys_are_scoped_to_the_api_key(customer, backend_platform: LocalPlatform) -> None:
    p, _, h = customer
    other = {"Authorization": f"Bearer {backend_platform.create_customer()}"}
    a = _post(p, h, "shared", {"amount": 3, "payment_method": "card"})
    b = _post(p, other, "shared", {"amount": 3, "payment_method": "card"})
    assert a.status_code == b.status_code == 201
    assert (
        a.json()["account_id"] != b.json()["account_id"] and "Idempotent-Replayed" not in b.headers
    )


def test_keys_are_kept_24_hours_then_forgotten(customer) -> None:
    p, api_key, h = customer
    body = {"amount": 2, "payment_method": "card"}
    first = _post(p, h, "day-old", body)
    _age(p, api_key, "day-old", 23.9 * 3600)
    kept = _post(p, h, "day-old", body)
    assert kept.headers.get("Idempotent-Replayed") == "true" and kept.content == first.content
    assert _payments(p, api_key) == 1
    _age(p, api_key, "day-old", 24 * 3600 + 5)
    fresh = _post(p, h, "day-old", body)
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"] and _payments(p, api_key) == 2


def test_concurrent_requests_with_one_key_are_applied_once(customer) -> None:
    p, api_key, h = customer
    start = _balance(p, h)
    body = {"amount": 7, "payment_method": "card"}
    barrier = threading.Barrier(12)
    results: list[requests.Response] = []

    def fire() -> None:
        barrier.wait()
        results.append(_post(p, h, "race", body))

    threads = [threading.Thread(target=fire) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in results if r.status_code == 201]
    assert created and len({r.content for r in created}) == 1  # originals and replays agree
    for r in results:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_key_in_use"
    assert _balance(p, h) == start + 700 and _payments(p, api_key) == 1
    # once settled, every retry gets the stored answer
    assert _post(p, h, "race", body).content == created[0].content


def test_abandoned_attempt_is_rerun_only_if_nothing_committed(customer) -> None:
    p, api_key, h = customer
    body = {"amount": 4, "payment_method": "card"}
    takeover = p.settings.idempotency_takeover_seconds
    # an attempt in flight, recently started: the retry must wait
    assert _post(p, h, "crash", body).status_code == 201
    _age(p, api_key, "crash", 1, status_code=None, response_body=None, committed=False)
    assert _post(p, h, "crash", body).json()["error"]["code"] == "idempotency_key_in_use"
    # the same attempt long dead, none of its writes committed: the retry runs it (once)
    _age(p, api_key, "crash", takeover + 1, status_code=None, response_body=None, committed=False)
    rerun = _post(p, h, "crash", body)
    assert rerun.status_code == 201 and _payments(p, api_key) == 2  # the first payment + the re-run
    # long dead but its writes committed (crash before the response was stored): never re-run
    _age(p, api_key, "crash", takeover + 1, status_code=None, response_body=None, committed=True)
    lost = _post(p, h, "crash", body)
    assert lost.status_code == 409 and lost.json()["error"]["code"] == "idempotency_response_lost"
    assert "Do not repeat it" in lost.json()["error"]["message"] and _payments(p, api_key) == 2


def test_a_superseded_attempt_cannot_commit(customer) -> None:
    """Writes made under a claim whose token was taken over roll back (the fencing token)."""
    p, api_key, h = customer
    key = f"fence-{uuid.uuid4().hex}"
    assert _post(p, h, key, {"amount": 1, "payment_method": "card"}).status_code == 201
    row = _key_row(p, api_key, key)
    stale = current_claim.set(IdempotencyClaim(hash_key(api_key), key, "not-the-current-token"))
    try:
        with pytest.raises(Problem) as caught, p.db.write() as conn:
            conn.execute(payments.delete().where(payments.c.account_id == "nobody"))
            conn.execute(
                idempotency_keys.update()
                .where(idempotency_keys.c.idempotency_key == key)
                .values(response_body=b"overwritten")
            )
        assert caught.value.code == "idempotency_key_in_use"
    finally:
        current_claim.reset(stale)
    assert _key_row(p, api_key, key).response_body == row.response_body  # rolled back
    fresh = current_claim.set(IdempotencyClaim(hash_key(api_key), key, row.claim))
    try:
        with p.db.write() as conn:  # the owning token commits and marks the key
            conn.execute(sa.select(1))
    finally:
        current_claim.reset(fresh)
    assert _key_row(p, api_key, key).committed

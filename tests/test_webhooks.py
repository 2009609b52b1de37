"""Webhooks (issue 17): Standard Webhooks signatures (checked by the ``standardwebhooks``
package), retries with the same id, 410, Retry-After, rotation, batching, the outbox and
rollback, scoping. Real platform on 127.0.0.1, real receivers over HTTP."""

from __future__ import annotations

import json
import time

import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.services import outbox
from cynaps_data.server.settings import Settings

from .conftest import make_project
from .webhook_receiver import Receiver, loopback_platform

standardwebhooks = pytest.importorskip("standardwebhooks")


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    """A platform that may deliver to loopback, with the retry schedule compressed 1000×."""
    with loopback_platform(tmp_path_factory, "hooks") as running:
        yield running


@pytest.fixture
def hclient(hooks):
    with cynaps.Client(
        api_key=hooks.create_customer(), base_url=hooks.base_url, max_retries=0
    ) as c:
        yield c


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def events(received, kind=None):
    out = [json.loads(body) for _, _, body in received]
    return [e for e in out if kind is None or e["type"] == kind]


def test_ping_is_signed_as_standard_webhooks_says(hclient, receiver):
    endpoint = hclient.webhooks.create_endpoint(receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    assert "secret" not in hclient.webhooks.get_endpoint(endpoint["id"])  # shown once
    message = hclient.webhooks.send_test(endpoint["id"])
    _, headers, body = receiver.wait_for(1)[0]
    assert headers["webhook-id"] == message["message_id"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    assert headers["webhook-signature"].startswith("v1,")
    theirs = standardwebhooks.Webhook(endpoint["secret"]).verify(body, headers)
    ours = cynaps.webhooks.verify(body, headers, endpoint["secret"])
    assert theirs == ours
    assert ours["type"] == "ping" and ours["data"]["endpoint_id"] == endpoint["id"]
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(cynaps.webhooks.new_secret()).verify(body, headers)


def test_our_verify_accepts_theirs_and_rejects_tampering():
    secret = cynaps.webhooks.new_secret()
    body = json.dumps({"type": "ping", "timestamp": "x", "data": {}})
    now = int(time.time())
    from datetime import datetime, timezone

    sig = standardwebhooks.Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(now, timezone.utc), body
    )
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(now), "Webhook-Signature": sig}
    assert cynaps.webhooks.verify(body, headers, secret)["type"] == "ping"
    with pytest.raises(errors.WebhookVerificationError) as bad:
        cynaps.webhooks.verify(body + " ", headers, secret)
    assert bad.value.code == "bad_signature"
    with pytest.raises(errors.WebhookVerificationError) as stale:
        cynaps.webhooks.verify(body, headers, secret, now=now + 301)
    assert stale.value.code == "stale_timestamp" and "Stale" in str(stale.value)
    with pytest.raises(errors.WebhookVerificationError, match="webhook-signature"):
        cynaps.webhooks.verify(body, {"webhook-id": "m", "webhook-timestamp": "1"}, secret)


def test_500_twice_then_200_is_three_deliveries_with_one_id(hclient):
    r = Receiver([(500, {}), (500, {})])
    try:
        endpoint = hclient.webhooks.create_endpoint(r.url)
        hclient.webhooks.send_test(endpoint["id"])
        got = r.wait_for(3)
        time.sleep(0.5)
        assert len(r.received) == 3
        assert len({h["webhook-id"] for _, h, _ in got}) == 1
        log = hclient.webhooks.attempts(endpoint["id"])
        assert [(a["attempt"], a["status_code"]) for a in reversed(log)] == [  # noqa
            (1, 500),
            (2, 500),
            (3, 200),
        ]
        assert all(a["latency_ms"] >= 0 and a["response"] for a in log)
        (delivery,) = hclient.webhooks.deliveries(endpoint["id"])
        assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
        # manual redelivery: the same message id once more
        hclient.webhooks.redeliver(endpoint["id"], delivery["message_id"])
        assert r.wait_for(4)[3][1]["webhook-id"] == delivery["message_id"]
    finally:
        r.close()


def test_retry_after_is_honoured(hclient):
    r = Receiver([(503, {"Retry-After": "1"})])
    try:
        endpoint = hclient.webhooks.create_endpoint(r.url)
        hclient.webhooks.send_test(endpoint["id"])
        (t1, _, _), (t2, _, _) = r.wait_for(2)
        assert t2 - t1 >= 0.9  # the schedule alone would retry after 5 ms here
    finally:
        r.close()


def test_410_disables_the_endpoint_and_says_so(hclient, receiver):
    gone = Receiver([(410, {})])
    try:
        watcher = hclient.webhooks.create_endpoint(
            receiver.url, events=["webhook.endpoint_disabled"]
        )
        endpoint = hclient.webhooks.create_endpoint(gone.url)
        hclient.webhooks.send_test(endpoint["id"])
        gone.wait_for(1)
        notice = events(receiver.wait_for(1), "webhook.endpoint_disabled")[0]
        assert notice["data"]["endpoint_id"] == endpoint["id"]
        assert "410" in notice["data"]["reason"]
        state = hclient.webhooks.get_endpoint(endpoint["id"])
        assert state["disabled"] and "410" in state["disabled_reason"]
        with pytest.raises(errors.ConflictError, match="disabled"):
            hclient.webhooks.send_test(endpoint["id"])
        assert watcher["events"] == ["webhook.endpoint_disabled"]
    finally:
        gone.close()


def test_exhausting_the_schedule_disables(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        webhook_allow_loopback=True,
        webhook_retry_scale=0.00001,  # the whole 3-day schedule in 2.7 s
        webhook_poll_seconds=0.01,
    )
    dead = Receiver([(500, {})] * 20)
    with (
        LocalPlatform(settings=settings, workforce=False) as p,
        cynaps.Client(api_key=p.create_customer(), base_url=p.base_url, max_retries=0) as c,
    ):
        try:
            endpoint = c.webhooks.create_endpoint(dead.url)
            c.webhooks.send_test(endpoint["id"])
            dead.wait_for(10, timeout=30)  # the first attempt and 9 retries
            deadline = time.monotonic() + 10
            while not c.webhooks.get_endpoint(endpoint["id"])["disabled"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.2)
            assert len(dead.received) == 10
            reason = c.webhooks.get_endpoint(endpoint["id"])["disabled_reason"]
            assert "every attempt failed" in reason
            assert c.webhooks.deliveries(endpoint["id"])[0]["status"] == "failed"
        finally:
            dead.close()


def test_rotation_sends_both_signatures_during_grace(hclient, receiver):
    endpoint = hclient.webhooks.create_endpoint(receiver.url)
    rotated = hclient.webhooks.rotate_secret(endpoint["id"], grace_seconds=3600)
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"]
    hclient.webhooks.send_test(endpoint["id"])
    _, headers, body = receiver.wait_for(1)[0]
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (endpoint["secret"], rotated["secret"]):
        standardwebhooks.Webhook(secret).verify(body, headers)
        cynaps.webhooks.verify(body, headers, secret)
    again = hclient.webhooks.rotate_secret(endpoint["id"], grace_seconds=0)
    hclient.webhooks.send_test(endpoint["id"])
    _, headers, body = receiver.wait_for(2)[1]
    assert len(headers["webhook-signature"].split()) == 1
    cynaps.webhooks.verify(body, headers, again["secret"])
    with pytest.raises(errors.WebhookVerificationError):
        cynaps.webhooks.verify(body, headers, rotated["secret"])


def test_project_events_and_batched_task_events(hooks, hclient, receiver):
    """State changes with old and new state, deposit paid, then one message with many task ids
    (a relay pass batches the tasks.finalised events of one project)."""
    from .test_platform_flow import Person

    project = make_project(
        hclient, quality_settings={"min_annotators": 1, "consensus_threshold": 0.5}
    )
    hclient.webhooks.create_endpoint(receiver.url, project_id=project.id)
    project.upload_tasks([{"data": {"i": i}, "external_id": f"t{i}"} for i in range(40)])
    project.calculate_deposit()
    project.pay_deposit(payment_method="card")
    project.start()
    person = Person(hooks, name="Webhook annotator")
    while (task := person.next(project.id)) is not None:
        assert person.submit(task["task_id"], "Other").status_code == 201
    project.export(format="json")  # releases results
    deadline = time.monotonic() + 20
    while True:
        got = events(receiver.received)
        ids = [i for e in got if e["type"] == "tasks.finalised" for i in e["data"]["task_ids"]]
        states = [
            (e["data"]["old_state"], e["data"]["new_state"])
            for e in got
            if e["type"] == "project.state_changed"
        ]
        kinds = {e["type"] for e in got}
        if len(ids) >= 40 and ("active", "completed") in states and "results.released" in kinds:
            break
        assert time.monotonic() < deadline, (kinds, states, len(ids))
        time.sleep(0.05)
    assert sorted(set(ids)) == sorted(ids) and len(ids) == 40
    assert ("draft", "pending_deposit") in states and ("pending_deposit", "active") in states
    assert {"deposit.paid", "deposit.refunded"} <= kinds
    paid = next(e for e in got if e["type"] == "deposit.paid")["data"]
    assert paid["project_id"] == project.id and paid["currency"] == "Credits"
    assert all(e["data"]["project_id"] == project.id for e in got)


def test_many_task_events_become_few_messages(hooks, hclient, receiver):
    project = make_project(hclient)
    endpoint = hclient.webhooks.create_endpoint(receiver.url, events=["tasks.disputed"])
    account = hclient.me()["id"]
    with hooks.db.write() as conn:  # 2,500 decisions committed together
        for task_id in range(2500):
            outbox.task_decided(conn, account, project.id, task_id, "disputed")
            outbox.task_decided(conn, account, project.id, task_id, "completed")  # filtered out
    got = receiver.wait_for(3)
    time.sleep(0.3)
    batches = events(receiver.received)
    assert [e["type"] for e in batches] == ["tasks.disputed"] * 3
    assert sorted(i for e in batches for i in e["data"]["task_ids"]) == list(range(2500))
    assert max(e["data"]["count"] for e in batches) == 1000
    assert len(hclient.webhooks.deliveries(endpoint["id"])) == 3 == len(got)


def test_an_event_of_a_rolled_back_change_is_never_sent(hooks, hclient, receiver):
    project = make_project(hclient)
    hclient.webhooks.create_endpoint(receiver.url)
    account = hclient.me()["id"]
    with pytest.raises(RuntimeError), hooks.db.write() as conn:
        outbox.emit(conn, account, "deposit.paid", {"project_id": project.id}, project.id)
        raise RuntimeError("the change fails after its event was written")
    # and a real failed call: starting without a deposit is a 409 that changes nothing
    with pytest.raises(errors.InvalidStateError):
        project.start()
    with hooks.db.write() as conn:  # a committed marker after both
        outbox.emit(conn, account, "results.released", {"project_id": project.id}, project.id)
    receiver.wait_for(1)
    time.sleep(0.3)
    assert [e["type"] for e in events(receiver.received)] == ["results.released"]


def test_endpoints_are_scoped_to_their_account(hooks, hclient, receiver):
    endpoint = hclient.webhooks.create_endpoint(receiver.url)
    with cynaps.Client(
        api_key=hooks.create_customer(), base_url=hooks.base_url, max_retries=0
    ) as other:
        for call in (
            lambda: other.webhooks.get_endpoint(endpoint["id"]),
            lambda: other.webhooks.send_test(endpoint["id"]),
            lambda: other.webhooks.attempts(endpoint["id"]),
            lambda: other.webhooks.delete_endpoint(endpoint["id"]),
        ):
            with pytest.raises(errors.NotFoundError):
                call()
        assert other.webhooks.list_endpoints() == []
        project = make_project(hclient)
        with pytest.raises(errors.NotFoundError):
            other.webhooks.create_endpoint(receiver.url, project_id=project.id)
    with pytest.raises(errors.ValidationError, match="Unknown event type"):
        hclient.webhooks.create_endpoint(receiver.url, events=["task.done"])


def test_secrets_are_stored_encrypted_with_a_private_key_file(hooks, hclient, receiver):
    import os
    import sqlite3
    import stat

    from cynaps_data.server.secretbox import key_path

    endpoint = hclient.webhooks.create_endpoint(receiver.url)
    path = key_path(hooks.settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    db = sqlite3.connect(hooks.db.url.removeprefix("sqlite:///"))
    (stored,) = db.execute(
        "SELECT secret_enc FROM webhook_endpoints WHERE id = ?", (endpoint["id"],)
    ).fetchone()
    dump = "\n".join(db.iterdump())
    secret_body = endpoint["secret"].removeprefix("whsec_")
    assert secret_body not in dump and stored.startswith("v1:")


def test_the_local_setting_is_visible_in_the_api(hclient, client):
    assert hclient.webhooks.settings()["allow_loopback"] is True
    plain = client.webhooks.settings()
    assert plain["allow_loopback"] is False and plain["https_only"] is False
    assert plain["retry_schedule_seconds"][0] == 5 and plain["retry_schedule_seconds"][-1] == 86400


def test_http_api_answers_401_before_reading_bodies(hooks):
    r = requests.post(hooks.base_url + "/v1/webhooks/endpoints", data=b"{not json", timeout=10)
    assert r.status_code == 401


def test_the_example_receiver_verifies_and_dedupes(hclient, tmp_path, capsys):
    """docs/examples/webhook_receiver.py: a retried message (same webhook-id) is handled once."""
    import importlib.util
    import sqlite3
    import threading
    from http.server import ThreadingHTTPServer
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "webhook_receiver.py"
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    handled: list[dict] = []
    example.handle = handled.append
    store = sqlite3.connect(tmp_path / "seen.db", check_same_thread=False)
    store.execute("CREATE TABLE seen (id TEXT PRIMARY KEY)")
    endpoint_secret = cynaps.webhooks.new_secret()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), example.make_handler(endpoint_secret, store, threading.Lock())
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        endpoint = hclient.webhooks.create_endpoint(url)
        # the platform signs with its own secret: the receiver refuses it (400) …
        hclient.webhooks.send_test(endpoint["id"])
        deadline = time.monotonic() + 10
        while not (log := hclient.webhooks.attempts(endpoint["id"])):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert log[0]["status_code"] == 400 and handled == []
        # … and with the right secret, twice the same id is processed once
        body = json.dumps({"type": "ping", "timestamp": "t", "data": {"n": 1}}).encode()
        stamp = int(time.time())
        headers = {
            "webhook-id": "msg_same",
            "webhook-timestamp": str(stamp),
            "webhook-signature": cynaps.webhooks.sign("msg_same", stamp, body, endpoint_secret),
        }
        for _ in range(2):
            assert requests.post(url, data=body, headers=headers, timeout=10).status_code == 200
        assert [e["data"] for e in handled] == [{"n": 1}]
    finally:
        server.shutdown()


def test_postgresql_two_platforms_deliver_each_message_once_per_attempt(tmp_path):
    """Two platforms (own engines, own workers) on one PostgreSQL database: every event is
    delivered, retries keep their id, and the two workers never both send one attempt."""
    from cynaps_data.server.db import database_url

    from .conftest import fresh_postgres_database

    r = Receiver([(500, {})])
    with fresh_postgres_database("cynaps_hooks") as raw_url:
        url = database_url(raw_url)

        def settings() -> Settings:
            return Settings(
                database_url=url,
                webhook_allow_loopback=True,
                webhook_retry_scale=0.001,
                webhook_poll_seconds=0.01,
                platform_key_file=str(tmp_path / "platform.key"),  # shared by both
            )

        try:
            with (
                LocalPlatform(settings=settings(), workforce=False) as one,
                LocalPlatform(settings=settings(), workforce=False) as two,
            ):
                key = one.create_customer()
                c = cynaps.Client(api_key=key, base_url=two.base_url, max_retries=0)
                endpoint = c.webhooks.create_endpoint(r.url)
                first = c.webhooks.send_test(endpoint["id"])["message_id"]
                project = make_project(c)
                project.upload_tasks([{"text": "a"}])
                project.calculate_deposit()
                project.pay_deposit(payment_method="credits")
                got = r.wait_for(4)  # ping twice (500, then 200), state change, deposit.paid
                time.sleep(0.5)
                ids = [h["webhook-id"] for _, h, _ in r.received]
                assert ids.count(first) == 2 and len(r.received) == 4
                assert sorted(e["type"] for e in events(got)) == [
                    "deposit.paid",
                    "ping",
                    "ping",
                    "project.state_changed",
                ]
                for _, headers, body in got:
                    standardwebhooks.Webhook(endpoint["secret"]).verify(body, headers)
        finally:
            r.close()

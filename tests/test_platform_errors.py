"""Every error class from a real server response, retries, idempotency, isolation, bad batches."""

from __future__ import annotations

import sqlite3
import time

import pytest

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data._http import parse_retry_after
from cynaps_data.server.platform import LocalPlatform

from .conftest import make_project


def task_count(platform: LocalPlatform, project_id: str) -> int:
    with sqlite3.connect(platform.db.url.removeprefix("sqlite:///")) as conn:
        return conn.execute(
            "SELECT count(*) FROM tasks WHERE project_id = ?", (project_id,)
        ).fetchone()[0]


def test_wrong_key_is_authentication_error_with_request_id(platform):
    client = cynaps.Client(api_key="sk_test_wrong", base_url=platform.base_url)
    with pytest.raises(errors.AuthenticationError, match="Invalid API key") as info:
        client.projects.list()
    assert info.value.status == 401
    assert info.value.code == "invalid_api_key"
    assert info.value.request_id.startswith("req_")


def test_not_found_validation_and_invalid_state(client):
    with pytest.raises(errors.NotFoundError) as info:
        client.projects.get("proj_doesnotexist")
    assert info.value.status == 404 and isinstance(info.value, LookupError)
    with pytest.raises(errors.ValidationError, match="labels") as info:
        client.projects.create(name="x", labels=[])
    assert info.value.param == "labels"
    with pytest.raises(errors.ValidationError, match="min_annotators"):
        client.projects.create(name="x", labels=["a"], quality_settings={"min_annotators": 0})
    with pytest.raises(errors.ValidationError, match="Unknown quality setting 'colour'"):
        client.projects.create(name="x", labels=["a"], quality_settings={"colour": 1})
    project = make_project(client)
    with pytest.raises(errors.InvalidStateError, match="Next step") as info:
        project.start()
    assert info.value.status == 409 and info.value.code == "invalid_state"


def test_permission_denied_for_wrong_role(platform, annotator_key):
    annotator = cynaps.Client(api_key=annotator_key(), base_url=platform.base_url)
    with pytest.raises(errors.PermissionDeniedError) as info:
        annotator._transport.request("GET", "/v1/review/next")
    assert info.value.status == 403


def test_insufficient_credits_and_declined_payment(client):
    project = make_project(client)
    # 300 tasks x (3 x 15.00 + 5.00) = 15,000.00 > the sandbox's 10,000.00 starting credits
    project.upload_tasks([{"n": i} for i in range(300)])
    assert project.calculate_deposit().amount == "15000.00"
    with pytest.raises(errors.InsufficientCreditsError, match="Not enough credits") as info:
        project.pay_deposit(payment_method="credits")
    assert info.value.status == 402
    with pytest.raises(errors.PaymentDeclinedError, match="declined"):
        project.pay_deposit(payment_method="test_decline")
    with pytest.raises(errors.ValidationError, match="Unknown payment_method"):
        project.pay_deposit(payment_method="bitcoin")
    assert client.balance()["available"] == "10000.00"  # nothing moved
    payment = project.pay_deposit(payment_method="razorpay")
    assert payment.livemode is False and payment.amount == "15000.00"


def test_server_error_connection_error_and_timeout(tmp_path):
    with LocalPlatform(tmp_path / "broken.db", workforce=False) as broken:
        client = cynaps.Client(
            api_key=broken.create_customer(), base_url=broken.base_url, max_retries=1
        )
        with sqlite3.connect(tmp_path / "broken.db") as conn:
            conn.execute("DROP TABLE projects")
        with pytest.raises(errors.ServerError) as info:
            client.projects.list()
        assert info.value.status == 500 and info.value.code == "internal_error"
    closed = cynaps.Client(api_key="sk_test_x", base_url=broken.base_url, max_retries=0)
    with pytest.raises(errors.APIConnectionError, match="Could not connect"):
        closed.projects.list()


def test_timeout_is_api_timeout_error(platform):
    client = cynaps.Client(
        api_key=platform.create_customer(), base_url=platform.base_url, max_retries=0, timeout=1e-6
    )
    with pytest.raises(errors.APITimeoutError, match="timed out"):
        client.projects.list()


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("100000") == 60.0  # capped
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after(future) <= 31
    assert parse_retry_after("soon") is None


def test_another_accounts_project_is_404_everywhere(platform, client):
    project = make_project(client)
    project.upload_tasks([{"x": 1}])
    other = cynaps.Client(
        api_key=platform.create_customer("Other"), base_url=platform.base_url, max_retries=0
    )
    calls = [
        ("GET", f"/v1/projects/{project.id}", None),
        ("GET", f"/v1/projects/{project.id}/status", None),
        ("GET", f"/v1/projects/{project.id}/export", None),
        ("POST", f"/v1/projects/{project.id}/tasks/batch", {"tasks": [{"data": {"x": 2}}]}),
        ("POST", f"/v1/projects/{project.id}/deposit/quote", None),
        ("POST", f"/v1/projects/{project.id}/deposit/pay", {"payment_method": "card"}),
        ("POST", f"/v1/projects/{project.id}/start", None),
        ("POST", f"/v1/projects/{project.id}/cancel", None),
    ]
    for method, path, body in calls:
        with pytest.raises(errors.NotFoundError):
            other._transport.request(method, path, json=body)
    assert other.projects.list() == []
    assert task_count(platform, project.id) == 1
    assert client.projects.get(project.id).state == "draft"


def test_reupload_with_same_external_ids_adds_nothing(platform, client):
    project = make_project(client)
    tasks = [{"data": {"text": f"t{i}"}, "external_id": f"id-{i}"} for i in range(50)]
    first = project.upload_tasks(tasks, batch_size=20)
    assert (first.task_count, first.created, first.duplicates, first.batches) == (50, 50, 0, 3)
    again = project.upload_tasks(tasks + [{"data": {"text": "new"}, "external_id": "id-new"}])
    assert (again.created, again.duplicates, again.project_task_count) == (1, 50, 51)
    assert task_count(platform, project.id) == 51


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tasks": "nope"}, "must be a JSON list"),
        ([1, 2], r"tasks\[10\]: each task must be an object"),
        ([{"data": {"a": 1}}, {"data": "text"}], r"tasks\[11\].data: 'data' must be an object"),
        ([{"data": {"a": 1}, "colour": "red"}], r"tasks\[10\].colour: unknown field 'colour'"),
        (
            [{"data": {"a": 1}, "gold": "Spaceships"}],
            r"tasks\[10\].gold: label 'Spaceships' is not one",
        ),
        ([{"data": {"a": 1}, "external_id": ""}], r"tasks\[10\].external_id"),
        ({"tasks": [], "extra": 1}, "Unknown field 'extra'"),
    ],
)
def test_malformed_batches_are_rejected_whole(platform, client, body, message):
    project = make_project(client)
    good = [{"data": {"ok": i}} for i in range(10)]
    payload = body if not isinstance(body, list) else good + body
    with pytest.raises(errors.ValidationError, match=message):
        client._transport.request("POST", f"/v1/projects/{project.id}/tasks/batch", json=payload)
    assert task_count(platform, project.id) == 0


def test_oversized_batch_and_invalid_json(platform, client):
    project = make_project(client)
    limit = platform.settings.max_batch_tasks
    with pytest.raises(errors.ValidationError, match=f"at most {limit} tasks") as info:
        client._transport.request(
            "POST", f"/v1/projects/{project.id}/tasks/batch", json=[{"data": {}}] * (limit + 1)
        )
    assert info.value.status == 413
    with pytest.raises(errors.ValidationError, match="not valid JSON"):
        client._transport.request(
            "POST",
            f"/v1/projects/{project.id}/tasks/batch",
            content=b"[{",
            content_type="application/json",
        )
    assert task_count(platform, project.id) == 0


def test_client_rejects_non_dict_tasks_before_sending(client):
    project = make_project(client)
    with pytest.raises(errors.ValidationError, match=r"tasks\[1\] must be a dict"):
        project.upload_tasks([{"a": 1}, "b"])
    with pytest.raises(errors.ValidationError, match="not a single dict"):
        project.upload_tasks({"a": 1})


def test_escaped_keys_get_the_same_checks(platform, client):
    """A key written with \\u escapes is the same key: gold is still validated and kept."""
    project = make_project(client)
    path = f"/v1/projects/{project.id}/tasks/batch"
    bad = b'[{"data": {"a": 1}}, {"data": {"a": 2}, "\\u0067old": "Spaceships"}]'
    with pytest.raises(errors.ValidationError, match=r"tasks\[1\].gold: label 'Spaceships'"):
        client._transport.request("POST", path, content=bad, content_type="application/json")
    assert task_count(platform, project.id) == 0
    good = b'[{"data": {"a": 1}}, {"data": {"a": 2}, "\\u0067old": "Sports"}]'
    assert (
        client._transport.request("POST", path, content=good, content_type="application/json")[
            "created"
        ]
        == 2
    )
    with sqlite3.connect(platform.db.url.removeprefix("sqlite:///")) as conn:
        golds = conn.execute(
            "SELECT gold FROM tasks WHERE project_id = ? ORDER BY id", (project.id,)
        ).fetchall()
    assert golds == [(None,), ('"Sports"',)]

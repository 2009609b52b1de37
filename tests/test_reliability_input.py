"""Bad input everywhere gets a 4xx with a clear message and changes nothing (SQLite and PostgreSQL).

Each case is a real HTTP request with a broken body, query or path; after each one the
customer's projects, tasks, balance and ledger are exactly as before.
"""

from __future__ import annotations

import json

import pytest
import requests

from cynaps_data.server.db import database_url
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings

JSON = {"Content-Type": "application/json"}


def _deep(depth: int) -> bytes:
    return b'{"name": "x", "labels": ["a"], "instructions": ' + b"[" * depth + b"]" * depth + b"}"


def _project(name="Bad input", **extra) -> bytes:
    return json.dumps({"name": name, "labels": ["a", "b"], **extra}).encode()


# (description, method, path template, raw body, expected status, words the message must contain)
CASES = [
    ("invalid JSON", "POST", "/v1/projects", b'{"name": "x",', 400, ["not valid JSON"]),
    (
        "invalid UTF-8",
        "POST",
        "/v1/projects",
        b'{"name": "\xff\xfe", "labels": ["a"]}',
        400,
        ["UTF-8"],
    ),
    (
        "lone surrogate",
        "POST",
        "/v1/projects",
        b'{"name": "\\ud800", "labels": ["a"]}',
        400,
        ["surrogate"],
    ),
    ("deep nesting", "POST", "/v1/projects", _deep(5000), 400, ["depth"]),
    (
        "NaN literal",
        "POST",
        "/v1/projects",
        b'{"name": "x", "labels": ["a"], "quality_settings": {"consensus_threshold": NaN}}',
        400,
        ["JSON"],
    ),
    ("NUL in text", "POST", "/v1/projects", _project("a\u0000b"), 422, ["body.name", "NUL"]),
    ("body is a list", "POST", "/v1/projects", b"[1, 2]", 422, ["object"]),
    ("body is null", "POST", "/v1/projects", b"null", 422, ["object"]),
    (
        "wrong type name",
        "POST",
        "/v1/projects",
        json.dumps({"name": 5, "labels": ["a"]}).encode(),
        422,
        ["name"],
    ),
    ("unknown field", "POST", "/v1/projects", _project(colour="red"), 422, ["colour"]),
    (
        "huge labels list",
        "POST",
        "/v1/projects",
        json.dumps({"name": "x", "labels": [f"l{i}" for i in range(200_000)]}).encode(),
        422,
        ["labels", "1000"],
    ),
    (
        "label too long",
        "POST",
        "/v1/projects",
        json.dumps({"name": "x", "labels": ["x" * 5000]}).encode(),
        422,
        ["labels[0]"],
    ),
    (
        "duplicate labels",
        "POST",
        "/v1/projects",
        json.dumps({"name": "x", "labels": ["a", "a"]}).encode(),
        422,
        ["labels[1]"],
    ),
    (
        "negative annotators",
        "POST",
        "/v1/projects",
        _project(quality_settings={"min_annotators": -1}),
        422,
        ["min_annotators"],
    ),
    (
        "huge integer",
        "POST",
        "/v1/projects",
        b'{"name": "x", "labels": ["a"], "quality_settings": {"min_annotators": 99999999999999999999999}}',
        422,
        ["min_annotators"],
    ),
    (
        "threshold over 1",
        "POST",
        "/v1/projects",
        _project(quality_settings={"consensus_threshold": 1.5}),
        422,
        ["consensus_threshold"],
    ),
    (
        "bool as number",
        "POST",
        "/v1/projects",
        _project(quality_settings={"min_annotators": True}),
        422,
        ["min_annotators"],
    ),
    (
        "tasks not a list",
        "POST",
        "/v1/projects/{pid}/tasks/batch",
        b'{"tasks": {"a": 1}}',
        422,
        ["list"],
    ),
    (
        "task not an object",
        "POST",
        "/v1/projects/{pid}/tasks/batch",
        b'{"tasks": [{"data": {"a": 1}}, 7]}',
        422,
        ["tasks[1]"],
    ),
    (
        "task data wrong type",
        "POST",
        "/v1/projects/{pid}/tasks/batch",
        b'{"tasks": [{"data": "text"}]}',
        422,
        ["tasks[0].data"],
    ),
    (
        "bad gold label",
        "POST",
        "/v1/projects/{pid}/tasks/batch",
        b'{"tasks": [{"data": {"a": 1}}, {"data": {"a": 2}, "gold": "zzz"}]}',
        422,
        ["tasks[1].gold"],
    ),
    (
        "float external id",
        "POST",
        "/v1/projects/{pid}/tasks/batch",
        b'{"tasks": [{"data": {"a": 1}, "external_id": 1.5}]}',
        422,
        ["tasks[0].external_id"],
    ),
    (
        "unknown task key",
        "POST",
        "/v1/projects/{pid}/tasks/batch",
        b'{"tasks": [{"data": {"a": 1}, "label": "a"}]}',
        422,
        ["tasks[0]", "label"],
    ),
    (
        "negative top-up",
        "POST",
        "/v1/billing/topups",
        b'{"amount": -5, "payment_method": "card"}',
        422,
        ["amount"],
    ),
    (
        "infinite top-up",
        "POST",
        "/v1/billing/topups",
        b'{"amount": 1e308, "payment_method": "card"}',
        422,
        ["amount"],
    ),
    (
        "string top-up",
        "POST",
        "/v1/billing/topups",
        b'{"amount": "lots", "payment_method": "card"}',
        422,
        ["amount"],
    ),
    (
        "list payment method",
        "POST",
        "/v1/billing/topups",
        b'{"amount": 5, "payment_method": ["card"]}',
        422,
        ["payment_method"],
    ),
    (
        "unknown payment method",
        "POST",
        "/v1/projects/{pid}/deposit/pay",
        b'{"payment_method": "gold bars"}',
        422,
        ["payment_method"],
    ),
    ("no payment method", "POST", "/v1/projects/{pid}/deposit/pay", b"{}", 422, ["payment_method"]),
    ("limit not a number", "GET", "/v1/projects?limit=abc", b"", 422, ["limit"]),
    ("negative limit", "GET", "/v1/projects?limit=-1", b"", 422, ["limit"]),
    ("huge offset", "GET", "/v1/projects?offset=99999999999999999999999", b"", 422, ["offset"]),
    ("unknown export format", "GET", "/v1/projects/{pid}/export?format=xls", b"", 422, ["format"]),
    (
        "huge task id",
        "POST",
        "/v1/review/tasks/99999999999999999999999/decision",
        b'{"label": "a"}',
        (403, 404, 422),
        [],
    ),
    (
        "unknown project",
        "POST",
        "/v1/projects/proj_nope/tasks/batch",
        b'{"tasks": [{"data": {"a": 1}}]}',
        404,
        ["proj_nope"],
    ),
]


@pytest.fixture(scope="module")
def customer(backend_platform: LocalPlatform) -> tuple[str, dict, str]:
    key = backend_platform.create_customer("Bad input")
    headers = {"Authorization": f"Bearer {key}"}
    project = requests.post(
        backend_platform.base_url + "/v1/projects",
        headers=headers,
        timeout=30,
        json={"name": "Target", "labels": ["a", "b"]},
    ).json()
    requests.post(
        backend_platform.base_url + f"/v1/projects/{project['id']}/tasks/batch",
        headers=headers,
        json={"tasks": [{"data": {"a": i}, "external_id": str(i)} for i in range(3)]},
        timeout=30,
    )
    return backend_platform.base_url, headers, project["id"]


def _state(base: str, headers: dict) -> tuple:
    projects = requests.get(base + "/v1/projects", headers=headers, timeout=30).json()["data"]
    balance = requests.get(base + "/v1/billing/balance", headers=headers, timeout=30).json()
    ledger = requests.get(base + "/v1/billing/ledger", headers=headers, timeout=30).json()["data"]
    return (
        sorted((p["id"], p["state"], p["task_count"], json.dumps(p["labels"])) for p in projects),
        balance["available_cents"],
        len(ledger),
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(customer, case) -> None:
    base, headers, pid = customer
    _, method, path, body, status, words = case
    before = _state(base, headers)
    response = requests.request(
        method,
        base + path.format(pid=pid),
        data=body or None,
        headers={**headers, **JSON},
        timeout=60,
    )
    expected = status if isinstance(status, tuple) else (status,)
    assert response.status_code in expected, response.text[:300]
    error = response.json()["error"]
    assert error["message"] and error["code"] and error["type"]
    for word in words:
        assert word in error["message"], (word, error)
    assert response.headers["X-Request-Id"].startswith("req_")
    assert _state(base, headers) == before


def test_oversized_bodies_are_refused_declared_or_chunked(tmp_path) -> None:
    settings = Settings(database_url=database_url(tmp_path / "small.db"), max_body_bytes=64 * 1024)
    with LocalPlatform(settings=settings, workforce=False) as p:
        headers = {"Authorization": f"Bearer {p.create_customer()}", **JSON}
        big = json.dumps({"tasks": [{"data": {"text": "x" * 1000}} for _ in range(200)]}).encode()
        pid = requests.post(
            p.base_url + "/v1/projects",
            headers=headers,
            json={"name": "x", "labels": ["a"]},
            timeout=30,
        ).json()["id"]
        url = p.base_url + f"/v1/projects/{pid}/tasks/batch"

        declared = requests.post(url, headers=headers, data=big, timeout=30)
        assert declared.status_code == 413 and "65536 bytes" in declared.json()["error"]["message"]

        def chunks():  # no Content-Length: the limit must hold while streaming
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        for extra in (
            {},
            {"Idempotency-Key": "chunked-1"},
        ):  # with and without the idempotency layer
            chunked = requests.post(url, headers={**headers, **extra}, data=chunks(), timeout=30)
            assert chunked.status_code == 413, chunked.text[:200]
            assert chunked.json()["error"]["code"] == "body_too_large"
        status = requests.get(
            p.base_url + f"/v1/projects/{pid}/status", headers=headers, timeout=30
        ).json()
        assert status["total"] == 0
        small = requests.post(
            url, headers=headers, json={"tasks": [{"data": {"t": 1}}]}, timeout=30
        )
        assert small.status_code == 201

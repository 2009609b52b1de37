"""Isolation and key handling, on SQLite and PostgreSQL (``backend_platform``).

Every route of the app is enumerated from the app itself (so a route added later is covered
without editing this file) and called by outsiders on the first customer's resources: an
anonymous caller, a second customer, and the second customer's own annotator and expert. None
may succeed, none may learn whether the resource exists (the answer matches the answer for an
id that does not exist), no response may carry the first customer's data, and nothing of the
first customer's may change.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.tables import metadata

KEY_FORMATS = {
    "customer": re.compile(r"^sk_test_[A-Za-z0-9]{32}$"),
    "annotator": re.compile(r"^ak_test_[A-Za-z0-9]{32}$"),
    "expert": re.compile(r"^ak_test_[A-Za-z0-9]{32}$"),
    "admin": re.compile(r"^admin_test_[A-Za-z0-9]{32}$"),
}
# Routes meant to be called without an API key (they take a secret of their own in the body).
PUBLIC_POSTS = {"/v1/invites/redeem"}
# Bodies valid enough to get past validation, so that the ownership check is what answers.
BODIES = {
    "/tasks/batch": {"tasks": [{"data": {"text": "intruder"}, "external_id": "intruder-1"}]},
    "/deposit/pay": {"payment_method": "credits"},
    "/judgements": {"label": "Electronics"},
    "/decision": {"label": "Electronics"},
    "/v1/projects": {"name": "Intruder", "labels": ["a", "b"]},
    "/v1/annotators": {"name": "Intruder", "role": "annotator"},
    "/v1/billing/topups": {"amount": 1, "payment_method": "card"},
}
MISSING = {
    "project_id": "proj_doesNotExist00",
    "task_id": "987654321",
    "account_id": "acct_doesNotExist00",
}


def all_routes(app) -> list[tuple[str, str, object]]:
    """``(method, path, route)`` for every route, walking included routers recursively."""
    found = []

    def walk(routes, prefix: str = "") -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included-router wrapper
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif hasattr(route, "routes") and not hasattr(route, "methods"):
                walk(route.routes, prefix + getattr(route, "path", ""))
            else:
                for method in sorted(getattr(route, "methods", None) or {"GET"}):
                    if method != "HEAD":
                        found.append((method, prefix + route.path, route))

    walk(app.router.routes)
    return found


@dataclass
class World:
    base: str
    a_key: str
    a_account: str
    a_annotator_key: str
    a_annotator: str
    project: str
    draft_project: str
    task_id: int
    markers: list[str]
    outsiders: dict[str, dict]


def _call(base: str, method: str, path: str, headers: dict, body=None) -> requests.Response:
    return requests.request(method, base + path, headers=headers, json=body, timeout=30)


@pytest.fixture(scope="module")
def world(backend_platform: LocalPlatform) -> World:
    p = backend_platform
    base = p.base_url
    marker = f"SECRET{secrets.token_hex(6)}"
    a_key = p.create_customer("Customer A")
    ha = {"Authorization": f"Bearer {a_key}"}
    me = _call(base, "GET", "/v1/me", ha).json()
    team = _call(
        base, "POST", "/v1/annotators", ha, {"name": "A's annotator", "role": "annotator"}
    ).json()
    project = _call(
        base,
        "POST",
        "/v1/projects",
        ha,
        {
            "name": f"Project {marker}",
            "labels": ["Electronics", "Other"],
            "instructions": f"Read {marker}",
            "quality_settings": {"min_annotators": 2, "enable_expert_review": True},
        },
    ).json()
    pid = project["id"]
    tasks = [
        {"data": {"text": f"{marker} item {i}"}, "external_id": f"{marker}-{i}", "gold": "Other"}
        for i in range(4)
    ]
    assert (
        _call(base, "POST", f"/v1/projects/{pid}/tasks/batch", ha, {"tasks": tasks}).status_code
        == 201
    )
    assert _call(base, "POST", f"/v1/projects/{pid}/deposit/quote", ha).status_code == 200
    assert (
        _call(
            base, "POST", f"/v1/projects/{pid}/deposit/pay", ha, {"payment_method": "credits"}
        ).status_code
        == 200
    )
    assert _call(base, "POST", f"/v1/projects/{pid}/start", ha).status_code == 200
    held = _call(
        base,
        "GET",
        f"/v1/annotator/next?project_id={pid}",
        {"Authorization": f"Bearer {team['api_key']}"},
    )
    assert held.status_code == 200, held.text
    draft = _call(
        base, "POST", "/v1/projects", ha, {"name": f"Draft {marker}", "labels": ["x", "y"]}
    ).json()

    b_key = p.create_customer("Customer B")
    hb = {"Authorization": f"Bearer {b_key}"}
    b_annotator = _call(
        base, "POST", "/v1/annotators", hb, {"name": "B's annotator", "role": "annotator"}
    ).json()
    b_expert = _call(
        base, "POST", "/v1/annotators", hb, {"name": "B's expert", "role": "expert"}
    ).json()
    outsiders = {
        "anonymous": {},
        "other customer": hb,
        "other's annotator": {"Authorization": f"Bearer {b_annotator['api_key']}"},
        "other's expert": {"Authorization": f"Bearer {b_expert['api_key']}"},
        # one character changed (a key ending in "X" stays a different key: CI once drew one)
        "malformed key": {
            "Authorization": f"Bearer {a_key[:-1]}{'Y' if a_key[-1] == 'X' else 'X'}"
        },
    }
    return World(
        base,
        a_key,
        me["id"],
        team["api_key"],
        team["id"],
        pid,
        draft["id"],
        held.json()["task_id"],
        [marker, pid, draft["id"], me["id"], team["id"]],
        outsiders,
    )


def _snapshot(w: World) -> dict:
    ha = {"Authorization": f"Bearer {w.a_key}"}
    projects = _call(w.base, "GET", "/v1/projects", ha).json()["data"]
    return {
        "projects": sorted((p["id"], p["state"], p["task_count"], p["name"]) for p in projects),
        "balance": _call(w.base, "GET", "/v1/billing/balance", ha).json()["available_cents"],
        "ledger": len(_call(w.base, "GET", "/v1/billing/ledger", ha).json()["data"]),
        "export": _call(w.base, "GET", f"/v1/projects/{w.project}/status", ha).json(),
        "team": [a["id"] for a in _call(w.base, "GET", "/v1/annotators", ha).json()["data"]],
    }


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: values.get(m.group(1), values["project_id"]), path)


def _body(path: str):
    for suffix, body in BODIES.items():
        if path.endswith(suffix):
            return body
    return {}


def _strip(response: requests.Response, values: dict[str, str]) -> tuple[int, str]:
    """Status and body with the ids the caller sent (and request ids) blanked out."""
    text = response.text
    for value in sorted(values.values(), key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "ID", text)
    return response.status_code, re.sub(r"req_\w+", "REQ", text)


def test_every_route_refuses_outsiders_and_leaks_nothing(
    world: World, backend_platform: LocalPlatform
) -> None:
    routes = [r for r in all_routes(backend_platform.app) if r[1].startswith("/v1/")]
    assert len(routes) >= 20, routes  # the enumeration really found the API
    mine = {
        "project_id": world.project,
        "task_id": str(world.task_id),
        "account_id": world.a_annotator,
    }
    before = _snapshot(world)
    checked = 0
    for method, path, _route in routes:
        has_resource = "{" in path
        for who, headers in world.outsiders.items():
            url = _fill(path, mine)
            body = _body(path) if method == "POST" else None
            response = _call(world.base, method, url, headers, body)
            where = f"{who}: {method} {url} -> {response.status_code} {response.text[:200]}"
            assert response.status_code < 500, where
            for marker in world.markers:
                if marker not in url:  # echoing the id the caller sent back is no leak
                    assert marker not in response.text, f"leaked {marker!r} to {where}"
            if who in ("anonymous", "malformed key") and path not in PUBLIC_POSTS:
                assert response.status_code == 401, where
                assert response.json()["error"]["type"] == "authentication_error", where
            if has_resource:
                assert 400 <= response.status_code < 500, where
                if method == "GET" or any(path.endswith(suffix) for suffix in BODIES):
                    # with a valid request, ownership is what answers (a route whose body we
                    # do not know may refuse it first: still 4xx and checked for an oracle)
                    assert response.status_code in (401, 403, 404, 409), where
                # no oracle: the same answer as for a resource that does not exist
                missing = _call(world.base, method, _fill(path, MISSING), headers, body)
                assert _strip(response, mine) == _strip(missing, MISSING), (
                    f"{where}\n  vs missing: {missing.text[:200]}"
                )
            checked += 1
    assert checked == len(routes) * len(world.outsiders)
    assert _snapshot(world) == before, "an outsider changed the first customer's data"
    # the first customer's annotator still holds its task
    mine_next = _call(
        world.base,
        "GET",
        "/v1/annotator/next",
        {"Authorization": f"Bearer {world.a_annotator_key}"},
    )
    assert mine_next.status_code == 200 and mine_next.json()["task_id"] == world.task_id


def test_other_customer_lists_show_none_of_the_first_customers_things(world: World) -> None:
    hb = world.outsiders["other customer"]
    for path in (
        "/v1/projects",
        "/v1/annotators",
        "/v1/billing/ledger",
        "/v1/me",
        "/v1/billing/balance",
    ):
        response = _call(world.base, "GET", path, hb)
        assert response.status_code == 200, response.text
        for marker in world.markers:
            assert marker not in response.text, (path, marker)
    listed = {p["id"] for p in _call(world.base, "GET", "/v1/projects", hb).json()["data"]}
    assert not listed & {world.project, world.draft_project}


def _all_stored_text(db) -> str:
    """Every value of every table, as text (bytes decoded leniently)."""
    parts = []
    with db.read() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    parts.append(
                        value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    )
    return "\n".join(parts)


def test_api_keys_are_stored_only_as_hashes(backend_platform: LocalPlatform, tmp_path) -> None:
    p = backend_platform
    customer = p.create_customer("Hash check")
    h = {"Authorization": f"Bearer {customer}"}
    created = [
        customer,
        _call(p.base_url, "POST", "/v1/annotators", h, {"name": "t", "role": "annotator"}).json()[
            "api_key"
        ],
        _call(p.base_url, "POST", "/v1/annotators", h, {"name": "t", "role": "expert"}).json()[
            "api_key"
        ],
        _call(
            p.base_url,
            "POST",
            "/v1/sandbox/customers",
            {"Authorization": f"Bearer {p.admin_key}"},
            {},
        ).json()["api_key"],
        p.admin_key,
    ]
    stored = _all_stored_text(p.db)
    for key in created:
        secret = key.rpartition("_")[2]
        assert key not in stored and secret not in stored and secret[:12] not in stored
    if p.db.is_sqlite:  # the raw database files too (main file and write-ahead log)
        path = Path(p.db.engine.url.database)
        files = [path, path.with_name(path.name + "-wal")]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        for key in created:
            assert key.rpartition("_")[2].encode() not in raw


def test_keys_have_scanner_recognisable_prefixes(backend_platform: LocalPlatform) -> None:
    p = backend_platform
    customer = p.create_customer("Prefix check")
    h = {"Authorization": f"Bearer {customer}"}
    keys = {
        "customer": customer,
        "annotator": _call(
            p.base_url, "POST", "/v1/annotators", h, {"name": "t", "role": "annotator"}
        ).json()["api_key"],
        "expert": _call(
            p.base_url, "POST", "/v1/annotators", h, {"name": "t", "role": "expert"}
        ).json()["api_key"],
        "admin": p.admin_key,
    }
    for role, key in keys.items():
        assert KEY_FORMATS[role].match(key), (role, key)
    # 32 base62 characters: ~190 bits, and no two keys alike
    assert len({p.create_customer() for _ in range(20)}) == 20
    # a wrong key is refused without echoing it back
    wrong = customer[:-4] + ("yyyy" if customer.endswith("zzzz") else "zzzz")  # always differs
    response = _call(p.base_url, "GET", "/v1/me", {"Authorization": f"Bearer {wrong}"})
    assert (
        response.status_code == 401 and wrong not in response.text and customer not in response.text
    )

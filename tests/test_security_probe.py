"""Issue 12: the defects an attacker's probe found, each pinned by a test (both databases where
storage is involved)."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import requests
import sqlalchemy as sa

from cynaps_data.server.db import Database
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import RateLimit, Settings
from cynaps_data.server.tables import idempotency_keys


def _rows(db: Database, table: sa.Table) -> list:
    with db.read() as conn:
        return conn.execute(sa.select(table)).all()


# -- defect 1: secrets in the idempotency store ---------------------------------------------------
def test_idempotent_secret_responses_store_no_secret_and_replays_rotate(
    backend_platform: LocalPlatform,
) -> None:
    """Failed before the fix: the stored response held the api_key / invite token in clear."""
    base = backend_platform.base_url
    customer = {"Authorization": f"Bearer {backend_platform.create_customer()}"}
    key = f"idk_{uuid.uuid4().hex}"
    h = {**customer, "Idempotency-Key": key}
    first = requests.post(
        base + "/v1/annotators", headers=h, json={"name": "Ann", "role": "annotator"}, timeout=30
    )
    assert first.status_code == 201, first.text
    key1 = first.json()["api_key"]
    invite_key = f"idk_{uuid.uuid4().hex}"
    inv = requests.post(
        base + f"/v1/annotators/{first.json()['id']}/invites",
        headers={**customer, "Idempotency-Key": invite_key},
        timeout=30,
    )
    assert inv.status_code == 201, inv.text
    token1 = inv.json()["token"]
    for row in _rows(backend_platform.db, idempotency_keys):
        body = bytes(row.response_body or b"")
        assert key1.encode() not in body and token1.encode() not in body
    # a retry after a lost response still gives the caller a working key, and the unseen one
    # (or the one seen before) stops working: the replay rotates the secret
    again = requests.post(
        base + "/v1/annotators", headers=h, json={"name": "Ann", "role": "annotator"}, timeout=30
    )
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    key2 = again.json()["api_key"]
    assert key2 != key1 and again.json()["id"] == first.json()["id"]
    me = requests.get(base + "/v1/me", headers={"Authorization": f"Bearer {key2}"}, timeout=30)
    assert me.status_code == 200 and me.json()["id"] == first.json()["id"]
    old = requests.get(base + "/v1/me", headers={"Authorization": f"Bearer {key1}"}, timeout=30)
    time.sleep(2.1)  # the auth cache keeps a valid key for 2 s
    old = requests.get(base + "/v1/me", headers={"Authorization": f"Bearer {key1}"}, timeout=30)
    assert old.status_code == 401
    inv2 = requests.post(
        base + f"/v1/annotators/{first.json()['id']}/invites",
        headers={**customer, "Idempotency-Key": invite_key},
        timeout=30,
    )
    token2 = inv2.json()["token"]
    assert inv2.status_code == 201 and token2 != token1 and inv2.json()["path"].endswith(token2)
    assert (
        requests.post(base + "/v1/invites/redeem", json={"token": token1}, timeout=30).status_code
        == 401
    )
    redeemed = requests.post(base + "/v1/invites/redeem", json={"token": token2}, timeout=30)
    assert redeemed.status_code == 201, redeemed.text
    for row in _rows(backend_platform.db, idempotency_keys):
        body = bytes(row.response_body or b"")
        for secret in (key1, key2, token1, token2):
            assert secret.encode() not in body


# -- defect 5: bodies read and keys stored before authentication ----------------------------------
def test_unauthenticated_requests_store_nothing_and_are_limited_by_address(
    backend_url_platform_small_limit: LocalPlatform,
) -> None:
    """Failed before the fix: each junk-key request wrote an idempotency row, and rotating
    fake keys escaped the rate limit (a bucket per key sent)."""
    platform = backend_url_platform_small_limit
    base = platform.base_url
    before = len(_rows(platform.db, idempotency_keys))
    statuses = []
    for i in range(12):
        response = requests.post(
            base + "/v1/projects",
            headers={
                "Authorization": f"Bearer sk_test_fake{secrets.token_hex(8)}",
                "Idempotency-Key": f"junk-{i}",
            },
            json={"name": "x", "labels": ["a"]},
            timeout=30,
        )
        statuses.append(response.status_code)
    assert statuses[0] == 401
    assert 429 in statuses, statuses  # one address, many made-up keys: one bucket
    assert len(_rows(platform.db, idempotency_keys)) == before
    # a real key still has its own bucket
    good = {"Authorization": f"Bearer {platform.create_customer()}"}
    assert requests.get(base + "/v1/me", headers=good, timeout=30).status_code == 200


_SERVER = textwrap.dedent(
    """
    import sys, time
    from cynaps_data.server.platform import LocalPlatform
    from cynaps_data.server.settings import Settings
    from cynaps_data.server.db import database_url
    settings = Settings(database_url=database_url(sys.argv[1]), max_body_bytes=64 * 2**20)
    with LocalPlatform(settings=settings, workforce=False) as p:
        print(p.port, flush=True)
        sys.stdin.read()
    """
)


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _post_raw(port: int, path: str, headers: dict, size: int) -> bytes:
    """Send ``size`` body bytes (or as many as the server takes) and return what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode())
        chunk = b"{" * (1 << 20)
        try:
            for _ in range(size >> 20):
                s.sendall(chunk)
        except OSError:
            pass
        try:
            return s.recv(4096)
        except OSError:
            return b""


def test_unauthenticated_large_bodies_do_not_grow_server_memory(tmp_path: Path) -> None:
    """Failed before the fix: the idempotency middleware buffered each whole body first."""
    db_path = tmp_path / "mem.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        _post_raw(port, "/v1/projects", {"Authorization": "Bearer nope"}, 1 << 20)  # warm up
        before = _hwm_kib(proc.pid)
        answers = []
        for i in range(4):
            headers = {"Authorization": f"Bearer sk_test_{i}x", "Idempotency-Key": f"k{i}"}
            answers.append(_post_raw(port, "/v1/projects/p/tasks/batch", headers, 40 << 20))
        grown_mib = (_hwm_kib(proc.pid) - before) / 1024
        assert grown_mib < 16, f"server peak memory grew {grown_mib:.0f} MiB for 160 MiB of junk"
        assert any(a.startswith(b"HTTP/1.1 401") for a in answers), answers
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    db = Database(f"sqlite:///{db_path}")
    try:
        assert _rows(db, idempotency_keys) == []
    finally:
        db.dispose()


# fixtures ---------------------------------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture
def backend_url_platform_small_limit(backend_url: str):
    settings = Settings(database_url=backend_url, rate_limit=RateLimit(per_second=0.5, burst=5))
    with LocalPlatform(settings=settings, workforce=False) as running:
        yield running


# -- defects 3 and 4: money after a reopen ---------------------------------------------------------
def _api(base: str, key: str):
    def call(method: str, path: str, **kwargs):
        if method == "KEY":
            return key
        response = requests.request(
            method, base + path, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kwargs
        )
        assert response.status_code < 500, response.text
        return response

    return call


def _funded_project(call, n_tasks: int, expert: bool, start: bool = True) -> str:
    pid = call(
        "POST",
        "/v1/projects",
        json={
            "name": "money",
            "labels": ["a", "b"],
            "quality_settings": {"min_annotators": 1, "enable_expert_review": expert},
        },
    ).json()["id"]
    tasks = [{"data": {"i": i}} for i in range(n_tasks)]
    assert call("POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": tasks}).status_code == 201
    paid = call("POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"})
    assert paid.status_code == 200, paid.text
    if start:
        assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    return pid


def _label_one(base: str, member_key: str, pid: str) -> None:
    member = _api(base, member_key)
    task = member("GET", f"/v1/annotator/next?project_id={pid}")
    assert task.status_code == 200, task.text
    done = member(
        "POST", f"/v1/annotator/tasks/{task.json()['task_id']}/judgements", json={"label": "a"}
    )
    assert done.status_code == 201, done.text


def _ledger(platform: LocalPlatform, account: str) -> int:
    from cynaps_data.server.services import ledger

    with platform.db.read() as conn:
        return ledger.balance(conn, account)


def _team(call, n: int) -> list[str]:
    return [
        call("POST", "/v1/annotators", json={"name": f"m{i}", "role": "annotator"}).json()[
            "api_key"
        ]
        for i in range(n)
    ]


def test_reopen_reserves_so_the_balance_never_goes_negative(
    backend_platform: LocalPlatform,
) -> None:
    """Defect 3. Failed before the fix: reopen only checked the balance; spending it on another
    deposit and then answering the reopened task left the customer at -10.00 Credits."""
    base = backend_platform.base_url
    key = backend_platform.create_customer()
    call = _api(base, key)
    account = call("GET", "/v1/me").json()["id"]
    first, second = _team(call, 2)
    pid = _funded_project(call, 1, expert=True)
    _label_one(base, first, pid)
    assert call("GET", f"/v1/projects/{pid}").json()["state"] == "completed"
    from cynaps_data.server.tables import tasks

    with backend_platform.db.read() as conn:
        task_id = conn.execute(sa.select(tasks.c.id).where(tasks.c.project_id == pid)).scalar_one()
    reopened = call(
        "POST", f"/v1/projects/{pid}/tasks/reopen", json={"task_ids": [task_id], "n": 1}
    )
    assert reopened.status_code == 200, reopened.text
    # spend what is available on another project's deposit (20.00 Credits a task)
    available = _ledger(backend_platform, f"customer:{account}")
    _funded_project(call, available // 2000, expert=True, start=False)
    assert 0 <= _ledger(backend_platform, f"customer:{account}") < 1500
    _label_one(base, second, pid)
    assert _ledger(backend_platform, f"customer:{account}") >= 0
    assert call("GET", f"/v1/projects/{pid}").json()["state"] in ("completed", "review")


def test_cancel_after_reopen_leaves_no_money_in_escrow(backend_platform: LocalPlatform) -> None:
    """Defect 4. Failed before the fix: finalise (charge in escrow), reopen, cancel, export left
    15.00 Credits in escrow for good and the judgement unpaid."""
    base = backend_platform.base_url
    call = _api(base, backend_platform.create_customer())
    account = call("GET", "/v1/me").json()["id"]
    (member,) = _team(call, 1)
    member_id = _api(base, member)("GET", "/v1/me").json()["id"]
    pid = _funded_project(call, 2, expert=False)
    _label_one(base, member, pid)
    charged = _ledger(backend_platform, f"escrow:{pid}")
    assert charged > 0
    from cynaps_data.server.tables import tasks

    with backend_platform.db.read() as conn:
        done = (
            conn.execute(sa.select(tasks.c.id).where(tasks.c.project_id == pid, tasks.c.charged))
            .scalars()
            .all()
        )
    assert len(done) == 1
    reopened = call("POST", f"/v1/projects/{pid}/tasks/reopen", json={"task_ids": done, "n": 1})
    assert reopened.status_code == 200, reopened.text
    assert call("POST", f"/v1/projects/{pid}/cancel").status_code == 200
    call("GET", f"/v1/projects/{pid}/export")
    assert _ledger(backend_platform, f"escrow:{pid}") == 0
    assert _ledger(backend_platform, f"deposit_hold:{pid}") == 0
    assert _ledger(backend_platform, f"earnings:{member_id}") == charged
    assert _ledger(backend_platform, f"customer:{account}") >= 0


# -- defect 2: a deeply nested task -----------------------------------------------------------------
def _nested(depth: int):
    value: object = "leaf"
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def test_nesting_limit_at_upload_keeps_every_path_serialisable(
    backend_platform: LocalPlatform,
) -> None:
    """Failed before the fix: 300 levels were accepted (201), then the JSON export was a 500
    after releasing escrow and /v1/annotator/next was a 500 on every call."""
    import io

    import pyarrow as pa

    from cynaps_data.server.services.limits import MAX_NESTING_DEPTH

    base = backend_platform.base_url
    call = _api(base, backend_platform.create_customer())
    pid = call(
        "POST",
        "/v1/projects",
        json={
            "name": "deep",
            "labels": ["a", "b"],
            "quality_settings": {"min_annotators": 1, "enable_expert_review": False},
        },
    ).json()["id"]
    deep = call(
        "POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": {"x": _nested(300)}}]}
    )
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "nesting_too_deep", deep.text
    table = pa.table({"data": [__import__("json").dumps({"x": _nested(300)})]})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    arrow = requests.post(
        base + f"/v1/projects/{pid}/tasks/batch",
        headers={
            "Authorization": f"Bearer {call('KEY', '')}",
            "Content-Type": "application/vnd.apache.arrow.stream",
        },
        data=sink.getvalue(),
        timeout=60,
    )
    assert arrow.status_code == 400 and "nesting depth" in arrow.text, arrow.text
    # the deepest accepted task goes through every path: annotator view, JSON and Arrow exports
    ok_depth = MAX_NESTING_DEPTH - 4  # the batch wraps data in {"tasks": [{"data": {"x": ...
    up = call(
        "POST",
        f"/v1/projects/{pid}/tasks/batch",
        json={"tasks": [{"data": {"x": _nested(ok_depth)}}]},
    )
    assert up.status_code == 201, up.text
    assert (
        call(
            "POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "credits"}
        ).status_code
        == 200
    )
    assert call("POST", f"/v1/projects/{pid}/start").status_code == 200
    (member,) = _team(call, 1)
    _label_one(base, member, pid)
    assert call("GET", f"/v1/projects/{pid}/export").status_code == 200
    exported = call("GET", f"/v1/projects/{pid}/export?format=arrow")
    assert exported.status_code == 200
    assert pa.ipc.open_stream(exported.content).read_all().num_rows == 1


# -- also seen: cynaps serve and an existing config file ---------------------------------------
def test_cynaps_serve_keeps_an_existing_api_key_in_the_config(tmp_path: Path) -> None:
    """Failed before the fix: ``cynaps serve`` replaced an ``sk_live_`` key in the config."""
    import json
    import os

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": "sk_live_keepme", "base_url": "https://x"}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cynaps_data.cli",
            "serve",
            "--db",
            str(tmp_path / "s.db"),
            "--port",
            "0",
            "--config",
            str(config),
            "--no-workforce",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        proc.stdout.readline()
        said = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert json.loads(config.read_text())["api_key"] == "sk_live_keepme", said
    aside = json.loads((tmp_path / "serve.json").read_text())
    assert aside["api_key"].startswith("sk_test_") and "serve.json" in said


def test_a_declined_payment_is_recorded(backend_platform: LocalPlatform) -> None:
    """Failed before the fix: the declined payment's row was rolled back with the 402."""
    from cynaps_data.server.tables import payments

    call = _api(backend_platform.base_url, backend_platform.create_customer())
    account = call("GET", "/v1/me").json()["id"]
    r = call("POST", "/v1/billing/topups", json={"amount": 12.5, "payment_method": "test_decline"})
    assert r.status_code == 402 and r.json()["error"]["code"] == "payment_declined"
    with backend_platform.db.read() as conn:
        rows = conn.execute(sa.select(payments).where(payments.c.account_id == account)).all()
    assert [(p.status, p.amount_cents, p.method) for p in rows] == [
        ("declined", 1250, "test_decline")
    ]
    assert (
        _ledger(backend_platform, f"customer:{account}")
        == backend_platform.settings.starting_credits_cents
    )


def test_nul_in_task_data_is_refused_the_same_on_both_databases(
    backend_platform: LocalPlatform,
) -> None:
    """Failed before the fix: SQLite stored the NUL (201), PostgreSQL refused it (422 without
    naming the field)."""
    call = _api(backend_platform.base_url, backend_platform.create_customer())
    pid = call("POST", "/v1/projects", json={"name": "nul", "labels": ["a"]}).json()["id"]
    r = call(
        "POST", f"/v1/projects/{pid}/tasks/batch", json={"tasks": [{"data": {"t": "a\u0000b"}}]}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == "body.tasks[0].data.t", r.text
    assert call("GET", f"/v1/projects/{pid}").json()["task_count"] == 0


def test_a_half_sent_body_is_answered_408_not_held_open(tmp_path: Path) -> None:
    """Failed before the fix: no answer for as long as the client kept the connection (25 s+)."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}", body_timeout_seconds=1.0)
    with LocalPlatform(settings=settings, workforce=False) as platform:
        key = platform.create_customer()
        with socket.create_connection(("127.0.0.1", platform.port), timeout=10) as s:
            s.sendall(
                b"POST /v1/projects HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                + f"Authorization: Bearer {key}\r\n\r\n".encode()
                + b'{"name": '
            )
            started = time.monotonic()
            answer = s.recv(4096)
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert waited < 5


def test_invite_session_keys_expire(backend_platform: LocalPlatform) -> None:
    """Failed before the fix: a session key from an invite link never expired (no expiry kept)."""
    from cynaps_data.server.ids import hash_key
    from cynaps_data.server.tables import api_keys

    base = backend_platform.base_url
    call = _api(base, backend_platform.create_customer())
    member = call("POST", "/v1/annotators", json={"name": "s", "role": "annotator"}).json()
    token = call("POST", f"/v1/annotators/{member['id']}/invites").json()["token"]
    session = requests.post(base + "/v1/invites/redeem", json={"token": token}, timeout=30).json()
    key = session["api_key"]
    assert _api(base, key)("GET", "/v1/me").status_code == 200
    with backend_platform.db.read() as conn:
        expires = conn.execute(
            sa.select(api_keys.c.expires_at).where(api_keys.c.key_hash == hash_key(key))
        ).scalar_one()
    assert expires is not None and time.time() < expires <= time.time() + 24 * 3600
    with backend_platform.db.write() as conn:  # the clock moves past the session's end
        conn.execute(
            api_keys.update()
            .where(api_keys.c.key_hash == hash_key(key))
            .values(expires_at=time.time() - 1)
        )
    time.sleep(2.1)  # the auth cache keeps a valid key for 2 s
    assert _api(base, key)("GET", "/v1/me").status_code == 401
    assert (
        _api(base, member["api_key"])("GET", "/v1/me").status_code == 200
    )  # team keys do not expire


def test_deeper_than_agrees_with_the_full_scan():
    """The cheap bound (count of ``[`` and ``{``) never hides a body that is too deep."""
    import random

    from cynaps_data.server.services.limits import deeper_than, nesting_depth

    rng = random.Random(0)
    pieces = [b"[", b"]", b"{", b"}", b'"[["', b'"a\\"[{"', b"1", b","]
    for _ in range(2000):
        text = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        for limit in (0, 1, 3, 8):
            assert deeper_than(text, limit) == (nesting_depth(text) > limit), text
    deep = b"[" * 33 + b"]" * 33
    assert deeper_than(deep) and not deeper_than(b'{"label": "a"}')
    assert not deeper_than(b'{"t": "' + b"[" * 100 + b'"}')  # brackets inside a string

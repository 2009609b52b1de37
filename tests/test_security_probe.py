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

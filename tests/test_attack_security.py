"""Adversarial checks of API keys, webhooks and the customer console (found by attacking them).

Each test is a real attack or misuse against the real platform over HTTP (or the public
``cynaps_data.webhooks`` verifier a receiver runs), with no mocks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from cynaps_data.errors import WebhookVerificationError
from cynaps_data.server import net
from cynaps_data.server.ids import hash_key
from cynaps_data.server.secretbox import load_key
from cynaps_data.server.tables import api_keys
from cynaps_data.webhooks import new_secret, sign, verify

from .test_webhooks_ssrf import _name_for_loopback
from .webhook_receiver import Receiver, loopback_platform

BODY = b'{"type":"ping","timestamp":"2026-01-01T00:00:00Z","data":{}}'


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def loop_platform(tmp_path_factory):
    """A platform that may deliver to loopback (as ``Client.local()``), polling fast."""
    with loopback_platform(tmp_path_factory, "attack") as running:
        yield running


def _first_attempt(base: str, key: str, endpoint_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        log = requests.get(
            f"{base}/v1/webhooks/endpoints/{endpoint_id}/attempts", headers=_auth(key), timeout=10
        ).json()["data"]
        if log:
            return log[-1]
        assert time.monotonic() < deadline, "no delivery attempt was logged"
        time.sleep(0.05)


# -- the receiver's verifier (cynaps_data.webhooks.verify) --------------------------------------


@pytest.mark.parametrize("secret", ["", "whsec_", b""], ids=["empty", "prefix-only", "bytes"])
def test_verify_refuses_an_empty_secret_instead_of_accepting_forgeries(secret):
    """A receiver whose secret is unset (``os.environ.get("WHSEC", "")``) must not accept a
    message anyone can sign with the empty key."""
    stamp = int(time.time())
    # HMAC with an empty key: anyone can make it
    digest = hmac.new(b"", f"msg_forged.{stamp}.".encode() + BODY, hashlib.sha256).digest()
    forged = "v1," + base64.b64encode(digest).decode()
    headers = {"webhook-id": "msg_forged", "webhook-timestamp": str(stamp)}
    with pytest.raises(WebhookVerificationError) as caught:
        verify(BODY, {**headers, "webhook-signature": forged}, secret)
    assert caught.value.code == "invalid_secret"
    real = new_secret()  # a real secret still verifies its own signature
    signed = {**headers, "webhook-signature": sign("msg_forged", stamp, BODY, real)}
    assert verify(BODY, signed, real)["type"] == "ping"


@pytest.mark.parametrize(
    "stamp", ["9" * 400, "-" + "9" * 400, "١٧٠٠٠٠٠٠٠٠"], ids=["huge", "huge-negative", "arabic"]
)
def test_verify_answers_a_huge_or_odd_timestamp_with_a_verification_error(stamp):
    """Unauthenticated header input must give WebhookVerificationError (a 400 for the
    receiver), never an OverflowError (a 500) or acceptance of non-ASCII digits."""
    headers = {"webhook-id": "msg_x", "webhook-timestamp": stamp, "webhook-signature": "v1,x"}
    with pytest.raises(WebhookVerificationError) as caught:
        verify(BODY, headers, new_secret())
    assert caught.value.code == "invalid_timestamp"


# -- SSRF side channels and delivery --------------------------------------------------------------


def test_a_refused_name_does_not_reveal_the_address_it_resolves_to():
    """Registering a *name* and reading the delivery log must not turn the platform into a DNS
    oracle for its own network (``internal.corp`` → ``10.1.2.3``): the refusal names the rule,
    not the internal address."""
    name = _name_for_loopback()
    if name is None:
        pytest.skip("no host name on this machine resolves to loopback")
    target = net.check_url(f"http://{name}/hook", https_only=False, allow_loopback=False)
    with pytest.raises(net.Refused) as caught:
        net.resolve(target, allow_loopback=False)
    message = str(caught.value)
    assert "loopback" in message and name in message
    assert "127." not in message and "::1" not in message
    # a literal address is the caller's own text: it may be named
    literal = net.check_url("http://[::1]/", https_only=False, allow_loopback=True)
    with pytest.raises(net.Refused, match="::1"):
        net.resolve(literal, allow_loopback=False)


def test_an_endpoint_with_non_ascii_in_its_path_is_delivered(loop_platform):
    """A URL the API accepts must be deliverable: non-ASCII in the path or query used to fail
    every attempt (``UnicodeEncodeError`` in the request line) until the endpoint was disabled."""
    receiver = Receiver()
    key = loop_platform.create_customer()
    base = loop_platform.base_url
    try:
        url = receiver.url + "/café?tag=é"
        created = requests.post(
            base + "/v1/webhooks/endpoints", json={"url": url}, headers=_auth(key), timeout=10
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["url"] == url
        requests.post(
            f"{base}/v1/webhooks/endpoints/{endpoint['id']}/test", headers=_auth(key), timeout=10
        ).raise_for_status()
        attempt = _first_attempt(base, key, endpoint["id"])
        assert attempt["status_code"] == 200, attempt
        assert receiver.received, "the receiver got nothing"
    finally:
        receiver.close()


# -- API keys -------------------------------------------------------------------------------------


def test_a_key_cannot_be_created_already_dead(platform):
    """``expires_in_days`` below a minute (the documented minimum) made a key that was expired
    on arrival; it is refused, as the message says."""
    key = platform.create_customer()
    for days in (1e-9, 0.0001):
        r = requests.post(
            platform.base_url + "/v1/api_keys",
            json={"name": "tiny", "expires_in_days": days},
            headers=_auth(key),
            timeout=10,
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["param"] == "expires_in_days"
    ok = requests.post(
        platform.base_url + "/v1/api_keys",
        json={"name": "a minute", "expires_in_days": 1 / 1440},
        headers=_auth(key),
        timeout=10,
    )
    assert ok.status_code == 201, ok.text


# -- the platform key file -------------------------------------------------------------------------


def test_the_platform_key_file_is_created_atomically(tmp_path):
    """Several platform processes (``--workers``) start on one database: one that finds the key
    file created but not yet written must not fail ("must hold exactly 32 bytes") or read a
    different key from the others."""
    for round_ in range(30):
        path = tmp_path / f"k{round_}.key"
        start = threading.Barrier(8)
        keys: list[bytes] = []
        errors: list[BaseException] = []

        def load(path=path, start=start, keys=keys, errors=errors) -> None:
            start.wait()
            try:
                keys.append(load_key(path))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(set(keys)) == 1 and len(keys[0]) == 32
        assert (path.stat().st_mode & 0o777) == 0o600
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f"k{round_}.")] == [
            path.name
        ]


# -- bodies are read only for what the caller may change -------------------------------------------


@pytest.mark.parametrize("verb, suffix", [("PATCH", ""), ("POST", "/rotate_secret")])
def test_another_accounts_endpoint_is_a_404_before_the_body_is_read(platform, verb, suffix):
    """A valid key probing another account's endpoint with a huge body that never arrives is
    answered 404 at once: the platform does not wait for (or buffer) a body it will refuse."""
    import socket

    owner, other = platform.create_customer(), platform.create_customer()
    endpoint = requests.post(
        platform.base_url + "/v1/webhooks/endpoints",
        json={"url": "https://example.com/hook"},
        headers=_auth(owner),
        timeout=10,
    ).json()
    host, port = platform.base_url.removeprefix("http://").split(":")
    head = (
        f"{verb} /v1/webhooks/endpoints/{endpoint['id']}{suffix} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {other}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\n\r\n{"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        sock.settimeout(2)
        status = sock.recv(200).split(b"\r\n", 1)[0]
    assert status.endswith(b"404 Not Found"), status
    assert (
        "secret"
        not in requests.get(
            f"{platform.base_url}/v1/webhooks/endpoints/{endpoint['id']}",
            headers=_auth(owner),
            timeout=10,
        ).json()
    )


def test_a_replayed_key_response_mints_a_listed_revocable_key(platform) -> None:
    """A replay of a response that held an API key mints a new key in place of the stored
    one. Failed before: the new key had no id or name (listed with id null, impossible to
    revoke by id), the old one had no ``revoked_at`` and stayed usable from the login cache."""
    base = platform.base_url
    customer = {"Authorization": f"Bearer {platform.create_customer()}"}
    h = {**customer, "Idempotency-Key": f"idk_{uuid.uuid4().hex}"}
    body = {"name": "Ann", "role": "annotator"}
    first = requests.post(base + "/v1/annotators", headers=h, json=body, timeout=30)
    assert first.status_code == 201, first.text
    key1 = first.json()["api_key"]
    me = requests.get(base + "/v1/me", headers={"Authorization": f"Bearer {key1}"}, timeout=30)
    assert me.status_code == 200  # now in the login cache
    again = requests.post(base + "/v1/annotators", headers=h, json=body, timeout=30)
    assert again.headers.get("idempotent-replayed") == "true"
    key2 = again.json()["api_key"]
    old = requests.get(base + "/v1/me", headers={"Authorization": f"Bearer {key1}"}, timeout=30)
    assert old.status_code == 401  # at once, not after the cache's 2 s
    with platform.db.read() as conn:
        rows = conn.execute(
            sa.select(api_keys).where(api_keys.c.account_id == first.json()["id"])
        ).all()
    assert len(rows) == 2 and all(r.id and r.name for r in rows), rows
    (live,) = [r for r in rows if not r.revoked]
    assert live.key_hash == hash_key(key2)
    assert all(r.revoked_at for r in rows if r.revoked)


def test_a_caller_hanging_up_mid_body_logs_no_traceback(platform, caplog) -> None:
    """A caller that declares a body and hangs up half way made the platform log an
    "unhandled error" with a full traceback (a cheap way to fill its log)."""
    import socket
    from urllib.parse import urlsplit

    key = platform.create_customer()
    where = urlsplit(platform.base_url)
    caplog.set_level("ERROR")
    for _ in range(3):
        with socket.create_connection((where.hostname, where.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {key}\r\nContent-Length: 100000\r\n\r\n".encode()
                + b'{"name": "half'
            )
            time.sleep(0.1)
    time.sleep(0.5)
    assert not [r for r in caplog.records if "unhandled error" in r.getMessage()]
    ok = requests.get(platform.base_url + "/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200


def test_an_answer_carries_one_request_id(platform) -> None:
    """A 401 carried ``x-request-id`` twice (the problem answer and the middleware both added
    it), so error messages read "(request id: req_X, req_X)"."""
    for headers in ({"Authorization": "Bearer sk_test_wrong"}, {}):
        answer = requests.get(platform.base_url + "/v1/me", headers=headers, timeout=10)
        assert answer.status_code == 401
        assert len(answer.raw.headers.getlist("x-request-id")) == 1
    ok = requests.get(
        platform.base_url + "/v1/me",
        headers={"Authorization": f"Bearer {platform.create_customer()}"},
        timeout=10,
    )
    assert len(ok.raw.headers.getlist("x-request-id")) == 1

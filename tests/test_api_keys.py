"""API keys as a resource (issue 17): create shown once, list, revoke (refused at once, says
revoked), expiry (says expired), several live keys, and ``cynaps keys``."""

from __future__ import annotations

import json
import time

import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data.cli import main


def test_create_list_revoke_and_rotation_without_downtime(platform, client):
    first = client.api_keys.create("ci")
    second = client.api_keys.create("ci (next)")
    assert first.secret.startswith("sk_test_") and first.secret.startswith(first.prefix)
    listed = {k.id: k for k in client.api_keys.list()}
    assert {first.id, second.id} <= set(listed)
    assert all(k.secret is None for k in listed.values())
    assert listed[first.id].status == "active" and listed[first.id].name == "ci"
    as_first = cynaps.Client(api_key=first.secret, base_url=platform.base_url, max_retries=0)
    as_second = cynaps.Client(api_key=second.secret, base_url=platform.base_url, max_retries=0)
    me = client.me()["id"]
    assert as_first.me()["id"] == as_second.me()["id"] == me  # both live at once
    client.api_keys.revoke(first.id)
    with pytest.raises(errors.AuthenticationError, match="revoked") as refused:
        as_first.me()  # at once: no cache grace in this process
    assert refused.value.status == 401 and refused.value.code == "api_key_revoked"
    assert as_second.me()["id"] == me
    listed = {k.id: k for k in client.api_keys.list()}
    assert listed[first.id].status == "revoked" and listed[first.id].revoked_at
    with pytest.raises(errors.ConflictError):
        client.api_keys.revoke(first.id)


def test_last_used_is_recorded(platform, client):
    key = client.api_keys.create("used")
    assert key.last_used_at is None
    cynaps.Client(api_key=key.secret, base_url=platform.base_url).me()
    (listed,) = [k for k in client.api_keys.list() if k.id == key.id]
    assert listed.last_used_at is not None and listed.last_used_at >= key.created_at


def test_an_expired_key_says_expired(platform, client):
    key = client.api_keys.create("short", expires_at=time.time() + 1.5)
    user = cynaps.Client(api_key=key.secret, base_url=platform.base_url, max_retries=0)
    user.me()
    time.sleep(1.6)
    with pytest.raises(errors.AuthenticationError, match="expired") as refused:
        user.me()
    assert refused.value.code == "api_key_expired"
    assert [k.status for k in client.api_keys.list() if k.id == key.id] == ["expired"]


def test_bad_input_and_scoping(platform, client):
    with pytest.raises(errors.ValidationError) as bad:
        client.api_keys.create("")
    assert bad.value.param == "name"
    with pytest.raises(errors.ValidationError, match="future"):
        client.api_keys.create("past", expires_at=time.time() - 10)
    r = requests.post(
        platform.base_url + "/v1/api_keys",
        json={"name": "x", "scopes": ["all"]},
        headers={"Authorization": f"Bearer {client.settings.api_key}"},
        timeout=10,
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "scopes"
    mine = client.api_keys.create("mine")
    with cynaps.Client(api_key=platform.create_customer(), base_url=platform.base_url) as other:
        with pytest.raises(errors.NotFoundError):
            other.api_keys.revoke(mine.id)
        assert mine.id not in {k.id for k in other.api_keys.list()}


def test_annotators_cannot_manage_keys(platform, annotator_key):
    r = requests.get(
        platform.base_url + "/v1/api_keys",
        headers={"Authorization": f"Bearer {annotator_key()}"},
        timeout=10,
    )
    assert r.status_code == 404


def test_cynaps_keys_command(platform, client, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"api_key": client.settings.api_key, "base_url": platform.base_url})
    )
    assert main(["keys", "create", "--name", "from cli", "--config", str(config), "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["secret"].startswith("sk_test_")
    assert main(["keys", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert created["id"] in listing and "from cli" in listing and created["secret"] not in listing
    assert main(["keys", "revoke", created["id"], "--config", str(config)]) == 0
    assert f"Revoked {created['id']}" in capsys.readouterr().out
    with pytest.raises(errors.AuthenticationError, match="revoked"):
        cynaps.Client(api_key=created["secret"], base_url=platform.base_url, max_retries=0).me()


def test_secrets_in_answers_are_not_kept_by_the_idempotency_store(platform, client):
    """The client sends an Idempotency-Key with every POST; answers that carry a secret (a new
    API key, a webhook secret) must not be stored in clear to replay them."""
    import sqlite3

    from .conftest import make_project

    make_project(client)  # an answer the store keeps
    key = client.api_keys.create("stored?")
    endpoint = client.webhooks.create_endpoint("https://93.184.216.34/hook")
    rotated = client.webhooks.rotate_secret(endpoint["id"])
    db = sqlite3.connect(platform.db.url.removeprefix("sqlite:///"))
    dump = "\n".join(db.iterdump()).encode()
    stored = b"\n".join(
        bytes(r[0] or b"") for r in db.execute("SELECT response_body FROM idempotency_keys")
    )
    assert b'"object":"project"' in stored  # the store is in use
    for secret in (key.secret, endpoint["secret"], rotated["secret"]):
        assert secret.split("_", 2)[-1].encode() not in dump + stored

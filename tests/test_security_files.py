"""SSRF and file safety: the platform never fetches user-supplied URLs, asset and static-file
serving cannot escape their stores, and uploaded non-images are refused."""

from __future__ import annotations

import hashlib
import socketserver
import threading
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from cynaps_data.server.platform import LocalPlatform

from .conftest import png_bytes


class _Trap(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    hits = 0


class _Count(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.hits += 1
        self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n")


@pytest.fixture
def trap() -> Iterator[_Trap]:
    """A listener on 127.0.0.1 that counts every connection made to it."""
    server = _Trap(("127.0.0.1", 0), _Count)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_platform_never_fetches_user_supplied_urls(platform: LocalPlatform, trap: _Trap) -> None:
    base = platform.base_url
    h = {"Authorization": f"Bearer {platform.create_customer()}"}
    url = f"http://127.0.0.1:{trap.server_address[1]}"
    tasks = [
        {
            "data": {"image": f"{url}/img{i}.png", "link": f"{url}/page", "webhook": f"{url}/hook"},
            "external_id": f"u{i}",
            "predictions": ["a"],
        }
        for i in range(3)
    ]
    project = requests.post(
        base + "/v1/projects",
        headers=h,
        timeout=30,
        json={
            "name": "urls",
            "labels": ["a", "b"],
            "instructions": f"See {url}/guide",
            "quality_settings": {"min_annotators": 1, "enable_expert_review": False},
        },
    ).json()
    pid = project["id"]
    assert (
        requests.post(
            base + f"/v1/projects/{pid}/tasks/batch", headers=h, json={"tasks": tasks}, timeout=30
        ).status_code
        == 201
    )
    for step in ("deposit/quote", "start"):
        if step == "start":
            requests.post(
                base + f"/v1/projects/{pid}/deposit/pay",
                headers=h,
                json={"payment_method": "credits"},
                timeout=30,
            )
        requests.post(base + f"/v1/projects/{pid}/{step}", headers=h, timeout=30)
    annotator = {"Authorization": f"Bearer {platform.create_member('annotator', 'ssrf')}"}
    for _ in range(3):
        task = requests.get(
            base + f"/v1/annotator/next?project_id={pid}", headers=annotator, timeout=30
        )
        assert task.status_code == 200 and task.json()["data"]["image"].startswith(url)
        requests.post(
            base + f"/v1/annotator/tasks/{task.json()['task_id']}/judgements",
            headers=annotator,
            json={"label": "a"},
            timeout=30,
        )
    for path in ("status", "export", "export?format=arrow", "dashboard"):
        assert (
            requests.get(base + f"/v1/projects/{pid}/{path}", headers=h, timeout=30).status_code
            == 200
        )
    assert trap.hits == 0, "the platform connected to a URL from task data"


TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "..\\..\\..\\etc\\passwd",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "....//....//etc/passwd",
    "..%252f..%252fetc%252fpasswd",
    "../cynaps.db",
    "../../cynaps.db",
    "0" * 64,  # well-formed id of no asset
]


def test_asset_and_static_serving_cannot_escape_their_store(platform: LocalPlatform) -> None:
    base = platform.base_url
    h = {"Authorization": f"Bearer {platform.create_customer()}"}
    pid = requests.post(
        base + "/v1/projects", headers=h, json={"name": "files", "labels": ["a"]}, timeout=30
    ).json()["id"]
    png = png_bytes(1, 1)
    stored = requests.post(base + f"/v1/projects/{pid}/assets", headers=h, data=png, timeout=30)
    assert stored.status_code == 201, stored.text
    sha = stored.json()["sha256"]
    assert sha == hashlib.sha256(png).hexdigest()
    served = requests.get(base + f"/v1/projects/{pid}/assets/{sha}", headers=h, timeout=30)
    assert served.status_code == 200 and served.content == png
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in served.headers["content-security-policy"]
    secrets_outside = (b"root:", b"SQLite format 3")
    for name in TRAVERSALS:
        for prefix in (f"/v1/projects/{pid}/assets/", "/ui/static/", "/ui/"):
            response = requests.get(base + prefix + name, headers=h, timeout=30)
            assert response.status_code in (400, 404, 422), (prefix + name, response.status_code)
            for secret in secrets_outside:
                assert secret not in response.content, prefix + name
    # the raw path, as a client that does not normalise it would send it
    with requests.Session() as s:
        req = requests.Request(
            "GET",
            base + f"/v1/projects/{pid}/assets/" + quote("../../etc/passwd", safe="./"),
            headers=h,
        ).prepare()
        req.url = base + f"/v1/projects/{pid}/assets/../../../../etc/passwd"
        response = s.send(req, timeout=30)
        assert b"root:" not in response.content and response.status_code in (400, 404, 422)


NOT_IMAGES = {
    "html": b"<!doctype html><script>alert(1)</script>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "pdf": b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n",
    "elf": b"\x7fELF\x02\x01\x01" + b"\x00" * 64,
    "zip": b"PK\x03\x04" + b"\x00" * 64,
    "text": b"just some text",
    "truncated png magic": b"\x89PN",
}


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
def test_uploaded_non_images_are_refused(platform: LocalPlatform, kind: str) -> None:
    base = platform.base_url
    h = {"Authorization": f"Bearer {platform.create_customer()}"}
    pid = requests.post(
        base + "/v1/projects", headers=h, json={"name": "files", "labels": ["a"]}, timeout=30
    ).json()["id"]
    response = requests.post(
        base + f"/v1/projects/{pid}/assets",
        headers={**h, "Content-Type": "image/png"},
        data=NOT_IMAGES[kind],
        timeout=30,
    )
    assert response.status_code == 415, response.text
    assert "PNG, JPEG, GIF and WebP" in response.json()["error"]["message"]
    sha = hashlib.sha256(NOT_IMAGES[kind]).hexdigest()
    assert (
        requests.get(base + f"/v1/projects/{pid}/assets/{sha}", headers=h, timeout=30).status_code
        == 404
    )


# -- issue 12: no secret at rest anywhere; private files (defects 1 and 6) -------------------------
def _all_table_text(db) -> bytes:
    """Every row of every table, as bytes (values joined), for a secret scan."""
    import sqlalchemy as sa

    from cynaps_data.server.tables import metadata

    out = []
    with db.read() as conn:
        for name in sa.inspect(conn).get_table_names():
            table = metadata.tables.get(name)
            select = sa.select(table) if table is not None else sa.text(f'SELECT * FROM "{name}"')
            for row in conn.execute(select):
                for value in row:
                    out.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(out)


def _make_every_secret(platform: LocalPlatform, tmp_path, monkeypatch, capsys) -> list[str]:
    """Create each kind of secret through the client and the CLI; returns them all."""
    import json

    import cynaps_data as cynaps
    from cynaps_data import cli

    base = platform.base_url
    made = []
    with cynaps.Client(api_key=platform.admin_key, base_url=base, max_retries=0) as admin:
        customer = admin._transport.request("POST", "/v1/sandbox/customers", json={"name": "c"})
    made.append(customer["api_key"])
    with cynaps.Client(api_key=customer["api_key"], base_url=base, max_retries=0) as client:
        member = client._transport.request(
            "POST", "/v1/annotators", json={"name": "a", "role": "annotator"}
        )
        invite = client._transport.request("POST", f"/v1/annotators/{member['id']}/invites")
        made += [member["api_key"], invite["token"]]
        pid = client.projects.create(name="files", labels=["a"]).id
    stored = requests.post(
        base + f"/v1/projects/{pid}/assets",
        headers={"Authorization": f"Bearer {customer['api_key']}"},
        data=png_bytes(1, 1),
        timeout=30,
    )
    assert stored.status_code == 201
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": customer["api_key"], "base_url": base}))
    for role in ("annotator", "expert"):
        assert (
            cli.main(
                [
                    "annotators",
                    "add",
                    "--name",
                    role,
                    "--role",
                    role,
                    "--config",
                    str(config),
                    "--json",
                ]
            )
            == 0
        )
        printed = json.loads(capsys.readouterr().out)
        made += [printed["api_key"], printed["invite_link"].rsplit("=", 1)[1]]
    session = requests.post(base + "/v1/invites/redeem", json={"token": made[-1]}, timeout=30)
    assert session.status_code == 201
    made.append(session.json()["api_key"])
    assert all(made) and len(set(made)) == len(made)
    return made


def test_no_secret_is_stored_in_clear_and_files_are_private(tmp_path, monkeypatch, capsys) -> None:
    """Every table (idempotency store and invites included), the raw database, WAL and asset
    files hold no key or invite token; the database, WAL and asset files are private.
    Failed before issue 12's fix: api_key in idempotency_keys; database and WAL 0644."""
    import os
    import stat

    from cynaps_data.server.services.assets import asset_dir

    monkeypatch.setattr(os, "umask", os.umask)  # keep the test's umask as it is
    old = os.umask(0o022)
    try:
        with LocalPlatform(tmp_path / "cynaps.db", workforce=False) as platform:
            made = _make_every_secret(platform, tmp_path, monkeypatch, capsys)
            tables = _all_table_text(platform.db)
            files = [
                p
                for p in [
                    tmp_path / "cynaps.db",
                    tmp_path / "cynaps.db-wal",
                    *asset_dir(platform.settings).rglob("*"),
                ]
                if p.is_file()
            ]
            raw = {p: p.read_bytes() for p in files}
            assert (tmp_path / "cynaps.db-wal").exists()
            for path in [
                tmp_path / "cynaps.db",
                tmp_path / "cynaps.db-wal",
                tmp_path / "cynaps.db-shm",
            ]:
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assets = asset_dir(platform.settings)
            assert stat.S_IMODE(assets.stat().st_mode) == 0o700
            for path in assets.rglob("*"):
                mode = stat.S_IMODE(path.stat().st_mode)
                assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    finally:
        os.umask(old)
    for secret in made:
        assert secret.encode() not in tables, secret[:8]
        for path, content in raw.items():
            assert secret.encode() not in content, (secret[:8], path)


def test_no_secret_is_stored_in_clear_on_postgresql(tmp_path, monkeypatch, capsys) -> None:
    """The same scan over every table of a PostgreSQL database."""
    from cynaps_data.server.db import database_url
    from cynaps_data.server.settings import Settings

    from .conftest import fresh_postgres_database

    with fresh_postgres_database() as url:
        settings = Settings(database_url=database_url(url), asset_dir=str(tmp_path / "assets"))
        with LocalPlatform(settings=settings, workforce=False) as platform:
            made = _make_every_secret(platform, tmp_path, monkeypatch, capsys)
            tables = _all_table_text(platform.db)
    for secret in made:
        assert secret.encode() not in tables, secret[:8]


def test_asset_directory_not_private_is_refused_and_symlinks_not_served(tmp_path) -> None:
    """Defect 6. Failed before the fix: a directory pre-created world-writable by someone else
    was used as found, and a symlink planted in it was served."""
    import os

    from cynaps_data.server.settings import Settings

    planted = tmp_path / "planted"
    planted.mkdir()
    os.chmod(planted, 0o777)
    db = tmp_path / "cynaps.db"
    with LocalPlatform(
        settings=Settings(database_url=f"sqlite:///{db}", asset_dir=str(planted)), workforce=False
    ) as platform:
        h = {"Authorization": f"Bearer {platform.create_customer()}"}
        pid = requests.post(
            platform.base_url + "/v1/projects",
            headers=h,
            json={"name": "f", "labels": ["a"]},
            timeout=30,
        ).json()["id"]
        up = requests.post(
            platform.base_url + f"/v1/projects/{pid}/assets",
            headers=h,
            data=png_bytes(1, 1),
            timeout=30,
        )
        assert up.status_code == 500 and not any(planted.iterdir())
        # a private directory of ours: a symlink planted as an asset file is not followed
        os.chmod(planted, 0o700)
        up = requests.post(
            platform.base_url + f"/v1/projects/{pid}/assets",
            headers=h,
            data=png_bytes(1, 1),
            timeout=30,
        )
        assert up.status_code == 201, up.text
        sha = up.json()["sha256"]
        target = planted / sha[:2] / sha
        secret = tmp_path / "secret.txt"
        secret.write_bytes(b"\x89PNG\r\n\x1a\nroot-only")
        target.unlink()
        target.symlink_to(secret)
        served = requests.get(
            platform.base_url + f"/v1/projects/{pid}/assets/{sha}", headers=h, timeout=30
        )
        assert served.status_code == 404 and b"root-only" not in served.content
    # the default for a non-file database is the per-user data directory, not a shared tmp path
    from cynaps_data.server.services.assets import default_data_dir

    assert "cynaps-assets-" not in str(default_data_dir())
    assert str(default_data_dir()).startswith(str(os.path.expanduser("~"))) or os.environ.get(
        "XDG_DATA_HOME"
    )

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

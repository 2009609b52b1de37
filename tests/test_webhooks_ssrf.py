"""SSRF rules for webhook endpoints (issue 17): refused when registering, and checked again at
connect time on every attempt (a name that resolves to loopback is refused when sending)."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

import cynaps_data as cynaps
from cynaps_data import errors
from cynaps_data.server import net
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings

from .webhook_receiver import Receiver

LOOPBACK_FORMS = [
    "http://127.0.0.1/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/hook",  # hex, short form
    "http://0177.0.0.1/hook",  # octal
    "http://127.1/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
]
NEVER = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://[fd00:ec2::254]/",  # AWS metadata over IPv6 (unique-local)
    "http://100.100.100.200/",  # Alibaba metadata (shared range)
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:10.0.0.1]/",
    "http://0xa9fea9fe/",  # 169.254.169.254 in hex
    "http://2852039166/",  # 169.254.169.254 as a decimal number
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
    "http://[2002:a9fe:a9fe::]/",  # 6to4 of the metadata address
]
MALFORMED = [
    "ftp://example.com/",
    "http://user:pw@example.com/",
    "javascript:alert(1)",
    "http:///nohost",
    "http://exa mple.com/",
]


@pytest.mark.parametrize("url", LOOPBACK_FORMS)
def test_loopback_in_any_spelling_is_refused_unless_allowed(url):
    with pytest.raises(net.Refused, match="loopback"):
        net.check_url(url, https_only=False, allow_loopback=False)
    net.check_url(url, https_only=False, allow_loopback=True)


@pytest.mark.parametrize("url", NEVER)
def test_private_link_local_metadata_multicast_unspecified_always_refused(url):
    for allow in (False, True):
        with pytest.raises(net.Refused):
            net.check_url(url, https_only=False, allow_loopback=allow)


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_urls_are_refused(url):
    with pytest.raises(net.Refused):
        net.check_url(url, https_only=False, allow_loopback=True)


def test_live_mode_wants_https_and_public_addresses_pass():
    with pytest.raises(net.Refused, match="https"):
        net.check_url("http://93.184.216.34/", https_only=True, allow_loopback=False)
    target = net.check_url(
        "https://93.184.216.34:8443/h?a=1", https_only=True, allow_loopback=False
    )
    assert (target.port, target.path) == (8443, "/h?a=1")
    net.check_address(ipaddress.ip_address("2606:4700::1111"), False)


def test_the_api_refuses_each_form_on_a_platform_without_the_setting(client):
    assert client.webhooks.settings()["allow_loopback"] is False
    for url in LOOPBACK_FORMS + NEVER[:3]:
        with pytest.raises(errors.ValidationError) as refused:
            client.webhooks.create_endpoint(url)
        assert refused.value.code == "url_refused" and refused.value.param == "url", url
    assert client.webhooks.list_endpoints() == []


def _name_for_loopback() -> str | None:
    """A host name (not 'localhost') this machine resolves to a loopback address, if any."""
    for name in ("vm", "runsc", socket.gethostname(), "ip6-localhost"):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        loopback = infos and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
        if loopback and name.lower() != "localhost":
            return name
    return None


def test_a_name_resolving_to_loopback_is_refused_when_connecting(tmp_path):
    """Registration cannot know where a name points later; the connect-time check does."""
    name = _name_for_loopback()
    if name is None:
        pytest.skip("no host name on this machine resolves to loopback")
    receiver = Receiver()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", webhook_poll_seconds=0.02)
    with (
        LocalPlatform(settings=settings, workforce=False) as p,
        cynaps.Client(api_key=p.create_customer(), base_url=p.base_url, max_retries=0) as c,
    ):
        try:
            port = receiver.url.split(":")[2].split("/")[0]
            endpoint = c.webhooks.create_endpoint(f"http://{name}:{port}/hook")  # accepted
            c.webhooks.send_test(endpoint["id"])
            deadline = time.monotonic() + 10
            while not (log := c.webhooks.attempts(endpoint["id"])):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert log[0]["status_code"] is None and "loopback" in log[0]["error"]
            assert receiver.received == []  # nothing reached it
            # the same platform with the local setting delivers there
            p.settings.webhook_allow_loopback = True
            p.webhooks.stop()
            from cynaps_data.server.webhook_worker import WebhookWorker

            p.webhooks = WebhookWorker(p.db, p.settings).start()
            c.webhooks.redeliver(endpoint["id"], log[0]["message_id"])
            receiver.wait_for(1)
        finally:
            receiver.close()


def test_redirects_are_not_followed_and_answers_are_capped(tmp_path):
    target = Receiver()
    redirect = Receiver([(302, {"Location": target.url})])
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        webhook_allow_loopback=True,
        webhook_poll_seconds=0.02,
        webhook_retry_scale=1.0,
    )
    with (
        LocalPlatform(settings=settings, workforce=False) as p,
        cynaps.Client(api_key=p.create_customer(), base_url=p.base_url, max_retries=0) as c,
    ):
        try:
            endpoint = c.webhooks.create_endpoint(redirect.url)
            c.webhooks.send_test(endpoint["id"])
            redirect.wait_for(1)
            deadline = time.monotonic() + 10
            while not (log := c.webhooks.attempts(endpoint["id"])):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert log[0]["status_code"] == 302 and "redirect" in log[0]["error"]
            assert target.received == []
            assert c.webhooks.deliveries(endpoint["id"])[0]["status"] == "pending"  # retried later
        finally:
            target.close()
            redirect.close()


def test_a_huge_or_slow_answer_is_cut_off():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Flood(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-length", str(50 * 1024 * 1024))
            self.end_headers()
            try:
                for _ in range(50 * 1024):
                    self.wfile.write(b"x" * 1024)
                    if self.path == "/slow":
                        time.sleep(0.05)
            except OSError:
                pass

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        sender = net.Sender(timeout=1.0, max_bytes=4096, allow_loopback=True)
        target = net.check_url(base + "/big", https_only=False, allow_loopback=True)
        answer = sender.post(target, b"{}", {"content-type": "application/json"})
        assert answer.status == 200 and answer.truncated and len(answer.head) == 4096
        sender = net.Sender(timeout=0.5, max_bytes=10 * 1024 * 1024, allow_loopback=True)
        slow = net.check_url(base + "/slow", https_only=False, allow_loopback=True)
        started = time.monotonic()
        with pytest.raises((TimeoutError, OSError)):
            sender.post(slow, b"{}", {})
        assert time.monotonic() - started < 2
    finally:
        server.shutdown()

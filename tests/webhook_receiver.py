"""A real HTTP receiver on 127.0.0.1 for webhook tests: records every request and answers with a
programmable script of (status, headers, body)."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """``answers``: list of (status, headers) used in order, then ``default`` (200)."""

    def __init__(self, answers: list[tuple[int, dict]] | None = None, hold: bool = False) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[float, dict, bytes]] = []
        self.hold = threading.Event() if hold else None  # first request waits until set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.received.append((time.time(), dict(self.headers), body))
                    first = len(receiver.received) == 1
                    status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                if first and receiver.hold is not None:
                    receiver.hold.wait(30)
                payload = b'{"ok": true}'
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[float, dict, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"received {len(self.received)} of {n} requests")
            time.sleep(0.01)
        return list(self.received)

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def loopback_platform(tmp_path_factory, name: str):
    """A platform that may deliver webhooks to loopback (as ``Client.local()``), its retry
    schedule compressed 1000× and its worker polling every 20 ms."""
    from cynaps_data.server.platform import LocalPlatform
    from cynaps_data.server.settings import Settings

    db = tmp_path_factory.mktemp(name) / "cynaps.db"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        webhook_allow_loopback=True,
        webhook_retry_scale=0.001,
        webhook_poll_seconds=0.02,
    )
    with LocalPlatform(settings=settings, workforce=False) as running:
        yield running

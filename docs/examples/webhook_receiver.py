"""A minimal webhook receiver (standard library only): verify, dedupe on ``webhook-id``, answer.

    CYNAPS_WEBHOOK_SECRET=whsec_... python docs/examples/webhook_receiver.py --port 8080

Register ``http://127.0.0.1:8080/`` on a local platform (``Client.local()`` allows loopback), or
your public HTTPS URL in production. The receiver answers 2xx only after the event is stored, so
an event is never acknowledged and then lost; a message seen before (same ``webhook-id``, e.g. a
retry whose first answer got lost) is acknowledged without being processed twice. Here the
"store" is a SQLite file; use your own database's unique key the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cynaps_data.errors import WebhookVerificationError
from cynaps_data.webhooks import verify

MAX_BODY = 1024 * 1024


def handle(event: dict) -> None:
    """Your processing. Runs once per webhook-id."""
    data = event["data"]
    if event["type"] == "project.state_changed" and data["new_state"] == "completed":
        print(f"project {data['project_id']} completed: export its results now")
    elif event["type"] == "tasks.finalised":
        print(f"{data['count']} tasks final in {data['project_id']}")
    else:
        print(event["type"], json.dumps(data))


def make_handler(secret: str, store: sqlite3.Connection, lock: threading.Lock):
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.answer(413)
                return
            body = self.rfile.read(length)
            try:
                event = verify(body, self.headers, secret, tolerance=300)
            except WebhookVerificationError as exc:
                print("rejected:", exc)
                self.answer(400)
                return
            msg_id = self.headers["webhook-id"]
            with lock, store:
                seen = (
                    store.execute("INSERT OR IGNORE INTO seen (id) VALUES (?)", (msg_id,)).rowcount
                    == 0
                )
                if not seen:
                    handle(event)  # inside the transaction: marked seen only if it succeeded
            self.answer(200)

        def answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    return Receiver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", default="webhooks-seen.db")
    args = parser.parse_args()
    secret = os.environ["CYNAPS_WEBHOOK_SECRET"]
    store = sqlite3.connect(args.db, check_same_thread=False)
    store.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(secret, store, threading.Lock())
    )
    print(f"listening on http://127.0.0.1:{args.port}/")
    server.serve_forever()


if __name__ == "__main__":
    main()

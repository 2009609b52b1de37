"""kill -9 of the platform between commit and delivery loses no webhook (issue 17): an event
whose attempt was in flight and one still in the outbox are both delivered after a restart,
the first with its original ``webhook-id``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cynaps_data as cynaps
from cynaps_data.server.settings import Settings

from .conftest import make_project
from .webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys, time
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings
p = LocalPlatform(settings=Settings.from_json(sys.argv[1]), workforce=False).start()
key = p.create_customer() if sys.argv[2] == "new" else ""
print(json.dumps({"base_url": p.base_url, "key": key}), flush=True)
time.sleep(3600)
"""


def start(settings: Settings, new_customer: bool) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, settings.to_json(), "new" if new_customer else "old"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    line = proc.stdout.readline()
    assert line, "the platform process did not start"
    return proc, json.loads(line)


def test_kill_9_between_commit_and_delivery_loses_nothing(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'crash.db'}",
        webhook_allow_loopback=True,
        webhook_poll_seconds=0.02,
        webhook_lease_seconds=2.0,
        webhook_timeout_seconds=30.0,
        # one delivery at a time, so the held attempt keeps the later event in the outbox
        # (with more, it may be delivered and then, unacknowledged at the kill, delivered
        # again: at-least-once allows that, but this test is about the outbox)
        webhook_concurrency=1,
        workforce=None,
    )
    receiver = Receiver(hold=True)  # the first request is held: the attempt is in flight
    first = second = None
    try:
        first, info = start(settings, new_customer=True)
        client = cynaps.Client(api_key=info["key"], base_url=info["base_url"], max_retries=0)
        endpoint = client.webhooks.create_endpoint(receiver.url)
        in_flight = client.webhooks.send_test(endpoint["id"])["message_id"]
        receiver.wait_for(1)
        # committed while the worker is busy: still in the outbox at the kill
        project = make_project(client)
        project.upload_tasks([{"text": "a"}])
        project.calculate_deposit()  # draft -> pending_deposit
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        receiver.hold.set()
        time.sleep(0.2)
        second, info = start(settings, new_customer=False)
        got = receiver.wait_for(3, timeout=30)
        time.sleep(0.3)
        ids = [h["webhook-id"] for _, h, _ in receiver.received]
        kinds = [json.loads(b)["type"] for _, _, b in receiver.received]
        assert ids.count(in_flight) == 2  # delivered again, with the same id
        assert kinds.count("project.state_changed") == 1
        state = next(json.loads(b) for _, _, b in got if json.loads(b)["type"] != "ping")
        assert state["data"] == {
            "project_id": project.id,
            "old_state": "draft",
            "new_state": "pending_deposit",
        }
        client = cynaps.Client(
            api_key=client.settings.api_key, base_url=info["base_url"], max_retries=0
        )
        assert {d["status"] for d in client.webhooks.deliveries(endpoint["id"])} == {"succeeded"}
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        receiver.close()

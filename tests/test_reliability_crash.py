"""Crash safety: the platform process is SIGKILLed at random moments and restarted on its file.

- A large upload with the real client is killed 20 times mid-way and resumed by running the
  same upload again (same external ids): exactly N tasks, no duplicates, data intact.
- A random sequence of money operations (top-ups, pay, annotate → finalise/charge, export →
  release, cancel → refund) is killed 20 times; every request is retried with its own
  Idempotency-Key until it has a definite answer. Afterwards the ledger balances, every
  transaction sums to zero, and each top-up and deposit payment was applied exactly once.

Deterministic seeds; sizes kept moderate for CI.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
import requests
import sqlalchemy as sa

import cynaps_data as cynaps
from cynaps_data.errors import APIConnectionError, CynapsError
from cynaps_data.server.db import Database, database_url
from cynaps_data.server.services.accounts import create_account
from cynaps_data.server.tables import ledger_entries, payments, projects, tasks

KILLS = 20
STARTING = 1_000_000
# A "zygote": imports the platform once, then forks a fresh platform process per start, so a
# restart costs milliseconds instead of a full interpreter start. Each platform process is a
# real server on the port, killed with SIGKILL by the test.
SERVER = """
import os, signal, sys, threading
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import RateLimit, Settings
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed platforms
for line in sys.stdin:
    if os.fork() == 0:
        settings = Settings(database_url=sys.argv[1], workforce=None,
                            idempotency_takeover_seconds=1.0,
                            rate_limit=RateLimit(per_second=1e6, burst=10**6))
        LocalPlatform(settings=settings, port=int(sys.argv[2]), workforce=False).start()
        print("ready", os.getpid(), flush=True)
        threading.Event().wait()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The platform in a child process on a fixed port and SQLite file."""

    def __init__(self, path: Path) -> None:
        self.url = database_url(path)
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.zygote = subprocess.Popen(
            [sys.executable, "-c", SERVER, self.url, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.pid: int | None = None

    def start(self) -> None:
        self.zygote.stdin.write("start\n")
        self.zygote.stdin.flush()
        line = self.zygote.stdout.readline().split()
        assert line and line[0] == "ready", f"platform did not start: {line!r}"
        self.pid = int(line[1])

    def kill(self) -> None:
        if self.pid is None:
            return
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        self.pid = None

    def close(self) -> None:
        self.kill()
        self.zygote.kill()
        self.zygote.wait(timeout=30)


@pytest.fixture
def server(tmp_path) -> Server:
    srv = Server(tmp_path / "crash.db")
    Database(srv.url).create_all()
    try:
        yield srv
    finally:
        srv.close()


def _customer(srv: Server) -> str:
    db = Database(srv.url)
    try:
        return create_account(db, role="customer", name="crash", starting_credits_cents=STARTING)[1]
    finally:
        db.dispose()


def test_upload_survives_sigkill_and_resumes_to_exactly_n_tasks(server: Server) -> None:
    n = 10_000
    rng = random.Random(20240607)
    key = _customer(server)
    items = [{"data": {"text": f"item {i}", "i": i}, "external_id": f"ext-{i}"} for i in range(n)]
    server.start()
    with cynaps.Client(api_key=key, base_url=server.base_url, max_retries=0) as client:
        project_id = client.projects.create(name="crash upload", labels=["a", "b"]).id
        # calibrate: how long one whole upload takes here, so kills land inside uploads
        calibration = client.projects.create(name="calibration", labels=["a", "b"])
        began = time.monotonic()
        calibration.upload_tasks(items, batch_size=500)
        full = time.monotonic() - began
    interrupted = 0
    for _ in range(KILLS):
        outcome: list = []

        def upload(outcome: list = outcome) -> None:
            try:
                with cynaps.Client(api_key=key, base_url=server.base_url, max_retries=0) as c:
                    outcome.append(c.projects.get(project_id).upload_tasks(items, batch_size=500))
            except (APIConnectionError, CynapsError, requests.RequestException) as exc:
                outcome.append(exc)

        worker = threading.Thread(target=upload)
        worker.start()
        time.sleep(rng.uniform(0.05, 0.9) * full)
        server.kill()
        worker.join(timeout=60)
        assert not worker.is_alive()
        interrupted += isinstance(outcome[0], Exception)
        server.start()
    assert interrupted >= KILLS // 2, f"only {interrupted} of {KILLS} kills hit an upload"
    with cynaps.Client(api_key=key, base_url=server.base_url, max_retries=0) as client:
        result = client.projects.get(project_id).upload_tasks(items, batch_size=500)
    assert result.project_task_count == n
    server.kill()
    db = Database(server.url)
    with db.read() as conn:
        rows = conn.execute(
            sa.select(tasks.c.external_id, tasks.c.data).where(tasks.c.project_id == project_id)
        ).all()
    db.dispose()
    assert len(rows) == n and len({r.external_id for r in rows}) == n
    for ext, data in rows:
        assert orjson.loads(data)["i"] == int(ext.removeprefix("ext-"))


class Driver:
    """Random money operations, each retried across crashes with its own Idempotency-Key."""

    def __init__(self, server: Server, key: str, rng: random.Random) -> None:
        self.server = server
        self.h = {"Authorization": f"Bearer {key}"}
        self.rng = rng
        self.topups: list[int] = []  # cents of every top-up that got a definite success
        self.deposits: dict[str, int] = {}
        self.projects: list[str] = []
        self.annotators: list[dict] = []
        self.expert: dict = {}
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.steps = 0  # operations finished (the kills wait for progress, not for a clock)

    def send(self, method: str, path: str, body=None, headers=None) -> requests.Response | None:
        """Send until a definite answer (the server may be dead or restarting)."""
        headers = {**(headers or self.h)}
        if method == "POST":
            headers["Idempotency-Key"] = f"crash-{uuid.uuid4().hex}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = requests.request(
                    method, self.server.base_url + path, json=body, headers=headers, timeout=30
                )
            except requests.RequestException:
                time.sleep(0.1)
                continue
            if r.status_code >= 500:
                self.errors.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
                return r
            if r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_in_use":
                time.sleep(0.2)
                continue
            return r
        self.errors.append(f"{method} {path}: no answer in 60 s")
        return None

    def setup(self) -> None:
        for role in ("annotator", "annotator", "expert"):
            r = self.send("POST", "/v1/annotators", {"name": role, "role": role})
            member = {"Authorization": f"Bearer {r.json()['api_key']}"}
            (self.annotators.append(member) if role == "annotator" else self.expert.update(member))

    def step(self) -> None:
        op = self.rng.choice(
            ["topup", "project", "pay", "work", "work", "work", "review", "export", "cancel"]
        )
        if op == "topup":
            cents = self.rng.randint(100, 50_000)
            r = self.send(
                "POST", "/v1/billing/topups", {"amount": cents / 100, "payment_method": "card"}
            )
            if r is not None and (r.status_code == 201 or _lost(r)):
                self.topups.append(cents)
        elif op == "project" and len(self.projects) < 4:
            r = self.send(
                "POST",
                "/v1/projects",
                {
                    "name": "crash ledger",
                    "labels": ["a", "b"],
                    "quality_settings": {"min_annotators": 2, "enable_expert_review": True},
                },
            )
            if r is not None and r.status_code == 201:
                pid = r.json()["id"]
                batch = {"tasks": [{"data": {"i": i}, "external_id": str(i)} for i in range(3)]}
                self.send("POST", f"/v1/projects/{pid}/tasks/batch", batch)
                self.projects.append(pid)
        elif op == "pay" and self.projects:
            pid = self.rng.choice(self.projects)
            method = self.rng.choice(["card", "credits"])
            self.send("POST", f"/v1/projects/{pid}/deposit/quote")
            self.send("POST", f"/v1/projects/{pid}/deposit/pay", {"payment_method": method})
            self.send("POST", f"/v1/projects/{pid}/start")
        elif op == "work" and self.annotators:
            who = self.rng.choice(self.annotators)
            r = self.send("GET", "/v1/annotator/next", headers=who)
            if r is not None and r.status_code == 200:
                label = self.rng.choice(["a", "b"])
                self.send(
                    "POST",
                    f"/v1/annotator/tasks/{r.json()['task_id']}/judgements",
                    {"label": label},
                    who,
                )
        elif op == "review" and self.expert:
            r = self.send("GET", "/v1/review/next", headers=self.expert)
            if r is not None and r.status_code == 200:
                self.send(
                    "POST",
                    f"/v1/review/tasks/{r.json()['task_id']}/decision",
                    {"label": "a"},
                    self.expert,
                )
        elif op == "export" and self.projects:
            self.send("GET", f"/v1/projects/{self.rng.choice(self.projects)}/export")
        elif op == "cancel" and self.projects and self.rng.random() < 0.3:
            self.send("POST", f"/v1/projects/{self.rng.choice(self.projects)}/cancel")

    def run(self) -> None:
        while not self.stop.is_set():
            self.step()
            self.steps += 1

    def wait_for_steps(self, n: int, timeout: float = 120.0) -> None:
        """Block until ``n`` more operations finished (however slow the machine is)."""
        target = self.steps + n
        deadline = time.monotonic() + timeout
        while self.steps < target and time.monotonic() < deadline and not self.errors:
            time.sleep(0.02)


def _lost(r: requests.Response) -> bool:
    return r.status_code == 409 and r.json()["error"]["code"] == "idempotency_response_lost"


def test_ledger_survives_sigkill_mid_operation(server: Server) -> None:
    rng = random.Random(424242)
    key = _customer(server)
    server.start()
    driver = Driver(server, key, random.Random(7))
    driver.setup()
    worker = threading.Thread(target=driver.run)
    worker.start()
    try:
        # a kill lands after a few finished operations and part-way into the next ones, so the
        # driver does the same amount of work on a loaded machine as on a quiet one
        for _ in range(KILLS):
            driver.wait_for_steps(rng.randint(2, 4))
            time.sleep(rng.uniform(0.0, 0.3))
            server.kill()
            time.sleep(rng.uniform(0.0, 0.2))
            server.start()
        driver.wait_for_steps(5)
    finally:
        driver.stop.set()
        worker.join(timeout=120)
    server.kill()
    assert not driver.errors, driver.errors[:5]

    db = Database(server.url)
    with db.read() as conn:
        entries = conn.execute(
            sa.select(
                ledger_entries.c.txn_id,
                ledger_entries.c.account,
                ledger_entries.c.kind,
                ledger_entries.c.project_id,
                ledger_entries.c.amount_cents,
                ledger_entries.c.memo,
            )
        ).all()
        pays = conn.execute(sa.select(payments)).all()
        states = dict(conn.execute(sa.select(projects.c.id, projects.c.state)).all())
    db.dispose()
    per_txn: dict[str, int] = defaultdict(int)
    balances: dict[str, int] = defaultdict(int)
    refunds: dict[str, int] = defaultdict(int)
    for txn, account, kind, pid, cents, _memo in entries:
        per_txn[txn] += cents
        balances[account] += cents
        if kind == "deposit_refund" and cents > 0:
            refunds[pid] += 1
    assert all(total == 0 for total in per_txn.values()), "a transaction does not sum to zero"
    assert sum(balances.values()) == 0
    for account, cents in balances.items():
        if account.split(":")[0] in ("deposit_hold", "escrow", "earnings"):
            assert cents >= 0, (account, cents)
    assert all(n <= 1 for n in refunds.values()), refunds
    for pid, state in states.items():
        if state in ("completed", "cancelled"):
            assert balances[f"deposit_hold:{pid}"] == 0
    # each successful outside payment is one ledger transaction, and each top-up the driver
    # saw succeed (or applied-but-lost) is exactly one payment: none applied twice, none lost
    succeeded = [p for p in pays if p.status == "succeeded"]
    payment_txns = {txn for txn, _, kind, *_ in entries if kind == "payment"}
    assert len(succeeded) == len(payment_txns)
    topups = sorted(p.amount_cents for p in succeeded if p.project_id is None)
    assert topups == sorted(driver.topups)
    deposit_payments = defaultdict(int)
    for p in succeeded:
        if p.project_id is not None:
            deposit_payments[p.project_id] += 1
    assert all(n == 1 for n in deposit_payments.values()), deposit_payments
    outside = sum(p.amount_cents for p in succeeded)
    customer = sum(v for k, v in balances.items() if k.startswith("customer:"))
    held = sum(
        v for k, v in balances.items() if k.split(":")[0] in ("deposit_hold", "escrow", "earnings")
    )
    assert customer + held == STARTING + outside
    assert len(driver.topups) >= 3 and len(driver.projects) >= 1  # the program did real work

"""Assignment under concurrency: 50 annotator threads finish a 2,000-task project.

The platform runs as ``cynaps serve`` in its own process (a real uvicorn server on 127.0.0.1,
SQLite file), once as one server process and once as ``--workers 2``. Each thread is one annotator with its own key, working through the HTTP API
exactly as the workbench page does (submit-and-next, occasional skips). The policy is
``min_annotators=3`` without expert review, so a disagreement asks for one more annotator (up
to ``max_annotators=5``): how many judgements a task needs depends on the votes it got, which
the assertions replay independently.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import fresh_postgres_database, postgres_base_url

ANNOTATORS = 50
TASKS = 2000
POSTGRES_TASKS = 300
LABELS = ["a", "b", "c"]
QUALITY = {
    "min_annotators": 3,
    "consensus_threshold": 0.66,
    "enable_expert_review": False,
    "max_annotators": 5,
}
DEADLINE_SECONDS = 120.0


def _serve(db: Path | str, config: Path, workers: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "cynaps_data.cli",
            "serve",
            "--db",
            str(db),
            "--port",
            "0",
            "--no-workforce",
            "--config",
            str(config),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if " on http://" not in line:
        process.kill()
        raise RuntimeError(f"cynaps serve did not start: {line}{process.stdout.read()}")
    base = line.split(" on ", 1)[1].split()[0]
    return process, base


@pytest.fixture(
    scope="module",
    params=[1, 2, "postgresql"],
    ids=["one-process", "two-worker-processes", "two-processes-postgresql"],
)
def server(request, tmp_path_factory) -> Iterator[tuple[str, str, int]]:
    """``(base_url, customer_key, n_tasks)`` of a ``cynaps serve`` subprocess: one server process, or
    ``--workers 2`` (two processes writing the same SQLite file, taking turns through a lock),
    or ``--workers 2`` on one PostgreSQL database (sharing nothing else)."""
    tmp = tmp_path_factory.mktemp("concurrency")
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            if postgres_base_url() is None:
                pytest.skip("no PostgreSQL server")
            db, workers = stack.enter_context(fresh_postgres_database("cynaps_conc")), 2
        else:
            db, workers = tmp / "cynaps.db", request.param
        process, base = _serve(db, tmp / "config.json", workers)
        try:
            key = json.loads((tmp / "config.json").read_text())["api_key"]
            # PostgreSQL: fewer tasks, the same 50 annotators (a loaded CI machine runs the
            # database beside both server processes and the 50 threads)
            yield base, key, TASKS if request.param != "postgresql" else POSTGRES_TASKS
        finally:
            process.terminate()
            process.wait(timeout=20)


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def _label(member: int, task_id: int) -> str:
    """Deterministic votes: most tasks unanimous, every tenth one split between annotators."""
    if task_id % 10:
        return LABELS[task_id % len(LABELS)]
    return LABELS[_digest(member, task_id) % len(LABELS)]


def _expected_count(votes: list[str]) -> int:
    """How many judgements the policy wants for these votes (in commit order)."""
    needed = QUALITY["min_annotators"]
    while True:
        counts = Counter(votes[:needed]).most_common()
        if len(votes) < needed:
            return needed  # fewer than needed: reported as a mismatch by the caller
        top = counts[0][1]
        tied = len(counts) > 1 and counts[1][1] == top
        if (top / needed >= QUALITY["consensus_threshold"] and not tied) or needed >= QUALITY[
            "max_annotators"
        ]:
            return needed
        needed += 1


class Annotator(threading.Thread):
    """One annotator on its own keep-alive connection (``http.client``: light on the GIL)."""

    def __init__(self, index: int, base: str, key: str, done: threading.Event) -> None:
        super().__init__(name=f"annotator-{index}", daemon=True)
        self.index, self.done = index, done
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.submitted: list[tuple[int, str]] = []
        self.skipped: list[int] = []
        self.errors: list[str] = []

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        self.conn.request(
            method, path, body=None if body is None else json.dumps(body), headers=self.headers
        )
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)

    def run(self) -> None:
        try:
            task = None
            while not self.done.is_set():
                if task is None:
                    status, task = self.call("GET", "/v1/annotator/next")
                    if status == 204:
                        time.sleep(0.05)  # others' disagreements may still open a slot
                        continue
                    assert status == 200, task
                task_id = task["task_id"]
                if _digest("skip", self.index, task_id) % 100 == 0:
                    status, answer = self.call("POST", f"/v1/annotator/tasks/{task_id}/skip")
                    assert status == 200, answer
                    self.skipped.append(task_id)
                    task = None
                    continue
                label = _label(self.index, task_id)
                status, answer = self.call(
                    "POST", f"/v1/annotator/tasks/{task_id}/judgements?next=true", {"label": label}
                )
                assert status == 201, answer
                self.submitted.append((task_id, label))
                task = answer["next"]
        except Exception as exc:  # reported by the test, never swallowed
            self.errors.append(f"{self.name}: {exc!r}")
        finally:
            self.conn.close()


def test_fifty_annotators_finish_two_thousand_tasks(server: tuple[str, str, int]) -> None:
    base, customer, n_tasks = server
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {customer}"

    def ok(method: str, path: str, **kw) -> dict:
        response = http.request(method, base + path, timeout=120, **kw)
        assert response.status_code in (200, 201), response.text
        return response.json()

    pid = ok(
        "POST",
        "/v1/projects",
        json={
            "name": "Concurrency",
            "annotation_type": "classification",
            "labels": LABELS,
            "quality_settings": QUALITY,
        },
    )["id"]
    ok(
        "POST",
        f"/v1/projects/{pid}/tasks/batch",
        json={
            "tasks": [
                {"data": {"text": f"item {i}"}, "external_id": f"t{i}"} for i in range(n_tasks)
            ]
        },
    )
    ok("POST", f"/v1/projects/{pid}/deposit/quote")
    ok(
        "POST", f"/v1/projects/{pid}/deposit/pay", json={"payment_method": "card"}
    )  # sandbox-simulated
    # the deposit covers min_annotators; each escalation of a split task reserves one more
    # judgement from the balance (issue 12), and without the money a task is finalised by
    # plurality instead; charges draw on the balance before the deposit hold, so the balance
    # must carry the charges too: fund it generously so the policy, not the money, decides
    # the counts checked below
    extra_cents = n_tasks * (QUALITY["max_annotators"] - QUALITY["min_annotators"]) * 1500
    ok(
        "POST",
        "/v1/billing/topups",
        json={"amount": 10 * extra_cents / 100, "payment_method": "card"},
    )
    keys = {}
    for i in range(ANNOTATORS):
        member = ok("POST", "/v1/annotators", json={"name": f"Worker {i}", "role": "annotator"})
        keys[member["id"]] = member["api_key"]
    ok("POST", f"/v1/projects/{pid}/start")

    done = threading.Event()
    workers = [Annotator(i, base, key, done) for i, key in enumerate(keys.values())]
    ids = dict(zip([w.index for w in workers], keys, strict=True))
    for worker in workers:
        worker.start()
    # PostgreSQL: the database shares the two cores with both server processes and 50 threads
    deadline = time.monotonic() + DEADLINE_SECONDS * (1 if n_tasks == TASKS else 2)
    while time.monotonic() < deadline and not any(w.errors for w in workers):
        if ok("GET", f"/v1/projects/{pid}/status")["state"] == "completed":
            break
        time.sleep(0.25)
    done.set()
    for worker in workers:
        worker.join(timeout=30)
    assert [e for w in workers for e in w.errors] == []

    status = ok("GET", f"/v1/projects/{pid}/status")
    assert (status["state"], status["completed"], status["total"]) == (
        "completed",
        n_tasks,
        n_tasks,
    )
    records = ok("GET", f"/v1/projects/{pid}/export")
    assert len(records) == n_tasks

    # None lost, none invented: the export holds exactly the judgements that got a 201.
    sent = Counter((task, ids[w.index], label) for w in workers for task, label in w.submitted)
    stored = Counter(
        (r["id"], j["annotator_id"], j["label"]) for r in records for j in r["judgements"]
    )
    assert stored == sent
    assert sum(sent.values()) == status["judgements"] >= 3 * n_tasks
    # None twice by one annotator; a task skipped by someone was never judged by them.
    pairs = Counter((task, annotator) for task, annotator, _ in stored.elements())
    assert max(pairs.values()) == 1
    skipped = {(task, ids[w.index]) for w in workers for task in w.skipped}
    assert skipped and not skipped & set(pairs)
    # Every task has exactly the judgements its policy needs, and the label the votes give.
    wrong = []
    for record in records:
        votes = [j["label"] for j in record["judgements"]]
        if len(votes) != _expected_count(votes):
            wrong.append((record["id"], votes))
        top = Counter(votes).most_common()
        assert record["annotations"][0]["result"]["value"] in {
            label for label, n in top if n == top[0][1]
        }
    assert wrong == []
    assert any(len(r["judgements"]) > 3 for r in records)  # the split tasks did ask for more
    assert len({ids[w.index] for w in workers if w.submitted}) == ANNOTATORS


def test_worker_processes_get_every_setting(tmp_path, monkeypatch):
    """``cynaps serve --workers N`` hands its settings to each worker process through the
    environment: all of them, not only the database URL (the sandbox workforce stays in the
    parent)."""
    from cynaps_data.server.settings import RateLimit, Settings, WorkforceSettings
    from cynaps_data.server.workers import ENV, app_from_env

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'w.db'}",
        max_batch_tasks=7,
        rate_limit=RateLimit(per_second=3.5, burst=9),
        workforce=WorkforceSettings(annotators=2, accuracy=(0.6, 0.7)),
        asset_dir=str(tmp_path / "assets"),
        assignment_ttl_seconds=12.0,
    )
    assert Settings.from_json(settings.to_json()) == settings
    monkeypatch.setenv(ENV, settings.to_json())
    app = app_from_env()
    got = app.state.settings
    assert got.workforce is None
    got.workforce = settings.workforce
    assert got == settings

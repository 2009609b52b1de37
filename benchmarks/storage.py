"""The same workload on SQLite (baseline) and PostgreSQL, through the client, over HTTP.

    python benchmarks/storage.py --postgres postgresql://cynaps:cynaps@127.0.0.1:5432/cynaps_test

Each backend gets a fresh database (PostgreSQL: a new database created and dropped on the given
server) and its own ``cynaps serve`` process. Workloads: a 200,000-task upload (tasks/s), then
500 idempotent top-ups, one at a time (requests/s; each is a ledger write plus the
Idempotency-Key claim and its committed mark). Prints each figure and the PostgreSQL/SQLite
ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

import cynaps_data as cynaps

try:
    from ._platform import free_port
except ImportError:  # run as a script
    from _platform import free_port


def serve(db: str, tmp: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    config = tmp / f"config-{port}.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cynaps_data.cli",
            "serve",
            "--db",
            db,
            "--port",
            str(port),
            "--config",
            str(config),
            "--no-workforce",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while not config.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", json.loads(config.read_text())["api_key"]


def workload(base: str, key: str, n_tasks: int, n_topups: int) -> tuple[float, float]:
    with cynaps.Client(api_key=key, base_url=base) as client:
        project = client.projects.create(name="storage bench", labels=["a", "b"])
        tasks = [
            {"data": {"text": f"item {i}", "i": i}, "external_id": str(i)} for i in range(n_tasks)
        ]
        start = time.perf_counter()
        project.upload_tasks(tasks)
        upload_rate = n_tasks / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(n_topups):
            client.top_up(1, payment_method="card")
        topup_rate = n_topups / (time.perf_counter() - start)
    return upload_rate, topup_rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CYNAPS_TEST_POSTGRES_URL"))
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--topups", type=int, default=500)
    args = parser.parse_args()
    if not args.postgres:
        sys.exit("pass --postgres URL (a server where the role may CREATE DATABASE)")
    import psycopg

    results = {}
    with tempfile.TemporaryDirectory(prefix="cynaps-storage-") as tmp:
        name = f"cynaps_bench_{secrets.token_hex(4)}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            pg_url = args.postgres.rsplit("/", 1)[0] + "/" + name
            for backend, db in (("sqlite", str(Path(tmp) / "bench.db")), ("postgresql", pg_url)):
                proc, base, key = serve(db, Path(tmp))
                try:
                    requests.get(base + "/healthz", timeout=10).raise_for_status()
                    results[backend] = workload(base, key, args.tasks, args.topups)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    (s_up, s_top), (p_up, p_top) = results["sqlite"], results["postgresql"]
    print(f"== Storage backends: {args.tasks:,}-task upload, {args.topups} idempotent top-ups ==")
    print(
        f"  upload   PostgreSQL {p_up:>10,.0f} tasks/s | SQLite {s_up:>10,.0f} tasks/s | ratio {p_up / s_up:.2f}x"
    )
    print(
        f"  top-ups  PostgreSQL {p_top:>10,.0f} req/s   | SQLite {s_top:>10,.0f} req/s   | ratio {p_top / s_top:.2f}x"
    )


if __name__ == "__main__":
    main()

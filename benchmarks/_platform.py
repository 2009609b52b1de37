"""Run the platform in a separate process for benchmarks (so client and server use both cores)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_database_url(parser: Any) -> None:
    """``--database-url``: run the platform on a fresh database of this PostgreSQL server
    (created for the run and dropped after) instead of a fresh SQLite file."""
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server URL (the role may CREATE DATABASE); default: a SQLite file",
    )


class ServerProcess:
    """``cynaps serve`` in a subprocess on a fresh SQLite file, or on a fresh database of the
    PostgreSQL server ``database_url`` (dropped at :meth:`stop`); ``.key`` is a customer key."""

    def __init__(
        self,
        db: Path | None = None,
        workforce: bool = False,
        workers: int = 1,
        database_url: str | None = None,
    ) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="cynaps-bench-")
        self.server_url = database_url
        self.pg_name: str | None = None
        if database_url:
            import psycopg

            self.pg_name = f"cynaps_bench_{secrets.token_hex(4)}"
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            db = database_url.rsplit("/", 1)[0] + "/" + self.pg_name  # type: ignore[assignment]
        self.db = db or Path(self.tmp.name) / "bench.db"
        self.port = free_port()
        self.config = Path(self.tmp.name) / "config.json"
        args = [
            sys.executable,
            "-m",
            "cynaps_data.cli",
            "serve",
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            "--config",
            str(self.config),
        ]
        if not workforce:
            args.append("--no-workforce")
        if workers > 1:
            args += ["--workers", str(workers)]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        while not self.config.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.proc.stdout.read().decode()}")
            time.sleep(0.05)
        self.key = json.loads(self.config.read_text())["api_key"]
        self.base_url = f"http://127.0.0.1:{self.port}"
        requests.get(self.base_url + "/healthz", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.tmp.cleanup()
        if self.pg_name and self.server_url:
            import psycopg

            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Run the platform in a separate process for benchmarks (so client and server use both cores)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``cynaps serve`` in a subprocess on a fresh SQLite file; ``.key`` is a customer key."""

    def __init__(self, db: Path | None = None, workforce: bool = False, workers: int = 1) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="cynaps-bench-")
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

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

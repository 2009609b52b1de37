"""``Client.local()``, ``wait()`` and ``cynaps serve``: the embedded and standalone platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

import cynaps_data as cynaps
from cynaps_data.errors import APIConnectionError, APITimeoutError
from cynaps_data.server.settings import WorkforceSettings

from .conftest import started_project


def _run_small_project(client: cynaps.Client, n: int):
    """``n`` text tasks through the seed flow on ``client``'s platform; the final status."""
    project = started_project(client, [{"text": f"item {i}"} for i in range(n)])
    return project.wait(poll_interval=0.1, timeout=60, progress=False)


def test_local_client_runs_a_project_with_the_sandbox_workforce_and_stops(tmp_path):
    fast = WorkforceSettings(annotators=4, experts=1, seconds_per_judgement=0.02)
    with cynaps.Client.local(tmp_path / "local.db", workforce=fast) as client:
        assert client.me()["role"] == "customer"
        assert client.settings.api_key.startswith("sk_test_")
        status = _run_small_project(client, 6)
        assert (status.state, status.completed, status.total) == ("completed", 6, 6)
        base_url = client.settings.base_url
    assert (tmp_path / "local.db").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url + "/healthz", timeout=2)
    with pytest.raises(APIConnectionError):
        cynaps.Client(api_key="sk_test_x", base_url=base_url, max_retries=0).projects.list()


def test_local_platform_ignores_proxy_environment(tmp_path, monkeypatch):
    """The embedded platform, its sandbox workforce and the client of ``Client.local()`` talk on
    loopback only: a proxy set in the environment (common on company machines) must not route
    that traffic, and the workforce must not read the environment on every request (a thread
    reading os.environ while another changes it once killed a simulated annotator)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing listens
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    fast = WorkforceSettings(annotators=3, experts=1, seconds_per_judgement=0.02)
    with cynaps.Client.local(tmp_path / "proxied.db", workforce=fast) as client:
        status = _run_small_project(client, 4)
        assert (status.state, status.completed) == ("completed", 4)


def test_wait_times_out_with_a_clear_error(client):
    project = started_project(client, [{"text": "nobody will label me"}])
    with pytest.raises(
        APITimeoutError, match=r"not complete after .* \(0/1 tasks, state 'active'\)"
    ):
        project.wait(poll_interval=0.05, timeout=0.2, progress=False)


def test_cynaps_serve_writes_a_config_that_client_reads(tmp_path):
    config = tmp_path / "config.json"
    port = 18765 + os.getpid() % 1000
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cynaps_data.cli",
            "serve",
            "--db",
            str(tmp_path / "s.db"),
            "--port",
            str(port),
            "--config",
            str(config),
            "--no-workforce",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not config.exists():
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "serve did not write its config"
            time.sleep(0.05)
        settings = json.loads(config.read_text())
        assert settings["base_url"] == f"http://127.0.0.1:{port}"
        assert settings["api_key"].startswith("sk_test_")
        client = cynaps.Client.from_config(config)
        assert client.projects.list() == []
        assert client.balance()["available"] == "10000.00"
    finally:
        server.terminate()
        assert server.wait(timeout=20) == 0

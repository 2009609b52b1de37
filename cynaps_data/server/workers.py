"""``cynaps serve --workers N``: the platform in N uvicorn worker processes on one database.

The parent process prepares the database (schema, the sandbox customer, the workforce
accounts), binds the socket, and runs uvicorn's process supervisor; each worker builds its own
app with :func:`app_from_env` (uvicorn's app factory) from the settings the parent put in the
environment. The sandbox workforce, if any, runs in the parent and talks to the workers over
HTTP like any annotator.

What is per process (documented in docs/annotators.md): the rate limiter's buckets (a key may
make N times its limit), the 2-second authentication cache (a revoked key stops working within
2 s in every process), the workbench's write queue (processes take turns on SQLite through a
``flock`` on ``<database>-workbench.lock``), and the expiry sweep's clock.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from .settings import Settings

ENV = "CYNAPS_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """The app of one worker process (uvicorn ``factory=True``), from ``$CYNAPS_SERVE_SETTINGS``."""
    from .app import create_app

    settings = Settings.from_json(os.environ[ENV])
    settings.workforce = None  # the sandbox workforce runs once, in the parent
    app = create_app(settings)
    if settings.webhook_worker:  # every process delivers (claims are safe across processes)
        from .webhook_worker import WebhookWorker

        app.state.webhooks = WebhookWorker(app.state.db, settings).start()
    return app


def serve(
    settings: Settings, host: str, port: int, workers: int, *, workforce: bool, on_ready
) -> None:
    """Run until SIGINT/SIGTERM. ``on_ready(base_url, platform_db)`` runs once the workers answer."""
    import requests

    from .db import Database
    from .services.accounts import create_account
    from .workforce import Workforce, enlist

    db = Database(settings.database_url)
    db.create_all()
    create_account(db, role="admin", name="Local admin", sandbox=settings.sandbox)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    os.environ[ENV] = settings.to_json()  # every setting reaches every worker
    config = uvicorn.Config(
        "cynaps_data.server.workers:app_from_env",
        factory=True,
        workers=workers,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
    )
    running: dict = {}

    def when_up() -> None:
        probe = requests.Session()
        probe.trust_env = False  # loopback: no proxy from the environment
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if probe.get(base_url + "/healthz", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        if workforce and settings.workforce is not None:
            members = enlist(db, settings.workforce, settings.sandbox)
            running["workforce"] = Workforce(db, base_url, members, settings.workforce).start()
        on_ready(base_url, db)

    threading.Thread(target=when_up, name="cynaps-ready", daemon=True).start()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if "workforce" in running:
            running["workforce"].stop()
        db.dispose()

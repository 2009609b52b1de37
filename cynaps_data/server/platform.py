"""Run the platform: uvicorn in a background thread plus the sandbox workforce.

Used by ``Client.local()`` (embedded in the caller's process) and ``cynaps serve``.
"""

from __future__ import annotations

import atexit
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from .app import create_app
from .db import Database, database_url
from .services.accounts import create_account
from .settings import Settings, WorkforceSettings
from .webhook_worker import WebhookWorker
from .workforce import Workforce, enlist


class LocalPlatform:
    """A running platform on 127.0.0.1. Use as a context manager or call :meth:`stop`."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workforce: WorkforceSettings | None | bool = True,
        settings: Settings | None = None,
        webhook_allow_loopback: bool | None = None,
    ) -> None:
        self._tmp = None
        if db is None and settings is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cynaps-")
            db = Path(self._tmp.name) / "cynaps.db"
        if settings is None:
            settings = Settings(database_url=database_url(db))
        if workforce is True:
            workforce = settings.workforce or WorkforceSettings()
        elif workforce is False:
            workforce = None
        settings.workforce = workforce
        if webhook_allow_loopback is not None:
            settings.webhook_allow_loopback = webhook_allow_loopback
        self.settings = settings
        self.host = host
        self.port = port
        self.db = Database(settings.database_url)
        self.app = create_app(settings, self.db)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.workforce: Workforce | None = None
        self.webhooks: WebhookWorker | None = None
        self.admin_key: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalPlatform:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="cynaps-platform", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"The local platform did not start on {self.base_url}")
            time.sleep(0.01)
        _, self.admin_key = create_account(
            self.db, role="admin", name="Local admin", sandbox=self.settings.sandbox
        )
        if self.settings.webhook_worker:
            self.webhooks = WebhookWorker(self.db, self.settings).start()
        if self.settings.workforce is not None:
            members = enlist(self.db, self.settings.workforce, self.settings.sandbox)
            self.workforce = Workforce(
                self.db, self.base_url, members, self.settings.workforce
            ).start()
        atexit.register(self.stop)
        return self

    def create_customer(self, name: str = "Sandbox customer") -> str:
        """A new sandbox customer with starting credits; returns its API key."""
        _, key = create_account(
            self.db,
            role="customer",
            name=name,
            sandbox=self.settings.sandbox,
            starting_credits_cents=self.settings.starting_credits_cents,
        )
        return key

    def create_member(self, role: str, name: str, owner_key: str | None = None) -> str:
        """A new annotator/expert (platform pool, or a customer's team); returns its key."""
        owner = None
        if owner_key is not None:
            from .services.accounts import authenticate

            owner = authenticate(self.db, f"Bearer {owner_key}").account_id
        _, key = create_account(
            self.db, role=role, name=name, owner_id=owner, sandbox=self.settings.sandbox
        )
        return key

    def stop(self) -> None:
        if self.workforce is not None:
            self.workforce.stop()
            self.workforce = None
        if self.webhooks is not None:
            self.webhooks.stop()
            self.webhooks = None
        if self.server is not None:
            self.server.should_exit = True
            if self.thread is not None:
                self.thread.join(timeout=10)
            self.server = None
        self.db.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalPlatform:
        return self if self.server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

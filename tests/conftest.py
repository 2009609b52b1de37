"""Shared fixtures: a real platform on 127.0.0.1 (uvicorn thread, real SQLite file).

``platform`` has no sandbox workforce, so tests decide who labels what; ``staffed_platform``
runs the simulated workforce. ``client`` is a fresh customer on ``platform``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import cynaps_data as cynaps
from cynaps_data.server.db import database_url
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings, WorkforceSettings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED_LABELS = ["Electronics", "Clothing", "Home & Garden", "Sports", "Other"]


@pytest.fixture(scope="session")
def platform(tmp_path_factory) -> Iterator[LocalPlatform]:
    db = tmp_path_factory.mktemp("platform") / "cynaps.db"
    with LocalPlatform(db, workforce=False) as running:
        yield running


@pytest.fixture(scope="session")
def staffed_platform(tmp_path_factory) -> Iterator[LocalPlatform]:
    db = tmp_path_factory.mktemp("staffed") / "cynaps.db"
    workforce = WorkforceSettings(annotators=5, experts=1, seconds_per_judgement=0.05)
    with LocalPlatform(db, workforce=workforce) as running:
        yield running


@pytest.fixture
def client(platform: LocalPlatform) -> Iterator[cynaps.Client]:
    with cynaps.Client(
        api_key=platform.create_customer(), base_url=platform.base_url, max_retries=0
    ) as c:
        yield c


@pytest.fixture
def annotator_key(platform: LocalPlatform):
    """A factory of platform-pool annotator keys."""
    return lambda name="Test annotator", role="annotator": platform.create_member(role, name)


def make_project(client: cynaps.Client, **overrides) -> cynaps.Project:
    options = {
        "name": "Test project",
        "annotation_type": "classification",
        "labels": SEED_LABELS,
        "instructions": "Pick one.",
        "quality_settings": {
            "min_annotators": 3,
            "consensus_threshold": 0.66,
            "enable_expert_review": True,
        },
    }
    options.update(overrides)
    return client.projects.create(**options)


# -- storage backends (issue 7): SQLite always, PostgreSQL when CYNAPS_TEST_POSTGRES_URL is set --
POSTGRES_URL_ENV = "CYNAPS_TEST_POSTGRES_URL"


def postgres_base_url() -> str | None:
    """The PostgreSQL server the tests may use (``.ci/run`` starts one and sets the variable)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(f"{POSTGRES_URL_ENV} is not set in CI: .ci/run must start PostgreSQL")
    return url


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "cynaps_t") -> Iterator[str]:
    """A new empty database on the test server (dropped afterwards); yields its URL."""
    import psycopg

    base = postgres_base_url()
    if not base:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_ENV}")
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        _drop_database(base, name)


def _drop_database(base: str, name: str) -> None:
    """Drop a test database. A server process of another role (an autovacuum worker on a busy
    machine) can refuse ``FORCE`` for a moment: retry, then leave the throwaway database with a
    warning rather than fail the test that used it."""
    import time
    import warnings

    import psycopg

    for attempt in range(40):
        try:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            time.sleep(0.25 * (1 + attempt % 4))
    warnings.warn(f"test database {name} could not be dropped; left behind", stacklevel=2)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend_url(request, tmp_path_factory) -> Iterator[str]:
    """A fresh database URL per session on each backend (SQLite file, PostgreSQL database)."""
    if request.param == "sqlite":
        yield database_url(tmp_path_factory.mktemp("sqlite") / "cynaps.db")
    else:
        with fresh_postgres_database() as url:
            yield database_url(url)


@pytest.fixture(scope="session")
def backend_platform(backend_url: str) -> Iterator[LocalPlatform]:
    """A platform without workforce on each storage backend (tests use fresh accounts)."""
    with LocalPlatform(settings=Settings(database_url=backend_url), workforce=False) as running:
        yield running

"""Shared fixtures and helpers: a real platform on 127.0.0.1 (uvicorn thread, real SQLite file).

``platform`` has no sandbox workforce, so tests decide who labels what; ``staffed_platform``
runs the simulated workforce. ``client`` is a fresh customer on ``platform``.

One helper per concept: :func:`make_project` / :func:`started_project` (create; create, fill,
pay and start), :class:`Person` with :func:`label_everything` and :func:`annotate` (annotators
and experts over the HTTP annotator API), :func:`png_bytes` (a PNG), the ``crowd_data`` fixture
and :func:`postgres_base_url` (real data and PostgreSQL: a skip locally, a failure under CI).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import cynaps_data as cynaps
from cynaps_data import config as cynaps_config
from cynaps_data.server.db import database_url
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings, WorkforceSettings

from .consensus_data import CROWD_DIR

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


def started_project(
    client: cynaps.Client,
    tasks: list | None = None,
    *,
    payment_method: str = "credits",
    **overrides,
) -> cynaps.Project:
    """The one way the tests start a project: :func:`make_project` (``overrides``), ``tasks``
    uploaded (default: three ``{"text": ...}`` tasks), the deposit quoted and paid, started."""
    project = make_project(client, **overrides)
    project.upload_tasks(tasks if tasks is not None else [{"text": f"item {i}"} for i in range(3)])
    project.calculate_deposit()
    project.pay_deposit(payment_method=payment_method)
    project.start()
    return project


class Person:
    """The one annotator driver: an annotator or expert using the HTTP annotator API, as the
    workbench page does."""

    def __init__(
        self, platform: LocalPlatform, role: str = "annotator", name: str = "Person", team_of=None
    ) -> None:
        """A platform-pool member, or a member of ``team_of``'s team (sees only its projects)."""
        self.base = platform.base_url
        self.session = requests.Session()
        owner_key = team_of.settings.api_key if team_of is not None else None
        key = platform.create_member(role, name, owner_key=owner_key)
        self.session.headers["Authorization"] = f"Bearer {key}"

    def next(self, project_id: str | None = None) -> dict | None:
        params = {"project_id": project_id} if project_id else None
        r = self.session.get(f"{self.base}/v1/annotator/next", params=params)
        r.raise_for_status()
        return None if r.status_code == 204 else r.json()

    def submit(self, task_id: int, label, **extra) -> requests.Response:
        """Submit a judgement (``extra``: more body fields, e.g. ``duration``)."""
        return self.session.post(
            f"{self.base}/v1/annotator/tasks/{task_id}/judgements", json={"label": label, **extra}
        )

    def review(self, project_id: str | None = None) -> dict | None:
        params = {"project_id": project_id} if project_id else None
        r = self.session.get(f"{self.base}/v1/review/next", params=params)
        r.raise_for_status()
        return None if r.status_code == 204 else r.json()

    def decide(self, task_id: int, label) -> requests.Response:
        return self.session.post(
            f"{self.base}/v1/review/tasks/{task_id}/decision", json={"label": label}
        )


def label_everything(people: list[Person], project_id: str, choose) -> None:
    """Each person takes tasks until none is left; ``choose(person_index, task)`` gives the label."""
    for index, person in enumerate(people):
        while (task := person.next(project_id)) is not None:
            assert person.submit(task["task_id"], choose(index, task)).status_code == 201


def annotate(platform: LocalPlatform, client: cynaps.Client, project, answers: dict) -> None:
    """Team annotators judge ``project``: the k-th answers ``answers[task_id][k]``, taking
    ``1.5 + k`` seconds (the judgement's ``duration``)."""
    width = max(len(v) for v in answers.values())
    for k in range(width):
        person = Person(platform, name=f"Annotator {k}", team_of=client)
        while (task := person.next(project.id)) is not None:
            label = answers[task["task_id"]][k]
            response = person.submit(task["task_id"], label, duration=1.5 + k)
            assert response.status_code == 201, response.text


def png_bytes(width: int = 3, height: int = 2, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """The one PNG maker: a solid-colour RGB PNG of ``width`` x ``height``, by zlib alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def crowd_data() -> Path:
    """The real crowd-labelled datasets (``../shared/data/crowd``): a skip where they are
    missing, a failure under CI (env ``CI`` set), as for PostgreSQL."""
    return crowd_dir_or_skip()


def crowd_dir_or_skip() -> Path:
    if not CROWD_DIR.is_dir():
        message = f"crowd datasets not found at {CROWD_DIR}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must provide them)")
        pytest.skip(message)
    return CROWD_DIR


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


#: The environment variables the client's configuration reads.
CONFIG_ENV_VARS = [name for names in cynaps_config._ENV_NAMES.values() for name in names]


@pytest.fixture
def clean_config_env(monkeypatch, tmp_path):
    """No configuration from the environment or a config file (``CYNAPS_CONFIG`` points at a
    file that does not exist)."""
    for name in CONFIG_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CYNAPS_CONFIG", str(tmp_path / "absent.json"))

"""Storage backends: URL mapping, Alembic migrations upgrading in place (SQLite and PostgreSQL),
and two platforms sharing one PostgreSQL database under concurrent writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cynaps_data.server.db import Database, database_url, schema_revision, upgrade
from cynaps_data.server.platform import LocalPlatform
from cynaps_data.server.settings import Settings
from cynaps_data.server.tables import metadata

from .conftest import fresh_postgres_database


def test_database_url_normalises_postgres_and_sqlite_forms() -> None:
    assert database_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert database_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert database_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    assert database_url("x.db").startswith("sqlite:////") and database_url("x.db").endswith("/x.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield database_url(tmp_path / "migrate.db")
    else:
        with fresh_postgres_database("cynaps_mig") as url:
            yield database_url(url)


def _differences(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    # type affinity noise aside, a difference is a missing/extra table, column or index
    return [d for d in diffs if not (isinstance(d, list) and d and d[0][0] == "modify_type")]


def test_old_database_upgrades_in_place(empty_url: str) -> None:
    """A database at the first revision, with data, upgrades to the current schema in place."""
    db = Database(empty_url)
    try:
        upgrade(db.engine, "0001")
        assert schema_revision(db.engine) == "0001"
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO accounts (id, role, name, sandbox, simulated, created_at) "
                    "VALUES ('acct_old', 'customer', 'Old', true, false, 1.0)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (key_hash, idempotency_key, request_hash, status_code, created_at) "
                    "VALUES ('h', 'k', 'r', 200, 1.0)"
                )
            )
        db.create_all()  # what the platform does when it opens the database
        assert schema_revision(db.engine) not in (None, "0001")
        assert _differences(db.engine) == []
        with db.engine.connect() as conn:
            assert (
                conn.execute(sa.text("SELECT name FROM accounts WHERE id = 'acct_old'")).scalar()
                == "Old"
            )
            row = conn.execute(sa.text("SELECT committed, claim FROM idempotency_keys")).one()
            assert not row.committed and row.claim is None
        db.create_all()  # idempotent
    finally:
        db.dispose()


def test_fresh_database_is_stamped_current(empty_url: str) -> None:
    db = Database(empty_url)
    try:
        db.create_all()
        head = schema_revision(db.engine)
        assert head is not None and _differences(db.engine) == []
    finally:
        db.dispose()


def test_two_platforms_share_one_postgresql_database() -> None:
    """Two app instances (own engines and pools) on one database: concurrent uploads of the same
    external ids store each task once, and concurrent deposit payments never overspend."""
    with fresh_postgres_database("cynaps_shared") as raw_url:
        url = database_url(raw_url)
        with (
            LocalPlatform(settings=Settings(database_url=url), workforce=False) as one,
            LocalPlatform(
                settings=Settings(database_url=url, starting_credits_cents=0), workforce=False
            ) as two,
        ):
            key = two.create_customer()
            h = {"Authorization": f"Bearer {key}"}
            bases = [one.base_url, two.base_url]
            pid = requests.post(
                bases[0] + "/v1/projects",
                headers=h,
                json={"name": "shared", "labels": ["a", "b"]},
                timeout=30,
            ).json()["id"]
            tasks = [{"data": {"i": i}, "external_id": str(i)} for i in range(3000)]
            created: list[int] = []

            def upload(base: str, chunk: list) -> None:
                r = requests.post(
                    base + f"/v1/projects/{pid}/tasks/batch",
                    headers=h,
                    json={"tasks": chunk},
                    timeout=120,
                )
                assert r.status_code == 201, r.text
                created.append(r.json()["created"])

            threads = [
                threading.Thread(
                    target=upload, args=(bases[i % 2], tasks[i * 500 : i * 500 + 1500])
                )
                for i in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            status = requests.get(
                bases[1] + f"/v1/projects/{pid}/status", headers=h, timeout=30
            ).json()
            assert status["total"] == 3000 and sum(created) == 3000

            # two projects, credits for exactly one deposit, paid through both platforms at once
            projects = []
            for _ in range(2):
                p = requests.post(
                    bases[0] + "/v1/projects",
                    headers=h,
                    json={"name": "p", "labels": ["a", "b"]},
                    timeout=30,
                ).json()["id"]
                requests.post(
                    bases[0] + f"/v1/projects/{p}/tasks/batch",
                    headers=h,
                    json={"tasks": [{"data": {"i": 1}}]},
                    timeout=30,
                )
                projects.append(p)
            quote = requests.post(
                bases[0] + f"/v1/projects/{projects[0]}/deposit/quote", headers=h, timeout=30
            ).json()
            requests.post(
                bases[0] + "/v1/billing/topups",
                headers=h,
                json={"amount": quote["amount_cents"] / 100, "payment_method": "card"},
                timeout=30,
            )
            barrier = threading.Barrier(2)
            answers: list[int] = []

            def pay(base: str, project: str) -> None:
                barrier.wait()
                r = requests.post(
                    base + f"/v1/projects/{project}/deposit/pay",
                    headers=h,
                    json={"payment_method": "credits"},
                    timeout=60,
                )
                answers.append(r.status_code)

            threads = [threading.Thread(target=pay, args=(bases[i], projects[i])) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(answers) == [200, 402], answers
            balance = requests.get(bases[1] + "/v1/billing/balance", headers=h, timeout=30).json()
            assert balance["available_cents"] == 0


def test_seed_quick_start_runs_on_postgresql() -> None:
    """The seed's whole flow with the sandbox workforce, on PostgreSQL: upload, quote (150.00),
    pay, start, simulated annotators and expert finish it, export; the ledger balances."""
    import cynaps_data as cynaps
    from cynaps_data.server.settings import WorkforceSettings
    from cynaps_data.server.tables import ledger_entries

    from .conftest import SEED_LABELS

    with fresh_postgres_database("cynaps_seed") as raw_url:
        settings = Settings(database_url=database_url(raw_url))
        workforce = WorkforceSettings(annotators=4, experts=1, seconds_per_judgement=0.02)
        with (
            LocalPlatform(settings=settings, workforce=workforce) as p,
            cynaps.Client(api_key=p.create_customer(), base_url=p.base_url) as client,
        ):
            project = client.projects.create(
                name="Product Categorization",
                annotation_type="classification",
                labels=SEED_LABELS,
                instructions="Pick the category.",
                quality_settings={
                    "min_annotators": 3,
                    "consensus_threshold": 0.66,
                    "enable_expert_review": True,
                },
            )
            project.upload_tasks(
                [
                    {"text": "Wireless headphones with noise cancellation"},
                    {"text": "Cotton t-shirt, blue, size M"},
                    {"text": "Garden hose, 50 ft"},
                ]
            )
            assert project.calculate_deposit().amount == "150.00"
            project.pay_deposit(payment_method="razorpay")
            project.start()
            status = project.wait(poll_interval=0.2, timeout=120, progress=False)
            assert status.is_complete and status.completed == 3
            results = project.export(format="json")
            assert len(results) == 3
            assert all(r["annotations"][0]["result"]["value"] in SEED_LABELS for r in results)
            with p.db.read() as conn:
                total = conn.execute(sa.select(sa.func.sum(ledger_entries.c.amount_cents))).scalar()
                held = conn.execute(
                    sa.select(
                        sa.func.coalesce(sa.func.sum(ledger_entries.c.amount_cents), 0)
                    ).where(ledger_entries.c.account == f"deposit_hold:{project.id}")
                ).scalar()
            assert total == 0 and held == 0

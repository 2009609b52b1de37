"""Upload 1,000,000 seed-shaped tasks through the client vs raw ``sqlite3.executemany``.

    python benchmarks/upload.py [--n 1000000]

Prints both rates and their ratio. Targets (issue 2): >= 100,000 tasks/s end to end and >= 1/4
of the raw rate on a 2-core machine (Label Studio 1.23 measured here: 3,100-6,600 tasks/s).
The platform runs in its own process (``cynaps serve``); the raw baseline inserts the same rows
(the same JSON text) into a table with the platform's schema and indexes, in one transaction.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson
import sqlalchemy as sa

import cynaps_data as cynaps
from cynaps_data.server.tables import metadata

try:
    from ._platform import ServerProcess, add_database_url
except ImportError:  # run as a script
    from _platform import ServerProcess, add_database_url

LABELS = ["Electronics", "Clothing", "Home & Garden", "Sports", "Other"]


def seed_tasks(n: int) -> list[dict]:
    return [
        {"image_url": f"https://your-cdn.com/products/item{i}.jpg", "product_id": f"SKU{i:07d}"}
        for i in range(n)
    ]


def raw_sqlite(tasks: list[dict]) -> float:
    """Seconds for executemany of the same rows into the platform's schema (one transaction)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        metadata.create_all(engine)
        engine.dispose()
        rows = [("proj_raw", None, orjson.dumps(t).decode(), None, None, 3, 0.0) for t in tasks]
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO tasks (project_id, external_id, data, gold, predictions, needed, updated_at,"
            " status, n_judgements, charged, released) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, 0)",
            rows,
        )
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    add_database_url(parser)
    args = parser.parse_args()
    tasks = seed_tasks(args.n)

    raw = raw_sqlite(tasks)
    with ServerProcess(database_url=args.database_url) as server:
        client = cynaps.Client(api_key=server.key, base_url=server.base_url, timeout=600)
        project = client.projects.create(name="bench", labels=LABELS)
        started = time.perf_counter()
        result = project.upload_tasks(tasks, batch_size=args.batch_size)
        ours = time.perf_counter() - started
        assert result.created == args.n, result
    raw_rate, our_rate = args.n / raw, args.n / ours
    print(f"tasks: {args.n:,}  batch size: {args.batch_size:,}")
    print(f"raw sqlite3.executemany : {raw:7.2f} s  {raw_rate:12,.0f} tasks/s")
    print(f"client -> platform      : {ours:7.2f} s  {our_rate:12,.0f} tasks/s")
    print(
        f"ratio (ours / raw)      : {our_rate / raw_rate:.2f}  (target >= 0.25; >= 100,000 tasks/s)"
    )


if __name__ == "__main__":
    main()

"""Alembic environment: runs on the connection that :func:`cynaps_data.server.db.upgrade` passes.

There is no ``alembic.ini``; migrations run programmatically when the platform opens its
database (``Database.create_all``), so an existing database upgrades in place.
"""

from __future__ import annotations

from alembic import context

from cynaps_data.server.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("Run migrations through cynaps_data.server.db.upgrade(engine)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""Idempotency keys get a fencing token and a committed flag (exactly-once under crashes).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("claim", sa.String(length=32), nullable=True))
    op.add_column(
        "idempotency_keys",
        sa.Column("committed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("committed")
        batch.drop_column("claim")

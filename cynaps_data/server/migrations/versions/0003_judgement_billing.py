"""Judgements are billed and paid one by one, and imported ones are marked (issue 5).

``billed``: charged into escrow; ``paid``: released to the annotator; ``origin``: ``platform``
or ``imported``. Existing judgements take their task's flags (charged → billed, released → paid).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "judgements", sa.Column("billed", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "judgements", sa.Column("paid", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "judgements",
        sa.Column("origin", sa.String(length=12), nullable=False, server_default="platform"),
    )
    op.execute(
        "UPDATE judgements SET billed = true WHERE task_id IN (SELECT id FROM tasks WHERE charged)"
    )
    op.execute(
        "UPDATE judgements SET paid = true WHERE task_id IN (SELECT id FROM tasks WHERE released)"
    )


def downgrade() -> None:
    with op.batch_alter_table("judgements") as batch:
        batch.drop_column("origin")
        batch.drop_column("paid")
        batch.drop_column("billed")

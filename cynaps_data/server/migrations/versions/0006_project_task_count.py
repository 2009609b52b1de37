"""Projects keep their task count (updated with every insert of tasks), so an upload batch does
not count the whole project again.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "projects",
        sa.Column("task_count", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE projects SET task_count = "
        "(SELECT count(*) FROM tasks WHERE tasks.project_id = projects.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("task_count")

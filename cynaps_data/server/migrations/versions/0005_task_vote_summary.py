"""Per-task vote summary kept with every judgement, so the wide export reads one row per task.

``vote_values`` / ``vote_workers``: the annotator judgements' JSON values and annotator ids in
judgement (id) order, each followed by U+001E ('' without votes); ``expert_value`` /
``expert_worker``: the task's last expert judgement. Existing tasks are backfilled from their
judgements. ``ix_tasks_unreleased``: a partial index of the charged, unreleased tasks (the
export's "anything owed?" check reads it instead of every task of the project).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("vote_values", sa.Text(), nullable=False, server_default=""))
    op.add_column("tasks", sa.Column("vote_workers", sa.Text(), nullable=False, server_default=""))
    op.add_column("tasks", sa.Column("expert_value", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("expert_worker", sa.String(length=40), nullable=True))
    op.create_index(
        "ix_tasks_unreleased",
        "tasks",
        ["project_id"],
        sqlite_where=sa.text("charged = 1 AND released = 0"),
        postgresql_where=sa.text("charged AND NOT released"),
    )
    if op.get_bind().dialect.name == "postgresql":
        agg = "string_agg({col} || chr(30), '' ORDER BY j.id)"
        votes = (
            "(SELECT {agg} FROM judgements j WHERE j.task_id = tasks.id AND j.role = 'annotator')"
        )
        values = votes.format(agg=agg.format(col="j.value"))
        workers = votes.format(agg=agg.format(col="j.annotator_id"))
    else:  # SQLite: group_concat follows the ordered subquery
        votes = (
            "(SELECT group_concat(x, '') FROM (SELECT {col} || char(30) AS x FROM judgements j"
            " WHERE j.task_id = tasks.id AND j.role = 'annotator' ORDER BY j.id))"
        )
        values = votes.format(col="j.value")
        workers = votes.format(col="j.annotator_id")
    last_expert = (
        "(SELECT j.{col} FROM judgements j WHERE j.task_id = tasks.id AND j.role = 'expert'"
        " ORDER BY j.id DESC LIMIT 1)"
    )
    op.execute(
        f"UPDATE tasks SET vote_values = coalesce({values}, ''),"
        f" vote_workers = coalesce({workers}, ''),"
        f" expert_value = {last_expert.format(col='value')},"
        f" expert_worker = {last_expert.format(col='annotator_id')}"
        " WHERE EXISTS (SELECT 1 FROM judgements j WHERE j.task_id = tasks.id)"
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_unreleased", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("expert_worker")
        batch.drop_column("expert_value")
        batch.drop_column("vote_workers")
        batch.drop_column("vote_values")

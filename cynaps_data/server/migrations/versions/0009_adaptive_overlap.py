"""Adaptive overlap (issue 18): why each task stopped collecting judgements, its place in the
assignment queue, the credit its voters got in the skill model, and the per-annotator skill
counts of each project.

- ``tasks.stop_reason``: ``agreement`` | ``confident`` | ``max_annotators`` | ``disagreement`` |
  ``expert`` | ``no_funds`` | ``imported``, null while the task collects judgements;
- ``tasks.queue_order``: assignment order within a project, ascending, then by id (0 for every
  task of a fixed-overlap project, so those keep id order); indexed with ``(project_id,
  status)`` so the candidate query walks the index in queue order;
- ``tasks.skill_credit``: JSON list of floats (adaptive projects), see
  ``cynaps_data.consensus.online``;
- ``annotator_skills``: one row per (project, annotator): ``counts`` the JSON ``k × k``
  confusion counts, ``n_judgements`` the judgements counted.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("stop_reason", sa.String(16), nullable=True))
    op.add_column("tasks", sa.Column("queue_order", sa.Float(), nullable=False, server_default="0"))
    op.add_column("tasks", sa.Column("skill_credit", sa.Text(), nullable=True))
    op.create_index("ix_tasks_queue", "tasks", ["project_id", "status", "queue_order", "id"])
    op.create_table(
        "annotator_skills",
        sa.Column("project_id", sa.String(40), primary_key=True),
        sa.Column("annotator_id", sa.String(40), primary_key=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("n_judgements", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("annotator_skills")
    op.drop_index("ix_tasks_queue", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("skill_credit")
        batch.drop_column("queue_order")
        batch.drop_column("stop_reason")

"""Assets record their pixel size (issue 15): ``width`` and ``height``, read from the image
header at upload (:func:`cynaps_data.imagesize.image_size`); null for assets stored before.

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
    op.add_column("assets", sa.Column("width", sa.Integer(), nullable=True))
    op.add_column("assets", sa.Column("height", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("assets", "height")
    op.drop_column("assets", "width")

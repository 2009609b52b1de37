"""Assets record their pixel size (issue 15): ``width`` and ``height``, read from the image
header at upload (:func:`cynaps_data.imagesize.image_size`); null for assets stored before.
The ``assets`` table came without a migration of its own (``create_all`` makes it, with these
columns, where it does not exist yet), so only an existing table gains them here.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _asset_columns() -> set[str] | None:
    inspector = sa.inspect(op.get_bind())
    if "assets" not in inspector.get_table_names():
        return None
    return {c["name"] for c in inspector.get_columns("assets")}


def upgrade() -> None:
    present = _asset_columns()
    if present is None:
        return
    for name in ("width", "height"):
        if name not in present:
            op.add_column("assets", sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    present = _asset_columns() or set()
    for name in ("height", "width"):
        if name in present:
            op.drop_column("assets", name)

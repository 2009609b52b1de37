"""Per-account ledger balances, kept with every posting (a balance is one row, not a sum).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_balances",
        sa.Column("account", sa.String(length=80), primary_key=True),
        sa.Column("balance_cents", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO ledger_balances (account, balance_cents) "
        "SELECT account, sum(amount_cents) FROM ledger_entries GROUP BY account"
    )


def downgrade() -> None:
    op.drop_table("ledger_balances")

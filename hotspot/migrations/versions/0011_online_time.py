"""Online-time packages (issue #13, item 1): minutes online within a validity window

``package`` and ``voucher_batch`` get ``online_minutes`` and ``valid_days`` (NULL = an hours
package, as before); ``voucher`` gets ``online_seconds_total`` (set at first use) and
``online_seconds_used`` (written by the gateway at each flush). The validity end of an
online-time voucher is its ``expires_at``, which first use sets as before.

Revision ID: 0011
Revises: 0010 (agents)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("package", "voucher_batch"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("online_minutes", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("valid_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("voucher") as batch:
        batch.add_column(sa.Column("online_seconds_total", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "online_seconds_used", sa.Integer(), server_default=sa.text("0"), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("voucher") as batch:
        batch.drop_column("online_seconds_used")
        batch.drop_column("online_seconds_total")
    for table in ("voucher_batch", "package"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("valid_days")
            batch.drop_column("online_minutes")

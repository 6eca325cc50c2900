"""collector: the gateways' clock state in their health samples (issue #11, item 2)

Revision ID: c0004
Revises: c0003_alerts
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "c0004"
down_revision = "c0003_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: samples of gateways older than the clock fields have none.
    op.add_column("health_sample", sa.Column("clock_synced", sa.Boolean(), nullable=True))
    op.add_column("health_sample", sa.Column("clock_source", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("health_sample", "clock_source")
    op.drop_column("health_sample", "clock_synced")

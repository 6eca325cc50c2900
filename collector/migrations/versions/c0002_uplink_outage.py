"""collector: the villages' uplink outages (issue #11, item 3)

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uplink_outage",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("rev", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"]),
        sa.PrimaryKeyConstraint("gateway_id", "started_at"),
    )


def downgrade() -> None:
    op.drop_table("uplink_outage")

"""Trusted devices: MACs the gateway lets out without the portal (issue #13, item 5)

The new Source ``trusted`` and EndReason ``untrusted`` need no change: enum columns are
plain VARCHARs without a CHECK constraint (hotspot/dbtypes.py).

Revision ID: 0008
Revises: 0007 (the quick sale)
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trusted_device",
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("mac"),
    )


def downgrade() -> None:
    op.drop_table("trusted_device")
